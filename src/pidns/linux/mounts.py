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


def make_private_recursive(root: str = "/") -> None:
    """mount --make-rprivate ROOT: no mount event crosses to or from the parent namespace."""
    syscalls.mount(None, root, None, syscalls.MS_REC | syscalls.MS_PRIVATE)


def mount_proc(target: str = "/proc") -> None:
    """A procfs for the caller's pid namespace, over ``target``.

    Inside a user namespace the kernel allows it only when an existing procfs is fully
    visible in this mount namespace (fs/namespace.c:mnt_already_visible); otherwise EPERM.
    """
    syscalls.mount("proc", target, "proc", PROC_FLAGS)


def mount_failure_hint(in_user_namespace: bool) -> str:
    """What to tell the user when the /proc mount is refused with EPERM."""
    if in_user_namespace:
        return (
            "an unprivileged /proc needs the host's /proc fully visible (no file or "
            "directory mounted over parts of it); use --no-mount-proc"
        )
    return "use --no-mount-proc"
