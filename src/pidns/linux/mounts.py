"""The mount side of a new pid namespace: private propagation, then a fresh /proc.

A new mount namespace starts as a copy of its parent's mounts, and those copies stay in
the parent's peer groups (fs/namespace.c:copy_mnt_ns, CL_SHARED_TO_SLAVE only applies to
mounts owned by another user namespace). Mounting /proc there would propagate back to the
host, so every mount is first made private, recursively (fs/namespace.c:do_change_type
with MS_REC), exactly as ``unshare --propagation private`` does; only then is a new procfs,
whose pid namespace is the mounter's active one (fs/proc/root.c:proc_fill_super), mounted
over /proc.
"""

from __future__ import annotations

from pidns.linux import syscalls

PROC_FLAGS = syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC


# unshare's --propagation: the recursive propagation change of every mount of a new
# mount namespace (fs/namespace.c:do_change_type); "unchanged" keeps the copies in their
# parent's peer groups
PROPAGATIONS = {
    "private": syscalls.MS_PRIVATE,
    "slave": syscalls.MS_SLAVE,
    "shared": syscalls.MS_SHARED,
    "unchanged": 0,
}


def set_propagation(kind: str, root: str = "/") -> None:
    """mount --make-rKIND ROOT (nothing for "unchanged")."""
    flag = PROPAGATIONS[kind]
    if flag:
        syscalls.mount(None, root, None, syscalls.MS_REC | flag)


def make_private_recursive(root: str = "/") -> None:
    """mount --make-rprivate ROOT: no mount event crosses to or from the parent namespace."""
    syscalls.mount(None, root, None, syscalls.MS_REC | syscalls.MS_PRIVATE)


def mount_proc(target: str = "/proc", *, subset_pid: bool = False) -> None:
    """A procfs for the caller's pid namespace, over ``target``; with ``subset_pid``, one
    with only the process directories (``subset=pid``, fs/proc/root.c, 5.8+).

    Inside a user namespace the kernel allows it only when an existing procfs is fully
    visible in this mount namespace (fs/namespace.c:mnt_already_visible); otherwise EPERM
    (why, and what to do instead: linux/diagnose.py).
    """
    syscalls.mount("proc", target, "proc", PROC_FLAGS, "subset=pid" if subset_pid else None)
