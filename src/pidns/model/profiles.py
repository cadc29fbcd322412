"""Where the seed (v3.8) and today (v6.18) differ: one table, one home.

Every rule of the model that changed between the 2012 patch ("pidns: Support unsharing
the pid namespace", merged for v3.8) and v6.18 reads its behaviour from a `Profile`;
nothing else in the model branches on a version. docs/profiles.md lists the same table
with the kernel history behind each row (reference: kernel-pidns-semantics.md, section L).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from pidns.core import flags as cf

PID_MAX_DEFAULT = 32768  # include/linux/threads.h: the boot value of init_pid_ns
PID_MAX_LIMIT = 4194304  # include/linux/threads.h on 64-bit
RESERVED_PIDS = 300  # kernel/pid.c
MAX_PID_NS_LEVEL = 32  # include/linux/pid_namespace.h

_UNSHARE_6_18 = (
    cf.THREAD | cf.FS | cf.NEWNS | cf.SIGHAND | cf.VM | cf.FILES | cf.SYSVSEM | cf.NEWUTS
) | (cf.NEWIPC | cf.NEWNET | cf.NEWUSER | cf.NEWPID | cf.NEWCGROUP | cf.NEWTIME)
_UNSHARE_3_8 = _UNSHARE_6_18 & ~(cf.NEWCGROUP | cf.NEWTIME)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    # L1: kernel/fork.c:ksys_unshare adds CLONE_THREAD for CLONE_NEWPID (removed in 3.12).
    unshare_newpid_implies_thread: bool
    # A2: kernel/fork.c:check_unshare_flags, the flags unshare accepts at all.
    unshare_flags: int
    # L3: kernel/fork.c:do_fork refuses NEWPID or NEWUSER with THREAD|PARENT (3.8); 3.12
    # allowed PARENT, and copy_process still refuses THREAD with NEWPID|NEWUSER.
    newpid_refuses_parent: bool
    # L2/A7: kernel/fork.c:copy_process refuses these flags while the caller's
    # pid_ns_for_children is not its active namespace (3.8: VM|NEWPID; today: THREAD).
    pending_ns_refuses: int
    # L6: kernel/pid_namespace.c:create_pid_namespace, nesting deeper than 32 levels.
    too_deep_errno: int
    # L7: kernel/pid.c:alloc_pid with no free number (3.8 bitmap: ENOMEM; idr: EAGAIN).
    pid_space_full_errno: int
    # C3: per-namespace pid_max (6.14); before it one global pid_max bounds every level.
    per_ns_pid_max: bool
    # C1: the idr allocator may reuse numbers below 300 while its cursor is <= 300; the
    # 3.8 bitmap always wraps to RESERVED_PIDS.
    low_pids_before_wrap: bool
    # A5: create_pid_namespace's in_userns() check (EINVAL), absent in 3.8.
    checks_creator_userns: bool
    # G2/L13: find_new_reaper's subreaper walk stops at the pid level (4.11) instead of
    # at the namespace's child_reaper, which setns-injected parents could cross.
    subreaper_walk_bounded_by_level: bool
    # prctl(PR_SET_CHILD_SUBREAPER) marks existing descendants (4.15,
    # kernel/sys.c:propagate_has_child_subreaper); in 3.8 only later forks inherit it.
    subreaper_propagates: bool
    # D3: /proc/PID/ns/pid_for_children exists (4.12).
    has_pid_for_children_link: bool
    # B5: clone3 and set_tid exist (5.3 / 5.5).
    has_set_tid: bool
    # kernel/user_namespace.c:create_user_ns refuses a parent deeper than 32 levels: ENOSPC
    # since 4.9 (EUSERS from 3.16); 3.8 had no limit (None).
    user_ns_too_deep_errno: int | None


V6_18 = Profile(
    name="6.18",
    unshare_newpid_implies_thread=False,
    unshare_flags=_UNSHARE_6_18,
    newpid_refuses_parent=False,
    pending_ns_refuses=cf.THREAD,
    too_deep_errno=errno.ENOSPC,
    pid_space_full_errno=errno.EAGAIN,
    per_ns_pid_max=True,
    low_pids_before_wrap=True,
    checks_creator_userns=True,
    subreaper_walk_bounded_by_level=True,
    subreaper_propagates=True,
    has_pid_for_children_link=True,
    has_set_tid=True,
    user_ns_too_deep_errno=errno.ENOSPC,
)

V3_8 = Profile(
    name="3.8",
    unshare_newpid_implies_thread=True,
    unshare_flags=_UNSHARE_3_8,
    newpid_refuses_parent=True,
    pending_ns_refuses=cf.VM | cf.NEWPID,
    too_deep_errno=errno.EINVAL,
    pid_space_full_errno=errno.ENOMEM,
    per_ns_pid_max=False,
    low_pids_before_wrap=False,
    checks_creator_userns=False,
    subreaper_walk_bounded_by_level=False,
    subreaper_propagates=False,
    has_pid_for_children_link=False,
    has_set_tid=False,
    user_ns_too_deep_errno=None,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (V6_18, V3_8)}
DEFAULT = V6_18


def get(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown kernel profile {name!r} (known: {known})") from None
