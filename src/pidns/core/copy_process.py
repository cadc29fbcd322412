"""The flag rules of kernel/fork.c:copy_process that depend on the flag word alone.

One pure function, shared by the model (``pidns.model.create``, which adds the rules
that depend on the caller's state) and the real launcher (``pidns.linux.syscalls``, which
passes a word copy_process always refuses straight to the kernel, since no task can come
of it). Every rule answers EINVAL, and is the same in 3.8 and 6.18.
"""

from __future__ import annotations

from pidns.core import flags as cf

# (flags that must all be set, flags of which one must be set or 0 for "none", must be
# clear, the reason). In copy_process's order.
_RULES: tuple[tuple[int, int, int, str], ...] = (
    (
        cf.NEWNS | cf.FS,
        0,
        0,
        # "Don't allow sharing the root directory with processes in a different
        # namespace": a new mount namespace with a shared fs_struct would give both
        # namespaces one root and cwd.
        "CLONE_NEWNS with CLONE_FS: two mount namespaces cannot share one root and cwd",
    ),
    (
        cf.NEWUSER | cf.FS,
        0,
        0,
        # the child is root in its new user namespace: sharing root and cwd with a
        # parent outside it would let it chroot the parent's view (a known escape)
        "CLONE_NEWUSER with CLONE_FS: a new user namespace cannot share root and cwd",
    ),
    (
        cf.THREAD,
        0,
        cf.SIGHAND,
        # "Thread groups must share signals as well": one signal queue for the group
        # needs one table of handlers
        "CLONE_THREAD without CLONE_SIGHAND: a thread group shares its signal handlers",
    ),
    (
        cf.SIGHAND,
        0,
        cf.VM,
        # "Shared signal handlers imply shared VM": a handler is an address in memory
        "CLONE_SIGHAND without CLONE_VM: shared handlers are addresses in shared memory",
    ),
    (
        cf.THREAD,
        cf.NEWUSER | cf.NEWPID,
        0,
        # "If the new process will be in a different pid or user namespace do not allow
        # it to share a thread group with the forking task": a thread group has one
        # pid namespace and one set of credentials
        "CLONE_THREAD with CLONE_NEWPID or CLONE_NEWUSER: a thread group has one pid "
        "and one user namespace",
    ),
)


def copy_process_refusal(flags: int) -> str | None:
    """Why kernel/fork.c:copy_process refuses ``flags`` with EINVAL whoever calls it,
    or None when the flag word alone is acceptable (the caller's state may still make
    it refuse: CLONE_PARENT from an init, CLONE_THREAD after unshare(CLONE_NEWPID))."""
    for needed, any_of, missing, reason in _RULES:
        if flags & needed != needed:
            continue
        if any_of and not flags & any_of:
            continue
        if missing and flags & missing:
            continue
        return reason
    return None
