"""The nsfs ioctls on a pid namespace file (fs/nsfs.c:ns_ioctl), as the model answers them.

Each takes the caller (whose active namespace judges visibility) and the namespace the
file names.
"""

from __future__ import annotations

import errno

from pidns.model.errors import KernelError
from pidns.model.namespace import PidNamespace, nr_in
from pidns.model.task import Caller, TaskState


def get_parent(caller: Caller, ns: PidNamespace) -> PidNamespace:
    """NS_GET_PARENT (kernel/pid_namespace.c:pidns_get_parent): the parent must be the
    caller's active namespace or below it, so EPERM for the initial namespace (the model's
    root, whose parent is outside the model, counts as one) and for one's own."""
    parent = ns.parent
    if parent is None or not caller.ns.is_ancestor_of(parent):
        raise KernelError(errno.EPERM, "NS_GET_PARENT")
    return parent


def pid_from_pidns(caller: Caller, ns: PidNamespace, pid: int, tgid: bool = False) -> int:
    """NS_GET_PID_FROM_PIDNS / NS_GET_TGID_FROM_PIDNS: the task numbered ``pid`` in ``ns``,
    numbered in the caller's active namespace; ESRCH when absent or not visible."""
    entry = ns.idr.get(pid)
    if entry is None or entry.state is TaskState.REAPED:
        raise KernelError(errno.ESRCH, "NS_GET_PID_FROM_PIDNS")
    nr = nr_in(entry.group if tgid else entry, caller.ns)
    if nr == 0:
        raise KernelError(errno.ESRCH, "NS_GET_PID_FROM_PIDNS")
    return nr


def pid_in_pidns(caller: Caller, ns: PidNamespace, pid: int, tgid: bool = False) -> int:
    """NS_GET_PID_IN_PIDNS / NS_GET_TGID_IN_PIDNS: the task numbered ``pid`` in the
    caller's active namespace, numbered in ``ns``; ESRCH when ``ns`` cannot see it."""
    entry = caller.ns.idr.get(pid)
    if entry is None or entry.state is TaskState.REAPED:
        raise KernelError(errno.ESRCH, "NS_GET_PID_IN_PIDNS")
    nr = nr_in(entry.group if tgid else entry, ns)
    if nr == 0:
        raise KernelError(errno.ESRCH, "NS_GET_PID_IN_PIDNS")
    return nr
