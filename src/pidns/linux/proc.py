"""Reading processes from /proc, as seen through a given procfs mount.

Every number read here is in the pid namespace of the procfs instance (``root``),
not the reader's: /proc/PID/status is relative to the mount (fs/proc/array.c:task_state).

``status`` and ``stat`` read one process in full; ``brief`` and ``command`` are the lean
readers of whole-system scans (``pidns ls``, ``pidns tree``): raw ``os`` calls, only
the fields a picture needs. The records are NamedTuples: ``dataclasses`` would add
milliseconds to every command's start-up.
"""

from __future__ import annotations

import os
from typing import NamedTuple

PF_EXITING = 0x00000004  # include/linux/sched.h
_CHUNK = 8192


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


class Status(NamedTuple):
    """The pid-namespace fields of /proc/PID/status."""

    name: str
    state: str  # the letter: R S D T t Z X I
    pid: int
    ppid: int
    uid: int
    nspid: tuple[int, ...]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split())


def status_fields(path: str) -> dict[str, str]:
    """A /proc/PID/status file as its ``Key:\tvalue`` lines say (fs/proc/array.c)."""
    fields: dict[str, str] = {}
    for line in read(path).decode("utf-8", "replace").splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def status(pid: int | str, root: str = "/proc") -> Status:
    """Parse /proc/PID/status. Raises FileNotFoundError (ENOENT) once the pid is reaped."""
    fields = status_fields(f"{root}/{pid}/status")
    return Status(
        name=fields.get("Name", ""),
        state=fields.get("State", "?")[:1],
        pid=int(fields["Pid"]),
        ppid=int(fields.get("PPid", "0")),
        uid=int(fields.get("Uid", "0").split()[0]),
        nspid=_ints(fields.get("NSpid", fields["Pid"])),
    )


class Stat(NamedTuple):
    """The fields of /proc/PID/stat that pidns uses."""

    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    flags: int

    @property
    def exiting(self) -> bool:
        """PF_EXITING: the task called exit but is not yet a zombie (or is one)."""
        return bool(self.flags & PF_EXITING)


def stat(pid: int | str, root: str = "/proc") -> Stat:
    raw = read(f"{root}/{pid}/stat").decode("utf-8", "replace")
    # comm may hold spaces and parentheses: it ends at the last ')'.
    head, _, rest = raw.rpartition(")")
    comm = head.partition("(")[2]
    parts = rest.split()
    # parts[0] is field 3 (state); field N is parts[N - 3].
    return Stat(
        comm=comm,
        state=parts[0],
        ppid=int(parts[1]),
        pgrp=int(parts[2]),
        session=int(parts[3]),
        flags=int(parts[6]),
    )


def ns_inode(pid: int | str, kind: str = "pid", root: str = "/proc") -> int:
    """The inode of /proc/PID/ns/KIND (``pid``, ``pid_for_children``, ``user``, ...)."""
    link = os.readlink(f"{root}/{pid}/ns/{kind}")  # "pid:[4026531836]"
    return int(link[link.index("[") + 1 : -1])


def cmdline(pid: int | str, root: str = "/proc") -> list[str]:
    raw = read(f"{root}/{pid}/cmdline")
    return [os.fsdecode(part) for part in raw.split(b"\0") if part]


def children(pid: int | str, root: str = "/proc") -> list[int]:
    """Direct children, from /proc/PID/task/*/children (needs CONFIG_PROC_CHILDREN)."""
    found: list[int] = []
    task_dir = f"{root}/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/children", encoding="ascii") as f:
                found.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return found


class Brief(NamedTuple):
    """The /proc/PID/status fields of a picture."""

    name: str  # comm, as escaped by the kernel
    state: str  # the letter: R S D T t Z X P I
    ppid: int  # 0 when the parent is outside the mount's namespace
    nspid: tuple[int, ...]  # from the mount's namespace down to the task's own


def brief(pid: int | str, root: str = "/proc") -> Brief | None:
    """The status fields of ``pid`` a scan needs; None once it has been reaped (or was
    never there). Half the time of ``status`` per process."""
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
        argv = cmdline(pid, root)
    except OSError:
        argv = []
    return " ".join(argv) if argv else f"[{name}]"


def _field(raw: bytes, key: bytes) -> bytes:
    start = raw.find(key)
    if start < 0:
        return b""
    start += len(key)
    end = raw.find(b"\n", start)
    return raw[start : end if end >= 0 else len(raw)].strip()


def pids(root: str = "/proc") -> list[int]:
    """Every process (thread-group leader) visible through this procfs mount."""
    return sorted(int(name) for name in os.listdir(root) if name.isdigit())
