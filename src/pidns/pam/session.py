"""Opening and closing one login's namespaces: what pam_pidns does, without PAM.

open_session, for a selected user:

1. save what a rollback needs: an fd of the caller's pid namespace and, with mount_proc, of
   its mount namespace, root and working directory;
2. unshare(CLONE_NEWPID) (kernel/fork.c:ksys_unshare -> kernel/pid_namespace.c:copy_pid_ns):
   only nsproxy->pid_ns_for_children changes, so the login program's next fork becomes pid 1
   of the new namespace (kernel/pid.c:alloc_pid) and the login program itself stays where
   it is, invisible (pid 0) from inside;
3. with mount_proc: build a detached procfs for the new namespace (``procfs``), then
   unshare(CLONE_NEWNS), make every mount private recursively so that nothing done in the
   session propagates to the host, and put the procfs on /proc. A kernel without the
   interfaces leaves /proc as it is, with a warning; any other failure undoes steps 2-3, so
   the login is never left half-configured.

close_session puts the caller back: setns to its own pid namespace (kernel/pid_namespace.c:
pidns_install accepts the active namespace) and to the saved mount namespace. A process that
opens several sessions (a display manager) then gets a fresh namespace each time rather than
EINVAL (copy_pid_ns refuses while pid_ns_for_children is not the active namespace), and its
forks after the session work again (alloc_pid gives ENOMEM once the session's init is dead).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pidns.core import flags as cf
from pidns.linux import syscalls as sc
from pidns.pam import procfs
from pidns.pam.codes import PAM_IGNORE, PAM_SESSION_ERR, PAM_SUCCESS
from pidns.pam.log import Log
from pidns.pam.options import Options

_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass
class Saved:
    """What one open session changed, and the fds that undo it."""

    pid_ns: int
    owner: int = 0  # the pid that opened the session: a forked child must not restore
    mnt_ns: int = -1
    root: int = -1
    cwd: int = -1
    pid_changed: bool = False
    mount_changed: bool = False

    def close(self) -> None:
        for fd in (self.pid_ns, self.mnt_ns, self.root, self.cwd):
            if fd >= 0:
                os.close(fd)


# Sessions opened by this process, by PAM handle address: close_session restores from here.
_OPEN: dict[int, Saved] = {}


def open_session(handle: int, user: str, options: Options, log: Log) -> int:
    """Give ``user``'s session a pid namespace; returns a PAM code (never raises)."""
    selected, why = options.select(user)
    log.debug(f"{why}{'' if selected else ': no pid namespace'}")
    if not selected:
        return PAM_IGNORE
    if handle in _OPEN:
        log.error("a session is already open on this PAM handle; session refused")
        return PAM_SESSION_ERR
    try:
        saved = _save(options.mount_proc)
    except OSError as error:
        log.error(f"cannot open the namespaces to return to: {_text(error)}; session refused")
        return PAM_SESSION_ERR
    try:
        what = _enter(saved, options, log)
    except Exception as error:
        log.error(f"{_text(error)}; session refused")
        _restore(saved, log)
        saved.close()
        return PAM_SESSION_ERR
    _OPEN[handle] = saved
    log.info(f"{user}: {what}")
    return PAM_SUCCESS


def close_session(handle: int, log: Log) -> int:
    """Return the caller to the namespaces it had before open_session on this handle."""
    saved = _OPEN.pop(handle, None)
    if saved is None:
        log.debug("no pid namespace was opened on this PAM handle by this process")
        return PAM_IGNORE
    if saved.owner != os.getpid():
        # A child of the login process (the shell-to-be, say) closing its copy of the
        # handle: its namespaces are the session's, not something to undo.
        saved.close()
        log.debug("close_session in a child of the process that opened the session: ignored")
        return PAM_IGNORE
    try:
        restored = _restore(saved, log)
    finally:
        saved.close()
    if not restored:
        return PAM_SESSION_ERR
    log.debug("the login process is back in its own namespaces")
    return PAM_SUCCESS


class _StepFailed(Exception):
    """A system call of the setup failed; the message names the call and the errno."""


def _step(what: str, error: OSError) -> _StepFailed:
    return _StepFailed(f"{what}: {os.strerror(error.errno or 0)}")


def _text(error: BaseException) -> str:
    if isinstance(error, _StepFailed):
        return str(error)
    if isinstance(error, OSError) and error.errno:
        name = f" {error.filename}" if error.filename else ""
        return f"{os.strerror(error.errno)}{name}"
    return f"internal error: {type(error).__name__}: {error}"


def _save(mount_proc: bool) -> Saved:
    # /proc/thread-self: namespaces belong to the thread that calls PAM (and forks).
    saved = Saved(
        pid_ns=os.open("/proc/thread-self/ns/pid", os.O_RDONLY | os.O_CLOEXEC), owner=os.getpid()
    )
    if mount_proc:
        try:
            saved.mnt_ns = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            saved.root = os.open("/", _DIR_FLAGS)
            saved.cwd = os.open(".", _DIR_FLAGS)
        except OSError:
            saved.close()
            raise
    return saved


def _enter(saved: Saved, options: Options, log: Log) -> str:
    """Steps 2 and 3; returns what was done, for the log. Raises on failure."""
    try:
        sc.unshare(cf.NEWPID)
    except OSError as error:
        raise _step("unshare(CLONE_NEWPID)", error) from error
    saved.pid_changed = True
    plain = "new pid namespace for the next child"
    try:
        ns_fd = procfs.namespace_for_children()
    except procfs.Unsupported as gap:
        if options.mount_proc:
            log.warning(f"mount_proc: {gap}: /proc is left as is (ps shows every process)")
        return plain
    except OSError as error:
        if options.mount_proc:
            raise _step("PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE", error) from error
        return plain  # the fd only names the namespace in the log line
    try:
        what = f"new pid namespace pid:[{os.fstat(ns_fd).st_ino}] for the next child"
        if not options.mount_proc:
            return what
        try:
            mount_fd = procfs.detached_proc(ns_fd)
        except procfs.Unsupported as gap:
            log.warning(f"mount_proc: {gap}: /proc is left as is (ps shows every process)")
            return what
        except OSError as error:
            raise _step("mounting a procfs for the new namespace", error) from error
    finally:
        os.close(ns_fd)
    try:
        _private_proc(saved, mount_fd)
    finally:
        os.close(mount_fd)
    return what + ", with its own /proc"


def _private_proc(saved: Saved, mount_fd: int) -> None:
    try:
        sc.unshare(cf.NEWNS)
    except OSError as error:
        raise _step("unshare(CLONE_NEWNS)", error) from error
    saved.mount_changed = True
    try:
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    except OSError as error:
        raise _step("making / private (MS_REC|MS_PRIVATE)", error) from error
    try:
        procfs.attach(mount_fd)
    except OSError as error:
        raise _step("move_mount(procfs, /proc)", error) from error


def _restore(saved: Saved, log: Log) -> bool:
    """Undo what ``saved`` records; logs and returns False if something stays changed."""
    restored = True
    if saved.mount_changed:
        try:
            sc.setns(saved.mnt_ns, cf.NEWNS)
            # setns(CLONE_NEWNS) resets root and cwd to the namespace's (fs/namespace.c:
            # mntns_install): put back a chroot and the working directory.
            os.fchdir(saved.root)
            os.chroot(".")
            os.fchdir(saved.cwd)
            saved.mount_changed = False
        except OSError as error:
            log.error(f"cannot return to the original mount namespace: {_text(error)}")
            restored = False
    if saved.pid_changed:
        try:
            sc.setns(saved.pid_ns, cf.NEWPID)
            saved.pid_changed = False
        except OSError as error:
            log.error(f"cannot return to the original pid namespace: {_text(error)}")
            restored = False
    return restored
