"""Pidfds: a second kind of name for a process (or, with PIDFD_THREAD, a thread).

fs/pidfs.c and kernel/pid.c:pidfd_open. A pidfd names a struct pid, not a number: it
keeps naming the same task after its number could have been reused, and it answers
ESRCH (or -1 in fdinfo) once that task is gone. The model has no file table: a
``Pidfd`` is the open file itself, held by whoever the caller hands it to.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, NamedTuple

from pidns.model.create import has_nsproxy
from pidns.model.errors import KernelError
from pidns.model.namespace import PidNamespace, nr_in
from pidns.model.profiles import Profile
from pidns.model.task import Caller, Task, TaskState, Thread

if TYPE_CHECKING:
    from pidns.model.kernel import Kernel

PIDFD_NONBLOCK = 0o4000  # O_NONBLOCK
PIDFD_THREAD = 0o200  # O_EXCL (6.9)


class Pidfd:
    """An open pidfd: the task its struct pid names and whether it names the thread."""

    __slots__ = ("target", "thread")

    def __init__(self, target: Task | Thread, thread: bool) -> None:
        self.target = target
        self.thread = thread

    @property
    def gone(self) -> bool:
        """pid_has_task is false: the group was reaped, or the thread released."""
        return self.target.state is TaskState.REAPED


class PidfdInfo(NamedTuple):
    """PIDFD_GET_INFO's pid fields, as the caller's active namespace numbers them."""

    pid: int
    tgid: int
    ppid: int  # 0 when the parent is not visible


def pidfd_open(caller: Caller, pid: int, flags: int, profile: Profile) -> Pidfd:
    """kernel/pid.c:pidfd_open + fs/pidfs.c:pidfd_prepare.

    EINVAL for unknown flags or pid <= 0; ESRCH when the caller's active namespace has no
    such pid or its task is gone (zombies open fine); ENOENT for a thread other than a
    leader without PIDFD_THREAD (checked on 6.18.44; profile: EINVAL before).
    """
    if not profile.has_pidfd:
        raise KernelError(errno.ENOSYS, "pidfd_open")
    known = PIDFD_NONBLOCK | (PIDFD_THREAD if profile.has_pidfd_thread else 0)
    if flags & ~known or pid <= 0:
        raise KernelError(errno.EINVAL, "pidfd_open")
    entry = caller.ns.idr.get(pid)
    if entry is None or entry.state is TaskState.REAPED:
        raise KernelError(errno.ESRCH, "pidfd_open")
    thread = bool(flags & PIDFD_THREAD)
    if isinstance(entry, Thread) and not thread:
        raise KernelError(profile.pidfd_open_thread_errno, "pidfd_open")
    return Pidfd(entry, thread)


def fdinfo_nspid(pidfd: Pidfd, procfs: PidNamespace) -> tuple[int, ...]:
    """fs/pidfs.c:pidfd_show_fdinfo read through a procfs of ``procfs``: the NSpid line,
    the number there first and the deeper ones after it; (0,) when not visible there,
    (-1,) once the task is gone."""
    if pidfd.gone:
        return (-1,)
    target = pidfd.target
    nr = nr_in(target, procfs)
    return target.numbers[procfs.depth :] if nr else (0,)


def get_info(caller: Caller, pidfd: Pidfd, profile: Profile) -> PidfdInfo:
    """fs/pidfs.c:pidfd_info for PIDFD_INFO_PID: ESRCH once the task is gone (without
    PIDFD_INFO_EXIT), EREMOTE when the caller's active namespace cannot see it (6.18.26+;
    6.18.2 said ESRCH: profile); ENOTTY before 6.13."""
    if not profile.has_pidfd_info:
        raise KernelError(errno.ENOTTY, "PIDFD_GET_INFO")
    ns = caller.ns
    target = pidfd.target
    if not ns.is_ancestor_of(target.ns):
        # pid_in_current_pidns comes first: a struct pid keeps its numbers once its task
        # is gone, so a dead process of a sibling namespace is EREMOTE too (6.18.44)
        raise KernelError(profile.pidfd_info_remote_errno, "PIDFD_GET_INFO")
    if pidfd.gone:
        raise KernelError(errno.ESRCH, "PIDFD_GET_INFO")
    pid = nr_in(target, ns)
    if pid == 0:
        raise KernelError(profile.pidfd_info_remote_errno, "PIDFD_GET_INFO")
    parent = target.group.parent
    ppid = 0 if parent is None else nr_in(parent, ns)
    return PidfdInfo(pid, nr_in(target.group, ns), ppid)


def setns_target(pidfd: Pidfd) -> PidNamespace:
    """setns(pidfd, CLONE_NEWPID) joins the target's active namespace; its task must still
    have an nsproxy (kernel/nsproxy.c:validate_nsset: ESRCH for a zombie or a leader that
    exit(2)ed, while /proc/PID/ns/pid of a zombie still opens and joins)."""
    target = pidfd.target
    if not has_nsproxy(target):
        raise KernelError(errno.ESRCH, "setns")
    return target.ns


def wait_target(kernel: Kernel, pidfd: Pidfd) -> Task | None:
    """waitid(P_PIDFD): the group a pidfd names (PIDTYPE_TGID), or None for a thread
    pidfd of a non-leader (PIDTYPE_PID: never a child, so ECHILD)."""
    target = pidfd.target
    return target if isinstance(target, Task) else None


__all__ = ["PIDFD_NONBLOCK", "PIDFD_THREAD", "Pidfd", "PidfdInfo", "pidfd_open"]
