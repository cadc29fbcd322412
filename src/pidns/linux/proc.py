"""Reading processes from /proc, as seen through a given procfs mount.

Every number read here is in the pid namespace of the procfs instance (``root``),
not the reader's: /proc/PID/status is relative to the mount (fs/proc/array.c:task_state).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PF_EXITING = 0x00000004  # include/linux/sched.h


@dataclass(frozen=True, slots=True)
class Status:
    """The pid-namespace fields of /proc/PID/status."""

    name: str
    state: str  # the letter: R S D T t Z X I
    pid: int
    ppid: int
    uid: int
    nstgid: tuple[int, ...]
    nspid: tuple[int, ...]
    nspgid: tuple[int, ...]
    nssid: tuple[int, ...]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split())


def status(pid: int | str, root: str = "/proc") -> Status:
    """Parse /proc/PID/status. Raises FileNotFoundError (ENOENT) once the pid is reaped."""
    fields: dict[str, str] = {}
    with open(f"{root}/{pid}/status", encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return Status(
        name=fields.get("Name", ""),
        state=fields.get("State", "?")[:1],
        pid=int(fields["Pid"]),
        ppid=int(fields.get("PPid", "0")),
        uid=int(fields.get("Uid", "0").split()[0]),
        nstgid=_ints(fields.get("NStgid", fields["Pid"])),
        nspid=_ints(fields.get("NSpid", fields["Pid"])),
        nspgid=_ints(fields.get("NSpgid", "0")),
        nssid=_ints(fields.get("NSsid", "0")),
    )


@dataclass(frozen=True, slots=True)
class Stat:
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
    with open(f"{root}/{pid}/stat", "rb") as f:
        raw = f.read().decode("utf-8", "replace")
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
    with open(f"{root}/{pid}/cmdline", "rb") as f:
        raw = f.read()
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


def pids(root: str = "/proc") -> list[int]:
    """Every process (thread-group leader) visible through this procfs mount."""
    return sorted(int(name) for name in os.listdir(root) if name.isdigit())
