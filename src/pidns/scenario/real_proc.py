"""How the real backend reads its world from /proc: the proc readers of pidns.scenario.real.

Every process of the world is read through descriptors of its /proc/PID/status and
/proc/PID/stat kept open from the moment it is registered (``pread``: no path lookup, and
ESRCH once it is reaped), as seen from the runner's namespace, outside the world.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from pidns.core import signals
from pidns.linux import proc, userns
from pidns.scenario.backend import BackendError

CAP_SYS_ADMIN = 21
SIGKILL_BIT = 1 << (signals.KILL - 1)
_STATUS = re.compile(r"^(PPid|SigPnd|ShdPnd|SigBlk|Threads):\s*(.*)$", re.M)


def privileged() -> bool:
    """CAP_SYS_ADMIN in the effective set: the world needs no user namespace."""
    return userns.has_cap_sys_admin()


def own_nspid() -> tuple[int, ...]:
    """The runner's NSpid, from /proc's level to its own (one entry per level)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"NSpid:"):
                return tuple(int(x) for x in line.split()[1:])
    return (os.getpid(),)


@dataclass(slots=True)
class Seen:
    """One process as the last sweep of /proc found it."""

    state: str  # the State letter of /proc/PID/stat: R S D T t Z X ...
    ppid: int  # the real parent's pid, in the runner's /proc
    pending: int  # SigPnd | ShdPnd
    blocked: int  # SigBlk
    exiting: bool  # PF_EXITING
    threads: int = 1  # the group's live threads (a zombie group shows 1)

    @property
    def dead(self) -> bool:
        """This thread makes no more calls (a leader that exit(2)ed is a zombie thread)."""
        return self.state in ("Z", "X") or self.exiting

    @property
    def leader_gone(self) -> bool:
        """A leader that exit(2)ed while other threads of its group still run."""
        return self.state == "Z" and self.threads > 1

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")


def read(status_fd: int, stat_fd: int) -> Seen | None:
    """A process from its open status and stat files; None once it has been reaped."""
    try:
        status = os.pread(status_fd, 4096, 0).decode()
        stat = os.pread(stat_fd, 1024, 0).decode()
    except ProcessLookupError:
        return None
    fields = dict(_STATUS.findall(status))
    parts = stat[stat.rindex(")") + 2 :].split()
    return Seen(
        state=parts[0],
        ppid=int(fields["PPid"]),
        pending=int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16),
        blocked=int(fields["SigBlk"], 16),
        exiting=bool(int(parts[6]) & proc.PF_EXITING),
        threads=int(fields.get("Threads", "1")),
    )


def wchan(host: int) -> str:
    """The kernel function a sleeping process waits in (``0`` while it runs)."""
    try:
        with open(f"/proc/{host}/wchan", "rb") as f:
            return f.read().decode()
    except OSError:
        return ""


def threads_where(host: int) -> str:
    """Where each thread of process HOST is, as the kernel shows it: ``4711: 4711 S
    do_wait nr 61, 4712 S futex_wait nr 202`` (state, wchan, the system call it is in),
    so that a world that does not settle tells why (a thread asleep on a lock, say)."""
    try:
        tids = sorted(int(t) for t in os.listdir(f"/proc/{host}/task"))
    except OSError:
        return f"{host}: gone"
    parts = []
    for tid in tids:
        fields = [str(tid)]
        for name in ("stat", "wchan", "syscall"):
            try:
                with open(f"/proc/{host}/task/{tid}/{name}") as f:
                    text = f.read().strip()
            except OSError:
                continue
            if name == "stat":
                fields.append(text.rpartition(")")[2].split()[0])
            elif name == "wchan":
                fields.append(text or "-")
            else:
                fields.append(f"nr {text.split()[0]}" if text else "nr ?")
        parts.append(" ".join(fields))
    return f"{host}: " + ", ".join(parts)


def pidfd_numbers(pidfd: int) -> tuple[int, tuple[int, ...]]:
    """``Pid`` and ``NSpid`` of a pidfd, in the runner's /proc (fs/pidfs.c:pidfd_show_fdinfo)."""
    fd = os.open(f"/proc/self/fdinfo/{pidfd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    host = int(info["Pid"])
    if host <= 0:
        raise BackendError("a new process died before the runner could see it")
    return host, tuple(int(x) for x in info["NSpid"].split())
