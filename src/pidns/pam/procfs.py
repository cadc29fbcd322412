"""A /proc for a pid namespace that has no init yet, made before the login program forks.

After unshare(CLONE_NEWPID) the caller's namespace for children exists but has no child
reaper, so /proc/self/ns/pid_for_children does not resolve (kernel/pid_namespace.c:
pidns_for_children_get returns NULL while ns->child_reaper is NULL), and a plain
mount("proc") would show the caller's own namespace (fs/proc/root.c:proc_fill_super takes
task_active_pid_ns(current)). Two newer interfaces close the gap:

- the pidfd ioctl PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE (fs/pidfs.c:pidfd_ioctl, Linux 6.11)
  returns an nsfs fd for nsproxy->pid_ns_for_children, with no child_reaper check;
- procfs's ``pidns=`` option (fs/proc/root.c:proc_parse_pidns_param, added in 2025 and
  present in 6.18), set with fsconfig(FSCONFIG_SET_FD), makes the new procfs show it.

fsmount() gives a detached mount; ``attach`` puts it on /proc once the caller is in the
mount namespace where it belongs.
"""

from __future__ import annotations

import errno
import os

from pidns.linux import syscalls as sc


class Unsupported(Exception):
    """The running kernel lacks one of the interfaces; the message says which."""


def namespace_for_children() -> int:
    """An nsfs fd for the caller's pid namespace for children, even before it has an init."""
    try:
        pidfd = os.pidfd_open(os.getpid())
    except OSError as error:
        if error.errno == errno.ENOSYS:
            raise Unsupported("this kernel has no pidfd_open() (Linux 5.3+)") from error
        raise
    try:
        return sc.ns_ioctl(pidfd, sc.PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE)
    except OSError as error:
        if error.errno in (errno.ENOTTY, errno.EINVAL):
            raise Unsupported(
                "this kernel has no PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE ioctl (Linux 6.11+)"
            ) from error
        raise
    finally:
        os.close(pidfd)


def detached_proc(ns_fd: int) -> int:
    """A detached procfs mount (nosuid, nodev, noexec) showing the pid namespace ``ns_fd``."""
    try:
        fs_fd = sc.fsopen("proc")
    except OSError as error:
        if error.errno == errno.ENOSYS:
            raise Unsupported("this kernel has no fsopen() (Linux 5.2+)") from error
        raise
    try:
        try:
            sc.fsconfig(fs_fd, sc.FSCONFIG_SET_FD, "pidns", aux=ns_fd)
        except OSError as error:
            if error.errno == errno.EINVAL:
                raise Unsupported("this kernel's procfs has no pidns= mount option") from error
            raise
        sc.fsconfig(fs_fd, sc.FSCONFIG_CMD_CREATE)
        attrs = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOEXEC
        return sc.fsmount(fs_fd, sc.FSMOUNT_CLOEXEC, attrs)
    finally:
        os.close(fs_fd)


def attach(mount_fd: int, target: str = "/proc") -> None:
    """Mount the detached procfs on ``target`` (on top of what is there) in the caller's mount
    namespace (fs/namespace.c:do_move_mount accepts a detached source)."""
    sc.move_mount(mount_fd, "", sc.AT_FDCWD, target, sc.MOVE_MOUNT_F_EMPTY_PATH)
