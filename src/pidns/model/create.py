"""Creation: fork/clone, unshare and setns, with the flag rules of each profile.

kernel/fork.c (copy_process, ksys_unshare, check_unshare_flags), kernel/nsproxy.c
(copy_namespaces, unshare_nsproxy_namespaces, setns) and kernel/pid_namespace.c
(copy_pid_ns, create_pid_namespace, pidns_install). The order of checks is the kernel's:
the first failing check decides the errno.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pidns.core import flags as cf
from pidns.core.copy_process import copy_process_refusal
from pidns.model.errors import KernelError
from pidns.model.namespace import PidNamespace, UserNamespace, alloc_numbers, publish_numbers
from pidns.model.profiles import MAX_PID_NS_LEVEL, PID_MAX_LIMIT
from pidns.model.task import Caller, Task, TaskState, Thread, capable

if TYPE_CHECKING:
    from pidns.model.kernel import Kernel

# clone3 accepts the legacy flags (kernel/fork.c:clone3_args_valid); CSIGNAL bits other
# than NEWTIME are the exit signal's and not flags there.
_CLONE3_FLAGS = (0xFFFFFFFF & ~cf.CSIGNAL) | cf.NEWTIME


def create_user_ns(kernel: Kernel, task: Task) -> UserNamespace:
    """kernel/user_namespace.c:create_user_ns (the parts a pid-namespace model needs):
    a parent deeper than 32 levels is refused (profile), and "the creator needs a
    mapping in the parent user namespace" (EPERM): after unshare(CLONE_NEWUSER) with no
    uid_map written, a task cannot make another user namespace."""
    parent = task.user_ns
    too_deep = kernel.profile.user_ns_too_deep_errno
    if too_deep is not None and parent.level > MAX_PID_NS_LEVEL:
        raise KernelError(too_deep, "user namespace")
    if not parent.maps(task.euid):
        raise KernelError(errno.EPERM, "user namespace")
    return UserNamespace(parent, owner=task.euid)


def create_pid_ns(
    kernel: Kernel, creator: Task, user_ns: UserNamespace, parent: PidNamespace
) -> PidNamespace:
    """kernel/pid_namespace.c:copy_pid_ns + create_pid_namespace.

    Profile: today the creator's user namespace must be at or below the owner of the
    parent pid namespace (in_userns, EINVAL); too deep a nesting gives ENOSPC (EINVAL in
    3.8); a new namespace gets pid_max = PID_MAX_LIMIT (one global pid_max in 3.8).
    """
    if creator.ns is not parent:
        # "task_active_pid_ns(current) != old_ns": a second unshare(NEWPID), or
        # clone(NEWPID), before pid_ns_for_children is the active namespace again
        raise KernelError(errno.EINVAL, "copy_pid_ns")
    profile = kernel.profile
    if profile.checks_creator_userns and not user_ns.is_same_or_below(parent.user_ns):
        raise KernelError(errno.EINVAL, "create_pid_namespace")
    level = parent.level + 1
    if level > MAX_PID_NS_LEVEL:
        raise KernelError(profile.too_deep_errno, "create_pid_namespace")
    pid_max = PID_MAX_LIMIT if profile.per_ns_pid_max else kernel.pid_max
    ns = PidNamespace(parent, user_ns, level, pid_max)
    kernel.namespaces[ns] = None
    return ns


def _new_namespaces(
    kernel: Kernel, caller: Caller, flags: int, call: str
) -> tuple[UserNamespace, bool, PidNamespace]:
    """The namespaces a clone or an unshare makes, in the kernel's order: first the user
    namespace (copy_creds / unshare_userns), with full capabilities in it; then, with
    CAP_SYS_ADMIN over that (possibly new) user namespace judged with the caller's
    credentials, the others (copy_namespaces / unshare_nsproxy_namespaces): EPERM.
    Returns the credentials' user namespace and capabilities, and the pid namespace for
    the children (a new one with CLONE_NEWPID, a child of the calling thread's
    pid_ns_for_children)."""
    task = caller.group
    user_ns = task.user_ns
    caps = task.caps
    if flags & cf.NEWUSER:
        user_ns = create_user_ns(kernel, task)
        caps = True
    ns = caller.children_ns
    if flags & cf.NEW_NAMESPACES:
        if not capable(task, user_ns):  # the owner of a new user ns holds it there
            raise KernelError(errno.EPERM, call)
        if flags & cf.NEWPID:
            ns = create_pid_ns(kernel, task, user_ns, ns)
    return user_ns, caps, ns


def copy_process(
    kernel: Kernel, caller: Caller, flags: int, set_tid: Sequence[int], exit_signal: int = 17
) -> Task | Thread:
    """kernel/fork.c:kernel_clone + copy_process: a new thread group (its leader), or
    with CLONE_THREAD a new thread of the caller's group."""
    profile = kernel.profile
    task = caller.group
    if flags:
        _check_clone_flags(kernel, caller, flags, set_tid)
    elif set_tid and not profile.has_set_tid:
        raise KernelError(errno.ENOSYS, "clone3")
    user_ns, caps, ns = _new_namespaces(kernel, caller, flags, "clone")
    # alloc_pid: set_tid numbers need CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE over each
    # level's owner (checkpoint_restore_ns_capable, with the caller's credentials)
    may_choose = [capable(task, level_ns.user_ns) for level_ns in ns.chain] if set_tid else []
    try:
        numbers = alloc_numbers(ns, set_tid, profile, may_choose)
    except BaseException:
        if flags & cf.NEWPID:
            del kernel.namespaces[ns]
        raise
    if flags & cf.THREAD:
        # a thread: its own tid in every level, the caller's nsproxy and signal mask
        thread = Thread(task, tuple(numbers), caller.children_ns)
        thread.blocked = caller.blocked
        publish_numbers(thread)
        if task.threads is None:
            task.threads = {}
        task.threads[thread] = None
        return thread
    child = Task(ns, tuple(numbers), None, user_ns)
    _inherit(task, child, caps)
    child.blocked = caller.blocked  # the calling thread's mask
    # CLONE_PARENT takes the caller's own exit signal (kernel/fork.c:copy_process)
    child.exit_signal = task.exit_signal if flags & cf.PARENT else exit_signal
    # CLONE_PARENT: the child becomes the caller's sibling (kernel/fork.c:copy_process)
    parent = task.parent if flags & cf.PARENT and task.parent is not None else task
    child.parent = parent
    child.has_child_subreaper = parent.has_child_subreaper or parent.is_subreaper
    publish_numbers(child)
    if numbers[-1] == 1:
        # is_child_reaper(pid): pid 1 of its namespace becomes the child reaper
        ns.child_reaper = child
        child.unkillable = True
    # real_parent is the calling thread (CLONE_PARENT: the caller's own real_parent)
    if flags & cf.PARENT and task.parent is not None:
        parent.add_child(child, task.creator)
    else:
        parent.add_child(child, caller if isinstance(caller, Thread) else None)
    kernel.tasks[child] = None
    return child


def _check_clone_flags(kernel: Kernel, caller: Caller, flags: int, set_tid: Sequence[int]) -> None:
    """The flag checks of clone3 before any task exists, in the kernel's order (the first
    failing one decides the errno): clone3_args_valid and copy_clone_args_from_user
    (kernel/fork.c), then copy_process's. The rules on the flag word alone are
    ``core.copy_process.copy_process_refusal``, shared with the real launcher; the rest
    depend on the caller's state or on the profile."""
    profile = kernel.profile
    task = caller.group
    if set_tid and not profile.has_set_tid:
        # 3.8 has no clone3 at all (5.3), nor set_tid (5.5): the syscall is missing, and
        # checks nothing first (booted 3.8.13)
        raise KernelError(errno.ENOSYS, "clone3")
    if flags & ~_CLONE3_FLAGS or flags & cf.DETACHED:
        # clone3_args_valid: clone3 has no CSIGNAL bits (exit_signal is a field of its
        # own) and CLONE_DETACHED, ignored by clone(2) for decades, is refused there
        raise KernelError(errno.EINVAL, "clone3")
    if len(set_tid) > MAX_PID_NS_LEVEL:
        # copy_clone_args_from_user: one number per level, at most MAX_PID_NS_LEVEL
        raise KernelError(errno.EINVAL, "clone3")
    new_pid_or_user = flags & (cf.NEWPID | cf.NEWUSER)
    if profile.newpid_refuses_parent and new_pid_or_user and flags & (cf.THREAD | cf.PARENT):
        # 3.8 do_fork: a child in a new pid or user namespace may be neither a thread nor
        # a sibling of the caller (later kernels keep only the THREAD half, below)
        raise KernelError(errno.EINVAL, "do_fork")
    reason = copy_process_refusal(flags)
    if reason is not None:
        raise KernelError(errno.EINVAL, f"copy_process ({reason})")
    if flags & cf.PARENT and task.unkillable:
        # "prevent global and container-inits from creating siblings": a sibling of an
        # init would be reaped by nobody in its namespace (multi-rooted process trees)
        raise KernelError(errno.EINVAL, "copy_process")
    if flags & profile.pending_ns_refuses and task.ns is not caller.children_ns:
        # after unshare(NEWPID)/setns the calling thread may not share its thread group
        # (today) or its memory or make another pid namespace (3.8): the new task would
        # sit in pid_ns_for_children while sharing state with a task outside it; other
        # threads of the caller may
        raise KernelError(errno.EINVAL, "copy_process")


def _inherit(parent: Task, child: Task, caps: bool) -> None:
    """What a child copies from the task that forked it (credentials, signals, groups)."""
    child.uid = parent.uid
    child.euid = parent.euid
    child.suid = parent.suid
    child.caps = caps
    child.dumpable = parent.dumpable
    child.dispositions = parent.dispositions  # copy on write
    pgrp = parent.pgrp
    session = parent.session
    child.pgrp = pgrp
    child.session = session
    pgrp.pgrp_users += 1
    session.session_users += 1


def unshare(kernel: Kernel, caller: Caller, flags: int) -> None:
    """kernel/fork.c:ksys_unshare for the pid and user namespaces.

    Profile: in 3.8 CLONE_NEWPID implies CLONE_THREAD (then VM, then SIGHAND); today
    it implies nothing. check_unshare_flags refuses THREAD, SIGHAND and VM unless the
    caller is the only thread of its group (EINVAL), so unshare(NEWUSER) needs a single
    thread (it implies THREAD), and in 3.8 unshare(NEWPID) does too; a thread whose
    leader exit(2)ed is not alone. The new
    pid_ns_for_children is the calling thread's alone.
    """
    profile = kernel.profile
    task = caller.group
    if profile.unshare_newpid_implies_thread and flags & cf.NEWPID:
        flags |= cf.THREAD | cf.VM | cf.SIGHAND
    if flags & cf.NEWUSER:
        flags |= cf.THREAD | cf.FS
    if flags & cf.NEWNS:
        flags |= cf.FS
    if flags & ~profile.unshare_flags:
        raise KernelError(errno.EINVAL, "unshare")  # check_unshare_flags
    if flags & (cf.THREAD | cf.SIGHAND | cf.VM) and (isinstance(caller, Thread) or task.threads):
        # !thread_group_empty(current): a leader that exit(2)ed stays on the thread list
        # as a zombie, so a non-leader thread is never alone (checked on 6.18.44)
        raise KernelError(errno.EINVAL, "unshare")
    user_ns, caps, new_children_ns = _new_namespaces(kernel, caller, flags, "unshare")
    # commit: switch_task_namespaces, then commit_creds
    caller.children_ns = new_children_ns
    task.user_ns = user_ns
    task.caps = caps


def open_ns_link(
    kernel: Kernel, task: Task, target: Task | Thread, for_children: bool
) -> PidNamespace:
    """Opening /proc/TARGET/ns/pid or pid_for_children (fs/proc/namespaces.c).

    ``pid`` names the target's active namespace (kernel/pid_namespace.c:pidns_get) and
    resolves while the target has a pid, zombies included; ``pid_for_children`` needs the
    target's nsproxy (gone once it exits) and a namespace that has had an init
    (pidns_for_children_get), else ENOENT. Opening needs ptrace read access.
    """
    if target.state is TaskState.REAPED:
        raise KernelError(errno.ESRCH, "open")
    if for_children and not kernel.profile.has_pid_for_children_link:
        raise KernelError(errno.ENOENT, "open")
    if not may_inspect(kernel, task, target.group):
        raise KernelError(errno.EACCES, "open")
    if not for_children:
        return target.ns
    if not has_nsproxy(target) or target.children_ns.child_reaper is None:
        raise KernelError(errno.ENOENT, "open")
    return target.children_ns


def has_nsproxy(thread: Task | Thread) -> bool:
    """The thread still runs: exit_task_namespaces drops nsproxy as it exits (a group's
    leader that exit(2)ed while other threads run has none)."""
    if isinstance(thread, Thread):
        return thread.alive
    return thread.state is TaskState.RUNNING and not thread.leader_exited


def may_inspect(kernel: Kernel, task: Task, target: Task) -> bool:
    """kernel/ptrace.c:__ptrace_may_access for PTRACE_MODE_READ_FSCREDS, then
    security/commoncap.c:cap_ptrace_access_check (a failure shows as EACCES on open).

    1. the caller's fsuid is the target's uid, euid and suid, or the caller holds
       CAP_SYS_PTRACE over the target's user namespace;
    2. a target that changed its uids is not dumpable: then only CAP_SYS_PTRACE over its
       mm's user namespace helps (the model's root, also after an exec: fs/exec.c:would_dump
       moves the new mm's up to a namespace privileged over the interpreter's owner,
       the host's root; before 4.10
       over the target's own user namespace). The running
       kernel keeps this for zombies too, though their mm is gone (checked on 6.18.44);
    3. in the same user namespace the target's capabilities must be a subset of the
       caller's; across user namespaces the caller needs CAP_SYS_PTRACE over the target's.
    """
    if task is target:
        return True
    same_uid = task.euid == target.uid == target.euid == target.suid
    if not same_uid and not capable(task, target.user_ns):
        return False
    mm_user_ns = kernel.root_user_ns  # the mm's user namespace (would_dump, above)
    if not kernel.profile.dumpable_checks_mm_user_ns:
        mm_user_ns = target.user_ns  # 3.8: the target's credentials' (profiles.md)
    if not target.dumpable and not capable(task, mm_user_ns):
        return False
    if task.user_ns is target.user_ns and (task.caps or not target.caps):
        return True
    return capable(task, target.user_ns)


def setns(kernel: Kernel, caller: Caller, target_ns: PidNamespace) -> None:
    """kernel/pid_namespace.c:pidns_install: only the calling thread's
    pid_ns_for_children changes."""
    task = caller.group
    if not capable(task, target_ns.user_ns) or not capable(task, task.user_ns):
        raise KernelError(errno.EPERM, "setns")
    active = task.ns
    if not active.is_ancestor_of(target_ns):
        # "Only allow entering the current active pid namespace or a child of it"
        raise KernelError(errno.EINVAL, "setns")
    caller.children_ns = target_ns


__all__ = ["copy_process", "open_ns_link", "setns", "unshare"]
