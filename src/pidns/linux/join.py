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
from pidns.linux import features, nsfs, syscalls, userns


class JoinError(OSError):
    """The namespace could not be joined (exit status 125); ``str()`` is one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def join_flags(target: int, *, mount: bool, privileged: bool, user: bool = False) -> int:
    """The CLONE_NEW* flags to pass to setns for ``target``: its pid namespace, its mount
    namespace with ``mount``, its user namespace with ``user`` or, when it differs from
    ours, without CAP_SYS_ADMIN."""
    flags = cf.NEWPID
    if mount:
        flags |= cf.NEWNS
    if (user or not privileged) and _differs(target, "user"):
        flags |= cf.NEWUSER
    return flags


def _differs(target: int, kind: str) -> bool:
    try:
        theirs = os.stat(f"/proc/{target}/ns/{kind}").st_ino
        return theirs != os.stat(f"/proc/self/ns/{kind}").st_ino
    except OSError:
        return False


def join(
    target: int | None,
    *,
    mount: bool = False,
    user: bool = False,
    pid_file: str | None = None,
    pidfd: int = -1,
) -> int:
    """Move the calling process's pid_for_children (and, with ``mount``, its mount
    namespace; with ``user``, its user namespace) into those of process ``target``.
    ``pid_file``: the pid namespace as an nsfs file instead (nsenter's ``--pid=FILE``:
    /proc/PID/ns/pid, /proc/PID/ns/pid_for_children, or a bind mount of one); ``target``
    then gives only the other namespaces, and may be None. ``pidfd``: a pidfd of ``target``
    already checked to be the right process (``pidns exec --name``; closed here). Returns
    the flags used; raises JoinError."""
    privileged = userns.has_cap_sys_admin()
    flags = 0
    cwd = _cwd()
    try:
        pid_fd = -1 if pid_file is None else _open_pid_namespace(pid_file)
    except JoinError:
        if pidfd >= 0:
            os.close(pidfd)
        raise
    try:
        if target is not None:
            flags = join_flags(target, mount=mount, privileged=privileged, user=user)
            if pid_fd >= 0:
                flags &= ~cf.NEWPID
            if flags:
                _setns_target(target, flags, pidfd)
                pidfd = -1
        if pid_fd >= 0:
            if not flags & cf.NEWUSER and (user or not privileged):
                flags |= _join_owner(pid_fd, pid_file or "")
            try:
                syscalls.setns(pid_fd, cf.NEWPID)
            except OSError as exc:
                err = exc.errno or errno.EIO
                raise JoinError(err, _explain(err, f"the pid namespace {pid_file}")) from None
            flags |= cf.NEWPID
    finally:
        for fd in (pid_fd, pidfd):
            if fd >= 0:
                os.close(fd)
    if flags & cf.NEWNS and cwd is not None and os.path.isdir(cwd):
        # setns(CLONE_NEWNS) moves the caller to the new namespace's root
        # (fs/namespace.c:mntns_install); keep the same directory if it exists there.
        os.chdir(cwd)
    return flags


def _setns_target(target: int, flags: int, pidfd: int = -1) -> None:
    """setns into ``target``'s namespaces through ``pidfd`` (opened here if -1; closed)."""
    if not features.has("setns_pidfd"):
        if pidfd >= 0:  # checked already; the files route names the same process
            os.close(pidfd)
            pidfd = -1
        try:
            _setns_files(target, flags)
            return
        except JoinError as exc:
            # "missing" includes a seccomp filter that refuses setns: then the pidfd route
            # fails too, and its failure is the one diagnosed (pidns doctor's causes)
            if exc.errno not in (errno.EPERM, errno.EACCES) or not features.has("pidfd_open"):
                raise
    if pidfd < 0:
        try:
            pidfd = syscalls.pidfd_open(target)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                raise JoinError(errno.ESRCH, f"no process {target}") from None
            raise JoinError(exc.errno or errno.EIO, f"process {target}: {exc.strerror}") from None
    try:
        syscalls.setns(pidfd, flags)
    except OSError as exc:
        raise _refused(exc, target) from None
    finally:
        os.close(pidfd)


def _refused(exc: OSError, target: int) -> JoinError:
    """The JoinError for an open or setns of ``target``'s namespaces that failed."""
    err = exc.errno or errno.EIO
    return JoinError(err, _explain(err, f"process {target}"))


# The /proc/PID/ns files of each flag, in the order they are joined one by one: the user
# namespace first, so that the others are joined with its capabilities.
_FILES = ((cf.NEWUSER, "user"), (cf.NEWNS, "mnt"), (cf.NEWPID, "pid"))


def _setns_files(target: int, flags: int) -> None:
    """The fallback before setns took a pidfd (5.8): one /proc/PID/ns file per namespace,
    all opened before any is joined. Not atomic, and racy against the reuse of
    ``target``'s pid between the opens, as every tool before 5.8 was."""
    fds: list[tuple[int, int]] = []
    try:
        for flag, name in _FILES:
            if flags & flag:
                try:
                    fds.append((flag, os.open(f"/proc/{target}/ns/{name}", os.O_RDONLY)))
                except FileNotFoundError:
                    raise JoinError(errno.ESRCH, f"no process {target}") from None
                except OSError as exc:
                    raise _refused(exc, target) from None
        for flag, fd in fds:
            try:
                syscalls.setns(fd, flag)
            except OSError as exc:
                raise _refused(exc, target) from None
    finally:
        for _flag, fd in fds:
            os.close(fd)


def _open_pid_namespace(path: str) -> int:
    """An fd of the pid namespace file ``path``; JoinError unless it is one (NS_GET_NSTYPE:
    fs/nsfs.c:ns_ioctl)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise JoinError(exc.errno or errno.EIO, f"{path}: {exc.strerror}") from None
    if nsfs.nstype(fd) != cf.NEWPID:
        os.close(fd)
        raise JoinError(errno.EINVAL, f"{path} is not a pid namespace (an nsfs file)")
    return fd


def _join_owner(pid_fd: int, path: str) -> int:
    """Join the user namespace that owns the pid namespace ``pid_fd`` (NS_GET_USERNS), when
    it is not ours: CLONE_NEWUSER if it was joined, else 0."""
    owner = nsfs.related(pid_fd, nsfs.NS_GET_USERNS)
    if owner is None:
        return 0  # above ours (EPERM): setns will say why
    try:
        if os.fstat(owner).st_ino == os.stat("/proc/self/ns/user").st_ino:
            return 0
        syscalls.setns(owner, cf.NEWUSER)
    except OSError as exc:
        err = exc.errno or errno.EIO
        raise JoinError(err, _explain(err, f"the owner of {path}")) from None
    finally:
        os.close(owner)
    return cf.NEWUSER


def set_root(root: str | None, wd: str | None) -> None:
    """nsenter's --root and --wd, after the join: chroot to ``root`` (then ``/``), then
    chdir to ``wd``. Raises JoinError."""
    for what, path in (("the root directory", root), ("the working directory", wd)):
        if path is None:
            continue
        try:
            if path is root:
                os.chroot(path)
            os.chdir("/" if path is root else path)
        except OSError as exc:
            err = exc.errno or errno.EIO
            raise JoinError(err, f"cannot change {what} to {path}: {exc.strerror}") from None


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


def _explain(err: int, target: str) -> str:
    if err == errno.EPERM:
        from pidns.linux import diagnose  # noqa: PLC0415 (only once setns failed)

        facts = diagnose.Facts()
        if facts.status.seccomp == diagnose.SECCOMP_FILTER:  # refused before any check
            return str(diagnose.refusal("setns", err, user=False, facts=facts))
        return (
            f"not permitted to join the namespaces of {target} (that needs ptrace "
            "access to it and CAP_SYS_ADMIN over the user namespace that owns them)"
        )
    if err == errno.EINVAL:
        return (
            f"cannot join the pid namespace of {target}: it is not yours "
            "nor below yours (a pid namespace can only be entered downwards)"
        )
    if err == errno.ESRCH:
        return f"{target} has exited"
    return f"cannot join the namespaces of {target}: {os.strerror(err)}"
