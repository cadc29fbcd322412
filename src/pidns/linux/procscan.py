"""Lean /proc readers for whole-system scans (``pidns ls``, ``pidns tree``).

``pidns.linux.proc`` is the general reader; a scan reads every process, so this one
reads only the status fields a picture needs, with raw ``os`` calls and no dataclasses
(half the time per process, and no ``dataclasses`` import at start-up). The fields mean
what they mean in ``proc.Status``: numbers in the procfs mount's pid namespace
(fs/proc/array.c:task_state).
"""

from __future__ import annotations

import os
from typing import NamedTuple

_CHUNK = 8192


class Brief(NamedTuple):
    """The /proc/PID/status fields of a picture."""

    name: str  # comm, as escaped by the kernel
    state: str  # the letter: R S D T t Z X P I
    ppid: int  # 0 when the parent is outside the mount's namespace
    nspid: tuple[int, ...]  # from the mount's namespace down to the task's own


def read(path: str) -> bytes:
    """The whole of a /proc file (they are generated on read: one open, read to EOF)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return b"".join(chunks)


def brief(pid: int | str, root: str = "/proc") -> Brief | None:
    """The status fields of ``pid``; None once it has been reaped (or was never there)."""
    try:
        raw = read(f"{root}/{pid}/status")
    except OSError:
        return None
    name = _field(raw, b"Name:")
    own = _field(raw, b"\nPid:")
    nspid = _field(raw, b"\nNSpid:")  # absent before Linux 4.1: then only the pid
    return Brief(
        name=name.decode("utf-8", "replace"),
        state=_field(raw, b"\nState:")[:1].decode("ascii", "replace") or "?",
        ppid=int(_field(raw, b"\nPPid:") or b"0"),
        nspid=tuple(int(n) for n in (nspid or own).split()),
    )


def command(pid: int | str, name: str, root: str = "/proc") -> str:
    """The command line joined by spaces, or ``[name]`` when it has none (kernel threads,
    zombies), as ps(1) shows it."""
    try:
        raw = read(f"{root}/{pid}/cmdline")
    except OSError:
        raw = b""
    argv = [os.fsdecode(part) for part in raw.split(b"\0") if part]
    return " ".join(argv) if argv else f"[{name}]"


def _field(raw: bytes, key: bytes) -> bytes:
    start = raw.find(key)
    if start < 0:
        return b""
    start += len(key)
    end = raw.find(b"\n", start)
    return raw[start : end if end >= 0 else len(raw)].strip()
