"""Pid and user namespaces, and pid numbers: allocation and release.

Mirrors kernel/pid.c (alloc_pid, free_pid, disable_pid_allocation) and
kernel/pid_namespace.c (create_pid_namespace). A task's numbers live in the task as a
tuple aligned with its namespace's ``chain`` (the namespaces from the model's root down
to its own), so "the number of task T in namespace N" is one tuple index and one
identity test: O(1), and 0 when T is not visible in N (kernel/pid.c:pid_nr_ns).
"""

from __future__ import annotations

import errno
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pidns.model.errors import KernelError, Unmodeled
from pidns.model.profiles import RESERVED_PIDS, Profile

if TYPE_CHECKING:
    from pidns.model.task import Task, Thread

_ns_ids = itertools.count(4026531836)  # like nsfs inode numbers, for readable output


class UserNamespace:
    """A user namespace: who owns pid namespaces, and where capabilities hold."""

    __slots__ = ("id", "level", "mapped", "owner", "parent")

    def __init__(
        self,
        parent: UserNamespace | None,
        owner: int,
        mapped: frozenset[int] | None = frozenset(),
        level: int = 0,
    ) -> None:
        self.id = next(_ns_ids)
        self.parent = parent  # invariant: None only for the model's root user namespace
        self.level: int = level if parent is None else parent.level + 1
        self.owner = owner  # euid of the creator, as a kernel uid
        # the uids its uid_map maps (None: all). Nothing writes a map in a scenario, so a
        # namespace a task creates maps none (kernel/user_namespace.c: until uid_map is
        # written, make_kuid fails and kuid_has_mapping is false)
        self.mapped = mapped

    def maps(self, uid: int) -> bool:
        return self.mapped is None or uid in self.mapped

    def is_same_or_below(self, ancestor: UserNamespace) -> bool:
        """kernel/user_namespace.c:in_userns."""
        ns: UserNamespace | None = self
        while ns is not None and ns.level >= ancestor.level:
            if ns is ancestor:
                return True
            ns = ns.parent
        return False


class PidNamespace:
    """A pid namespace (include/linux/pid_namespace.h: struct pid_namespace)."""

    __slots__ = (
        "adding",
        "allocated",
        "chain",
        "child_reaper",
        "cursor",
        "depth",
        "id",
        "idr",
        "level",
        "parent",
        "pid_max",
        "user_ns",
        "zap_waiter",
    )

    def __init__(
        self, parent: PidNamespace | None, user_ns: UserNamespace, level: int, pid_max: int
    ) -> None:
        self.id = next(_ns_ids)
        self.parent = parent
        self.level = level  # the kernel's level: 0 is init_pid_ns
        # invariant: chain[i] is this namespace's ancestor at depth i; chain[-1] is self
        self.chain: tuple[PidNamespace, ...] = (self,) if parent is None else (*parent.chain, self)
        self.depth = len(self.chain) - 1  # levels below the model's root namespace
        self.user_ns = user_ns  # the owner: creator's credentials' user namespace
        self.pid_max = pid_max
        self.cursor = 0  # idr cursor: the last allocated number + 1 (ns_last_pid + 1)
        # nr -> the task whose pid it is; the entry outlives the task while its pid is
        # still some live task's pgid or sid (kernel/pid.c:free_pid runs on the last user)
        # (a thread's tid entry maps to its Thread: kill(tid) reaches the tid's group)
        self.idr: dict[int, Task | Thread] = {}
        self.allocated = 0  # pid_allocated without the PIDNS_ADDING bit
        self.adding = True  # PIDNS_ADDING: cleared for ever when the namespace dies
        # set when pid 1 is attached, never cleared (kernel/fork.c:copy_process)
        self.child_reaper: Task | None = None
        # the init sleeping in zap_pid_ns_processes until only its own pid is left
        self.zap_waiter: Task | None = None

    @property
    def dead(self) -> bool:
        return not self.adding

    @property
    def last_pid(self) -> int:
        """/proc/sys/kernel/ns_last_pid."""
        return self.cursor - 1

    def is_ancestor_of(self, other: PidNamespace) -> bool:
        """``other`` is this namespace or below it (kernel/pid_namespace.c:pidns_install)."""
        return other.depth >= self.depth and other.chain[self.depth] is self


def nr_in(task: Task | Thread, ns: PidNamespace) -> int:
    """kernel/pid.c:pid_nr_ns: the task's number in ``ns``, 0 when not visible there."""
    depth = ns.depth
    numbers = task.numbers
    if depth < len(numbers) and task.ns.chain[depth] is ns:
        return numbers[depth]
    return 0


def _next_free(ns: PidNamespace, profile: Profile) -> int:
    """kernel/pid.c:alloc_pid's idr_alloc_cyclic (6.18) / alloc_pidmap (3.8)."""
    idr = ns.idr
    end = ns.pid_max
    cursor = ns.cursor
    if profile.low_pids_before_wrap:
        # idr_alloc_cyclic(pid_min, pid_max): pid_min is 1 until the cursor passes 300
        wrap_to = RESERVED_PIDS if cursor > RESERVED_PIDS else 1
        nr = cursor if cursor > wrap_to else wrap_to
    else:
        # alloc_pidmap: start after last_pid; past pid_max, start again at 300
        wrap_to = RESERVED_PIDS
        nr = cursor if cursor > 0 else 1
    while nr < end and nr in idr:
        nr += 1
    if nr >= end:  # wrap once, then give up
        nr = wrap_to
        while nr < end and nr in idr:
            nr += 1
        if nr >= end:
            raise KernelError(profile.pid_space_full_errno, "fork")
    ns.cursor = nr + 1
    return nr


def alloc_numbers(
    ns: PidNamespace, set_tid: Sequence[int], profile: Profile, may_choose: list[bool]
) -> list[int]:
    """Reserve one number per level for a new task in ``ns``, innermost first.

    kernel/pid.c:alloc_pid: ``set_tid`` names the numbers of the innermost levels;
    ``may_choose[d]`` says whether the caller holds CAP_SYS_ADMIN or
    CAP_CHECKPOINT_RESTORE over the owner of the namespace at depth d. On failure every
    number reserved so far is released (cursors stay advanced, as in the kernel) and a
    namespace that never held a pid gets its cursor reset so its first pid is still 1.
    The returned list is ordered outermost first (aligned with ``ns.chain``).
    """
    if len(set_tid) > ns.level + 1:
        raise KernelError(errno.EINVAL, "clone3")
    chain = ns.chain
    numbers = [0] * len(chain)
    reserved: list[tuple[PidNamespace, int]] = []
    try:
        for i, level_ns in enumerate(reversed(chain)):
            depth = level_ns.depth
            if i < len(set_tid):
                tid = set_tid[i]
                if tid < 1 or tid >= level_ns.pid_max:
                    raise KernelError(errno.EINVAL, "clone3")
                if tid != 1 and level_ns.child_reaper is None:
                    raise KernelError(errno.EINVAL, "clone3")
                if not may_choose[depth]:
                    raise KernelError(errno.EPERM, "clone3")
                if tid in level_ns.idr:
                    raise KernelError(errno.EEXIST, "clone3")
                nr = tid
            else:
                nr = _next_free(level_ns, profile)
            level_ns.idr[nr] = _RESERVED
            reserved.append((level_ns, nr))
            numbers[depth] = nr
        if len(set_tid) > len(chain):
            # the caller asked for numbers in namespaces above the model's root
            raise Unmodeled("set_tid names pid numbers above the model's root namespace")
        if not ns.adding:
            # the namespace's init has died: "ENOMEM is what we have exposed to
            # userspace for a long time" (kernel/pid.c:alloc_pid)
            raise KernelError(errno.ENOMEM, "fork")
    except BaseException:
        for level_ns, nr in reserved:
            del level_ns.idr[nr]
        if ns.adding and ns.allocated == 0:
            ns.cursor = 0  # "On failure to allocate the first pid, reset the state"
        raise
    return numbers


def publish_numbers(task: Task | Thread) -> None:
    """Make the reserved numbers find the task (kernel/pid.c:alloc_pid's idr_replace loop)."""
    for level_ns, nr in zip(task.ns.chain, task.numbers, strict=True):
        level_ns.idr[nr] = task
        level_ns.allocated += 1


def release_numbers(task: Task | Thread) -> list[PidNamespace]:
    """kernel/pid.c:free_pid: remove the task's numbers from every level.

    Returns the namespaces whose init, sleeping in zap_pid_ns_processes, should now wake
    up: the count dropped to one (only the init's own pid is left).
    """
    woken: list[PidNamespace] = []
    for level_ns, nr in zip(task.ns.chain, task.numbers, strict=True):
        del level_ns.idr[nr]
        level_ns.allocated -= 1
        if level_ns.allocated == 1 and level_ns.zap_waiter is not None:
            woken.append(level_ns)
    return woken


class _Reserved:
    """The NULL entry alloc_pid stores so find_pid_ns does not see a half-made pid."""

    __slots__ = ()


_RESERVED: Task | Thread = _Reserved()  # type: ignore[assignment]
