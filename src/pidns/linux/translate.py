"""Translating a pid from one pid namespace to another.

A task has one pid in its own namespace and in each ancestor, and none anywhere else
(kernel/pid.c:pid_nr_ns returns 0). So the answer is 0 when the target namespace cannot
see the task.

Where the kernel has them (Linux 6.11 and later), two nsfs ioctls answer directly
(fs/nsfs.c:ns_ioctl): NS_GET_PID_FROM_PIDNS on the source namespace turns the pid into
the caller's numbering (find_task_by_pid_ns, then task_pid_vnr), and NS_GET_PID_IN_PIDNS
on the target turns that into the target's numbering (find_task_by_vpid, then
task_pid_nr_ns). Both answer ESRCH for "no such task" or "not visible". Some stable
kernels answer ENOTTY instead of ESRCH for an unknown pid (fixed by "nsfs: return ESRCH
..." in 2026); ENOTTY therefore means "ask /proc", never "no such process".

Otherwise the answer comes from /proc: the process's ``NSpid`` line lists its pid at every
level from the /proc mount's namespace down to its own (fs/proc/array.c:task_state), and
NS_GET_PARENT names the namespace at each of those levels. That route sees processes
(thread-group leaders) only, not other threads, and only those whose ns link the caller
may read.
"""

from __future__ import annotations

import errno
import os

from pidns.linux import features, namespaces, nsfs, proc

METHOD_IOCTL = "ioctl"  # NS_GET_PID_FROM_PIDNS + NS_GET_PID_IN_PIDNS
METHOD_NSPID = "nspid"  # /proc/PID/status NSpid + NS_GET_PARENT


def translate(pid: int, source: int, target: int, *, method: str = "auto") -> int:
    """The pid, in the namespace open as fd ``target``, of the task whose pid in the
    namespace open as fd ``source`` is ``pid``; 0 when ``target`` cannot see it.

    Raises ProcessLookupError when no task the caller can see has ``pid`` in ``source``.
    ``method`` is ``"auto"`` (the ioctls where the kernel has them, else /proc),
    ``"ioctl"`` or ``"nspid"``; OSError(ENOTTY) if ``"ioctl"`` is asked of a kernel
    without them.
    """
    return translate_reporting(pid, source, target, method=method)[0]


def translate_reporting(
    pid: int, source: int, target: int, *, method: str = "auto", root: str = "/proc"
) -> tuple[int, str]:
    """As ``translate``, also saying which method answered: ``(pid, METHOD_...)``."""
    if pid <= 0:
        raise ValueError(f"pid must be positive, not {pid}")
    if method not in ("auto", METHOD_IOCTL, METHOD_NSPID):
        raise ValueError(f"unknown method {method!r}")
    if method != METHOD_NSPID:
        answer = via_ioctl(pid, source, target)
        if answer is not None:
            return answer, METHOD_IOCTL
        if method == METHOD_IOCTL:
            raise OSError(errno.ENOTTY, "the kernel has no NS_GET_PID_FROM_PIDNS")
    return via_nspid(pid, source, target, root), METHOD_NSPID


def via_ioctl(pid: int, source: int, target: int) -> int | None:
    """The ioctl route; None when the kernel cannot answer this way (ENOTTY)."""
    if not features.has("ns_get_pid"):
        return None
    try:
        mine = nsfs.pid_from(source, pid)
    except OSError as e:
        if e.errno == errno.ESRCH:
            raise ProcessLookupError(errno.ESRCH, _no_such(pid)) from None
        if e.errno == errno.ENOTTY:
            return None
        raise
    try:
        return nsfs.pid_in(target, mine)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return 0
        if e.errno == errno.ENOTTY:
            return None
        raise


def via_nspid(pid: int, source: int, target: int, root: str = "/proc") -> int:
    """The /proc route: find the process by its NSpid column at the source's level."""
    source_inode = os.fstat(source).st_ino
    target_inode = os.fstat(target).st_ino
    found = namespaces.discover(root)
    spaces = found.namespaces
    if source_inode not in spaces:
        raise ProcessLookupError(errno.ESRCH, _no_such(pid))
    source_level = spaces[source_inode].level
    if source_level is None:
        raise ProcessLookupError(errno.ESRCH, _no_such(pid))
    for inode in _descendants(found, source_inode):
        for member in spaces[inode].members:
            status = found.briefs.get(member) or proc.brief(member, root)
            if status is None:  # reaped since listed
                continue
            if status.nspid[source_level] != pid:
                continue
            chain = found.ancestry(inode)
            if target_inode not in chain:
                return 0
            target_level = spaces[target_inode].level
            return 0 if target_level is None else status.nspid[target_level]
    raise ProcessLookupError(errno.ESRCH, _no_such(pid))


def _descendants(found: namespaces.Discovery, inode: int) -> list[int]:
    """``inode`` and every namespace below it, as far as /proc shows them."""
    return [ns for ns in found.namespaces if inode in found.ancestry(ns)]


def _no_such(pid: int) -> str:
    return f"no process with pid {pid} in the source namespace (that you can see)"
