"""Where kernel releases differ, from the seed (v3.8) to today (v6.18): one table, one home.

Every rule of the model that changed since the 2012 patch ("pidns: Support unsharing
the pid namespace", merged for v3.8) reads its behaviour from a `Profile`; nothing else
in the model branches on a version. Each field's history is one row of ``HISTORY``: its
value from 3.8 on, and each release that changed it; ``for_release("6.1.192")`` gives
the profile of any release from 3.8 on. docs/profiles.md lists the same rows with the
kernel history behind each and the booted kernel that verified it.
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from pidns.core import flags as cf

PID_MAX_DEFAULT = 32768  # include/linux/threads.h: the boot value of init_pid_ns
PID_MAX_LIMIT = 4194304  # include/linux/threads.h on 64-bit
RESERVED_PIDS = 300  # kernel/pid.c
# kernel/pid.c:pid_idr_init: pid_max_min = max(RESERVED_PIDS + 1, PIDS_PER_CPU_MIN *
# num_possible_cpus()), 301 below 38 possible cpus (the model's assumption)
PID_MAX_MIN = RESERVED_PIDS + 1
MAX_PID_NS_LEVEL = 32  # include/linux/pid_namespace.h

_UNSHARE_6_18 = (
    cf.THREAD | cf.FS | cf.NEWNS | cf.SIGHAND | cf.VM | cf.FILES | cf.SYSVSEM | cf.NEWUTS
) | (cf.NEWIPC | cf.NEWNET | cf.NEWUSER | cf.NEWPID | cf.NEWCGROUP | cf.NEWTIME)
_UNSHARE_3_8 = _UNSHARE_6_18 & ~(cf.NEWCGROUP | cf.NEWTIME)


@dataclass(frozen=True, slots=True)
class Profile:
    name: str  # the release it describes: "3.8", "6.1", "6.18"
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
    # A5: create_pid_namespace's in_userns() check (EINVAL), from 4.14 (absent in 3.8).
    checks_creator_userns: bool
    # G2/L13: find_new_reaper's subreaper walk stops at the pid level (4.11) instead of
    # at the namespace's child_reaper, which setns-injected parents could cross.
    subreaper_walk_bounded_by_level: bool
    # prctl(PR_SET_CHILD_SUBREAPER) marks existing descendants (4.11,
    # kernel/sys.c:propagate_has_child_subreaper); in 3.8 only later forks inherit it.
    subreaper_propagates: bool
    # D3: /proc/PID/ns/pid_for_children exists (4.12).
    has_pid_for_children_link: bool
    # B5: clone3 and set_tid exist (5.3 / 5.5).
    has_set_tid: bool
    # kernel/user_namespace.c:create_user_ns refuses a parent deeper than 32 levels: EUSERS
    # from 3.11, ENOSPC from 4.9; 3.8 had no limit (None).
    user_ns_too_deep_errno: int | None
    # kernel/signal.c:send_signal_locked zeroes si_pid for a target that cannot see the
    # sender *in the one kernel_siginfo* a group kill (kill(0), kill(-PGID), kill(-1))
    # hands to every target, so the targets after it get 0 too. Booted: 3.8.13, 6.1.192
    # and 6.12.117 give each target its own si_pid; 6.1.176 and 6.18.44 share the zero
    # (a stable update of 6.1 between 176 and 192 changed it).
    group_kill_shares_siginfo: bool
    # Pidfds: pidfd_open, pidfd_send_signal and CLONE_PIDFD (5.3; ENOSYS before), waitid
    # P_PIDFD (5.4), setns through a pidfd (5.8), PIDFD_THREAD (6.9), PIDFD_GET_INFO (6.13).
    has_pidfd: bool
    has_pidfd_wait: bool
    has_pidfd_setns: bool
    has_pidfd_thread: bool
    has_pidfd_info: bool
    # fs/pidfs.c:pidfd_info on a pid outside the caller's namespaces: ESRCH in 6.13 and
    # 6.18.2, EREMOTE in 6.18.26 and 6.18.44 (booted; "pidfs: return -EREMOTE when
    # PIDFD_GET_INFO is called on another ns", backported to 6.18.y: the profile cannot
    # tell 6.18.2 from 6.18.26 and follows the newer).
    pidfd_info_remote_errno: int
    # pidfd_open of a thread that is not a group leader, without PIDFD_THREAD: EINVAL from
    # 5.3 (no PIDTYPE_TGID task); ENOENT on 6.18.44 (booted). The release that changed
    # it is not verified; the row places it with PIDFD_THREAD (6.9).
    pidfd_open_thread_errno: int
    # NS_GET_PID_FROM_PIDNS / NS_GET_PID_IN_PIDNS and the TGID forms (6.11, believed;
    # ENOTTY before); NS_GET_PARENT exists from 4.9.
    has_ns_pid_ioctls: bool
    has_ns_get_parent: bool
    # kernel/exit.c:SYSCALL_DEFINE5(waitid) (kernel_waitid from 4.13) takes __WALL,
    # __WCLONE and __WNOTHREAD from 4.7 ("wait: allow sys_waitid() to accept
    # __WNOTHREAD/__WCLONE/__WALL"); before, EINVAL. wait4 never takes WNOWAIT, so a
    # WNOWAIT wait with __WALL is EINVAL before 4.7 whichever call makes it (booted 3.8.13).
    waitid_takes_wall: bool
    # kernel_waitid: P_PGID with id 0 means the caller's own process group from 5.4
    # ("waitid: Add support for waiting for the current process group"); before, EINVAL
    # as any id <= 0 (booted 3.8.13).
    waitid_pgid_zero: bool
    # kernel/ptrace.c:__ptrace_may_access, a target that is not dumpable (it changed its
    # uids): 3.8 lets CAP_SYS_PTRACE over the target's own user namespace pass; 4.10 ("mm:
    # Add a user_ns owner to mm_struct and fix ptrace permission checks") asks it over
    # the user namespace its mm was made in. Booted: 3.8.13 own, 6.1.192 and 6.18.44 mm.
    dumpable_checks_mm_user_ns: bool
    # L9: the /proc state letter of an init asleep in kernel/pid_namespace.c:
    # zap_pid_ns_processes' last wait, for every other pid of its namespace to be freed:
    # D (TASK_UNINTERRUPTIBLE) in 3.8, S (TASK_INTERRUPTIBLE) on 6.18, I (TASK_IDLE) on
    # 6.1 (all three booted). The language shows each as ``exiting``; the real backend's
    # settling (pidns.scenario.real_settle) accepts the running release's letter only.
    zap_wait_state: str


# Each field: its value in 3.8, then (release, new value) for every release that changed it.
HISTORY: dict[str, tuple[object, tuple[tuple[str, object], ...]]] = {
    # 3.12, "pidns: Don't have unshare(CLONE_NEWPID) imply CLONE_THREAD".
    "unshare_newpid_implies_thread": (True, (("3.12", False),)),
    "unshare_flags": (_UNSHARE_3_8, (("4.6", _UNSHARE_3_8 | cf.NEWCGROUP), ("5.6", _UNSHARE_6_18))),
    # 3.12, "fork: unify and tighten up CLONE_NEWUSER/CLONE_NEWPID checks".
    "newpid_refuses_parent": (True, (("3.12", False),)),
    # 3.12 moved the check to SIGHAND (vfork allowed), 4.3 to THREAD; a second NEWPID is
    # refused by copy_pid_ns in every release.
    "pending_ns_refuses": (cf.VM | cf.NEWPID, (("3.12", cf.SIGHAND), ("4.3", cf.THREAD))),
    "too_deep_errno": (errno.EINVAL, (("4.9", errno.ENOSPC),)),
    # 4.1, "fork: report pid reservation failure properly" (35f71bc0a09a, April 2015, in
    # the 4.1 merge window: alloc_pid's -EAGAIN); an earlier note said 4.7.
    "pid_space_full_errno": (errno.ENOMEM, (("4.1", errno.EAGAIN),)),
    "per_ns_pid_max": (False, (("6.14", True),)),
    # 4.15, "pid: replace pid bitmap implementation with IDR API".
    "low_pids_before_wrap": (False, (("4.15", True),)),
    # "userns,pidns: Verify the userns for new pid namespaces", which added in_userns:
    # a bound, not a commit. Ubuntu's 4.13 kernel has no in_userns symbol and its 4.15
    # calls it from copy_pid_ns; the row says 4.14, the first release after the last one
    # seen without it (an earlier row said 4.8; the notes read it absent in 4.9).
    "checks_creator_userns": (False, (("4.14", True),)),
    "subreaper_walk_bounded_by_level": (False, (("4.11", True),)),
    # 4.11: the namespace pull that also brought NS_GET_NSTYPE ("fix a long standing bug
    # in PR_SET_CHILD_SUBREAPER where only children forked after the prctl are
    # considered", Tikhomirov and Nesterov); an earlier note said 4.15.
    "subreaper_propagates": (False, (("4.11", True),)),
    "has_pid_for_children_link": (False, (("4.12", True),)),
    "has_set_tid": (False, (("5.5", True),)),
    # 3.11, "userns: limit the maximum depth of user_namespace->parent chain" (EUSERS);
    # 4.9 made it ENOSPC with the ucounts.
    "user_ns_too_deep_errno": (None, (("3.11", errno.EUSERS), ("4.9", errno.ENOSPC))),
    # Bounds, not commits: own si_pid on 3.8.13, shared on 6.1.176, own again on 6.1.192
    # and 6.12.117, shared on 6.18.44. The row shares from 6.1 (the oldest line booted
    # with it) to 6.1.176, gives each its own from 6.1.177 (the first release after the
    # last one seen sharing) and shares again from 6.13 (after 6.12.117).
    "group_kill_shares_siginfo": (False, (("6.1", True), ("6.1.177", False), ("6.13", True))),
    "has_pidfd": (False, (("5.3", True),)),
    "has_pidfd_wait": (False, (("5.4", True),)),
    "has_pidfd_setns": (False, (("5.8", True),)),
    "has_pidfd_thread": (False, (("6.9", True),)),
    "has_pidfd_info": (False, (("6.13", True),)),
    "pidfd_info_remote_errno": (errno.ESRCH, (("6.18", errno.EREMOTE),)),
    "pidfd_open_thread_errno": (errno.EINVAL, (("6.9", errno.ENOENT),)),
    "has_ns_pid_ioctls": (False, (("6.11", True),)),
    "has_ns_get_parent": (False, (("4.9", True),)),
    "waitid_takes_wall": (False, (("4.7", True),)),
    "waitid_pgid_zero": (False, (("5.4", True),)),
    "dumpable_checks_mm_user_ns": (False, (("4.10", True),)),
    # 4.12, "pid_ns: Sleep in TASK_INTERRUPTIBLE in zap_pid_ns_processes" (believed; the
    # notes saw D on 4.9). Booted: S on 6.1.176 and 6.18.44, I on 6.1.192 (the same 6.1
    # stable update as group_kill_shares_siginfo): the row places I at 6.1.177 and S
    # again at 6.2, the first releases after the last ones booted with S and with I.
    "zap_wait_state": ("D", (("4.12", "S"), ("6.1.177", "I"), ("6.2", "S"))),
}

OLDEST = (3, 8, 0)
_RELEASE = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def release_numbers(release: str) -> tuple[int, int, int]:
    """``"6.1.192"`` -> ``(6, 1, 192)``: major, minor and stable patch of a release (0
    when not given: ``"6.18"`` is 6.18.0). A row can change within a stable line, where a
    fix is backported (``group_kill_shares_siginfo``), so the patch counts. Debian's
    ``6.1.0-50-amd64`` names no patch (its 0 is a placeholder): features.release gives
    the upstream ``6.1.176`` of the running kernel.

    Raises ValueError for text that does not start with ``MAJOR.MINOR``."""
    match = _RELEASE.match(release)
    if match is None:
        raise ValueError(f"not a kernel release: {release!r} (e.g. 6.1 or 6.1.192)")
    return int(match[1]), int(match[2]), int(match[3] or 0)


def since(field_name: str) -> str:
    """The last release that changed ``field_name`` ("3.8" if none did)."""
    changes = HISTORY[field_name][1]
    return changes[-1][0] if changes else "3.8"


_CACHE: dict[tuple[int, int, int], Profile] = {}


def for_release(release: str) -> Profile:
    """The semantics of kernel ``release`` (3.8 or later; any suffix is ignored).

    Raises ValueError for a release older than 3.8 or text that is none."""
    numbers = release_numbers(release)
    if numbers < OLDEST:
        raise ValueError(f"kernel {release} is older than 3.8, the oldest release modelled")
    found = _CACHE.get(numbers)
    if found is None:
        values: dict[str, object] = {}
        for name, (first, changes) in HISTORY.items():
            values[name] = first
            for changed_in, value in changes:
                if numbers >= release_numbers(changed_in):
                    values[name] = value
        major, minor, patch = numbers
        name = f"{major}.{minor}" + (f".{patch}" if patch else "")
        found = Profile(name=name, **values)  # type: ignore[arg-type]
        _CACHE[numbers] = found
    return found


V6_18 = for_release("6.18")
V3_8 = for_release("3.8")

PROFILES: dict[str, Profile] = {p.name: p for p in (V6_18, V3_8)}
DEFAULT = V6_18


def get(name: str) -> Profile:
    """A profile by release: "6.18", "3.8", or any release from 3.8 on ("6.1")."""
    found = PROFILES.get(name)
    if found is not None:
        return found
    try:
        return for_release(name)
    except ValueError as err:
        raise ValueError(f"unknown kernel profile {name!r}: {err}") from None


def select(running_release: str, override: str | None = None) -> Profile:
    """The one choice of profile for a kernel: ``override`` (``--profile``) if given, else
    the profile of the release the kernel reports (uname -r)."""
    return get(override) if override else for_release(running_release)


def same_semantics(a: Profile, b: Profile) -> bool:
    """Whether two profiles agree on every rule (names aside)."""
    return all(getattr(a, name) == getattr(b, name) for name in HISTORY)
