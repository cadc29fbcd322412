"""Entering an existing pid namespace: setns through a pidfd, then fork.

setns(pidfd, CLONE_NEWPID) changes only the caller's pid_for_children
(kernel/pid_namespace.c:pidns_install); the caller keeps its pid, and its next child is
the first of its processes inside (kernel/fork.c:copy_process allocates the child's pids
from nsproxy->pid_ns_for_children). A pidfd names the target race-free, and lets several
namespaces be joined in one call, atomically (kernel/nsproxy.c:prepare_nsset).

The joined namespace must be the caller's own or a descendant of it (EINVAL otherwise:
pidns_install), and the caller needs CAP_SYS_ADMIN over the user namespace that owns it
(EPERM). An unprivileged caller therefore joins the target's user namespace in the same
call when it differs from its own (kernel/user_namespace.c:userns_install needs a
single-threaded caller, which the command-line tool is).
"""

from __future__ import annotations

import errno
import os

from pidns.core import flags as cf
from pidns.linux import syscalls, userns


class JoinError(OSError):
    """The namespace could not be joined (exit status 125); ``str()`` is one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def join_flags(target: int, *, mount: bool, privileged: bool) -> int:
    """The CLONE_NEW* flags to pass to setns for ``target``."""
    flags = cf.NEWPID
    if mount:
        flags |= cf.NEWNS
    if not privileged and _differs(target, "user"):
        flags |= cf.NEWUSER
    return flags


def _differs(target: int, kind: str) -> bool:
    try:
        theirs = os.stat(f"/proc/{target}/ns/{kind}").st_ino
        return theirs != os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return False


def join(target: int, *, mount: bool = False) -> int:
    """Move the calling process's pid_for_children (and, with ``mount``, its mount
    namespace) into those of process ``target``. Returns the flags used; raises JoinError."""
    try:
        pidfd = syscalls.pidfd_open(target)
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            raise JoinError(errno.ESRCH, f"no process {target}") from None
        raise JoinError(exc.errno or errno.EIO, f"process {target}: {exc.strerror}") from None
    flags = join_flags(target, mount=mount, privileged=userns.has_cap_sys_admin())
    cwd = _cwd()
    try:
        syscalls.setns(pidfd, flags)
    except OSError as exc:
        raise JoinError(exc.errno or errno.EIO, _explain(exc.errno or errno.EIO, target)) from None
    finally:
        os.close(pidfd)
    if flags & cf.NEWNS and cwd is not None and os.path.isdir(cwd):
        # setns(CLONE_NEWNS) moves the caller to the new namespace's root
        # (fs/namespace.c:mntns_install); keep the same directory if it exists there.
        os.chdir(cwd)
    return flags


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _explain(err: int, target: int) -> str:
    if err == errno.EPERM:
        from pidns.linux import diagnose  # noqa: PLC0415 (only once setns failed)

        facts = diagnose.Facts()
        if facts.status.seccomp == diagnose.SECCOMP_FILTER:  # refused before any check
            return str(diagnose.refusal("setns", err, user=False, facts=facts))
        return (
            f"not permitted to join the namespaces of process {target} (that needs ptrace "
            "access to it and CAP_SYS_ADMIN over the user namespace that owns them)"
        )
    if err == errno.EINVAL:
        return (
            f"cannot join the pid namespace of process {target}: it is not yours "
            "nor below yours (a pid namespace can only be entered downwards)"
        )
    if err == errno.ESRCH:
        return f"process {target} has exited"
    return f"cannot join the namespaces of process {target}: {os.strerror(err)}"
