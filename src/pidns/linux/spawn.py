"""Starting a command: finding it on PATH, exec'ing it, and the shell's statuses for failures.

Three ways to start one, each for a reason:

- ``spawn``: os.posix_spawn, which glibc implements with clone(CLONE_VM|CLONE_VFORK), so
  nothing is copied. The init uses it whenever no terminal is involved.
- ``fork_exec``: os.fork, for the cases where the child must run code before exec that
  posix_spawn cannot express: take the terminal's foreground (tcsetpgrp), arm the
  parent-death signal (prctl PR_SET_PDEATHSIG).
- ``exec_command``: replace the calling process (``--as-pid-1``).

Exec failures carry the kernel's errno (fs/exec.c:do_execveat_common);
``pidns.core.exits.for_exec_error`` turns one into the shell's status.
"""

from __future__ import annotations

import errno
import os
import select

from pidns.core import exits
from pidns.core.exits import EXIT_SETUP, describe_exec_error
from pidns.linux import fastsignal as signal
from pidns.linux import syscalls

TYPE_CHECKING = False  # collections.abc costs `pidns run` start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

# Python ignores these two at start-up (Python/pylifecycle.c); a command must not inherit
# that (subprocess's restore_signals rule).
RESTORED_SIGNALS = (int(signal.SIGPIPE), int(signal.SIGXFSZ))
# Everything a process can catch (glibc keeps 32 and 33 for itself: valid_signals omits them).
CATCHABLE = tuple(
    sorted(int(s) for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP))
)
# Every signal a disposition can be set for, glibc's internal 32 and 33 included.
_SETTABLE = tuple(s for s in range(1, 65) if s not in (int(signal.SIGKILL), int(signal.SIGSTOP)))
SIGCHLD = int(signal.SIGCHLD)


def socket_activation(
    env: Mapping[str, str], launcher_pid: int, command_pid: int
) -> dict[str, str]:
    """The command's environment under socket activation: systemd hands fds 3.. to the
    process LISTEN_PID names (sd_listen_fds(3) ignores them in any other), so when that is
    the launcher, the command, which inherits them, must find its own pid there (as
    catatonit rewrites it). Any other LISTEN_PID is not ours, and is left alone."""
    result = dict(env)
    if "LISTEN_FDS" in result and result.get("LISTEN_PID") == str(launcher_pid):
        result["LISTEN_PID"] = str(command_pid)
    return result


def explain_exec_error(
    name: str, err: int, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """(status, words) for a failed exec of ``name``, as a shell says it: ENOENT for a
    file that exists means its #! interpreter is missing (fs/binfmt_script.c opens it),
    which is 126 "bad interpreter", not 127 "command not found"."""
    if err == errno.ENOENT:
        try:
            path = resolve(name, env)
            with open(path, "rb") as f:
                first = f.read(256)  # binfmt_script reads at most BINPRM_BUF_SIZE
        except OSError:
            first = b""
        if first.startswith(b"#!"):
            words = first[2:].split(b"\n")[0].split()
            interpreter = os.fsdecode(words[0]) if words else ""
            return exits.EXIT_NOT_EXECUTABLE, f"bad interpreter {interpreter}: {os.strerror(err)}"
    return exits.for_exec_error(err), exits.describe_exec_error(err)


def resolve(name: str, env: Mapping[str, str] | None = None) -> str:
    """The file ``execvp`` would run for ``name``, searching PATH from ``env`` (as
    subprocess does) or from the environment. Raises FileNotFoundError (nothing found) or
    PermissionError (found, but nothing executable), with ``filename`` set to ``name``."""
    if "/" in name:
        return name
    denied = False
    for directory in os.get_exec_path(env):
        candidate = os.path.join(directory or ".", name)
        try:
            if not os.path.isfile(candidate):
                continue
        except OSError:
            continue
        if os.access(candidate, os.X_OK):
            return candidate
        denied = True
    err = errno.EACCES if denied else errno.ENOENT
    raise OSError(err, describe_exec_error(err), name)


class Inherited:
    """The signal state a command gets, as exec would give it from the caller of pidns
    (fs/exec.c:begin_new_exec -> flush_signal_handlers: handlers reset to SIG_DFL, ignored
    signals stay ignored, the mask is kept), with subprocess's restore_signals rule for
    the two Python itself ignores. Taken before pidns blocks anything, so that the init
    and launcher never depend on it and the command never sees pidns's own changes."""

    __slots__ = ("ignored", "mask")

    def __init__(self, ignored: tuple[int, ...], mask: tuple[int, ...]) -> None:
        self.ignored = ignored
        self.mask = mask

    @classmethod
    def from_caller(cls, mask: Iterable[int] | None = None, restore: bool = True) -> Inherited:
        """The calling thread's ignored signals and ``mask`` (default: its mask now);
        ``restore``: subprocess's restore_signals (SIGPIPE, SIGXFSZ back to default)."""
        ignored = tuple(
            s
            for s in CATCHABLE
            if not (restore and s in RESTORED_SIGNALS) and signal.getsignal(s) == signal.SIG_IGN
        )
        if mask is None:
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
        return cls(ignored, tuple(sorted(int(s) for s in mask)))


NOTHING_INHERITED = Inherited((), ())


def spawn(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdio: Sequence[int] = (-1, -1, -1),
    new_group: bool = True,
    inherited: Inherited = NOTHING_INHERITED,
    new_session: bool = False,
) -> int:
    """posix_spawn ``path``: fds ``stdio`` (-1 = inherit) become 0, 1, 2; with ``new_group``
    the child leads a new process group (setpgid(0, 0)), with ``new_session`` a new
    session (setsid). The child's signal state is
    ``inherited``: every other signal, glibc's internal ones included, gets SIG_DFL, and
    the mask is ``inherited.mask``. Each signal ``inherited`` ignores must be ignored in
    the caller too: posix_spawn can reset a disposition, never set one (``needs_fork``).
    Returns the child's pid."""
    ignored = set(inherited.ignored)
    return syscalls.posix_spawn(
        path,
        argv,
        env.items(),
        dup2=[(fd, target) for target, fd in enumerate(stdio) if fd >= 0],
        pgroup=0 if new_group else None,
        sigdefault=[s for s in _SETTABLE if s not in ignored],
        sigmask=inherited.mask,
        setsid=new_session,
    )


def needs_fork(inherited: Inherited) -> bool:
    """Whether only a forked child can give the command ``inherited`` (an ignored SIGCHLD:
    the init itself must not ignore it, kernel/signal.c:do_notify_parent would reap its
    children for it)."""
    return SIGCHLD in inherited.ignored


def _prepare_child(
    stdio: Sequence[int],
    terminal: int,
    new_group: bool,
    parent_death_signal: int,
    watch_pidfd: int,
    inherited: Inherited,
    ids: tuple[int | None, int | None] = (None, None),
    new_session: bool = False,
) -> None:
    """What a forked child does before exec. Signals are still blocked, SIGTTOU included,
    so tcsetpgrp from a background group is not stopped (drivers/tty/tty_jobctrl.c:
    tty_check_change treats a blocked SIGTTOU as ignored). ``ids``: the (uid, gid) to
    become (unshare's -S, -G: the supplementary groups dropped where setgroups is allowed);
    before the parent-death signal, which a change of credentials clears
    (kernel/cred.c:commit_creds)."""
    if new_session:
        os.setsid()
    elif new_group:
        os.setpgid(0, 0)
    if terminal >= 0:
        os.tcsetpgrp(terminal, os.getpgid(0))
    for target, fd in enumerate(stdio):
        if fd >= 0:
            os.dup2(fd, target)
    uid, gid = ids
    if gid is not None:
        if _setgroups_allowed():
            os.setgroups([])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)
    if parent_death_signal:
        syscalls.set_parent_death_signal(parent_death_signal)
        # The parent may have died before prctl: its pidfd (opened by the parent, so it
        # names the right process) is readable once it has exited (kernel/pid.c:pidfd_poll).
        if watch_pidfd >= 0 and _readable(watch_pidfd):
            os._exit(EXIT_SETUP)
    ignored = set(inherited.ignored)
    for sig in CATCHABLE:  # handlers are reset by exec itself; what is ignored is not
        if sig in ignored:
            signal.signal(sig, signal.SIG_IGN)
        elif signal.getsignal(sig) == signal.SIG_IGN or sig in RESTORED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
    syscalls.reset_internal_signals()
    signal.pthread_sigmask(signal.SIG_SETMASK, inherited.mask)


def _setgroups_allowed() -> bool:
    """Whether this user namespace allows setgroups (/proc/self/setgroups, 3.19+)."""
    try:
        with open("/proc/self/setgroups", "rb") as f:
            return f.read().strip() != b"deny"
    except OSError:
        return True


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def fork_exec(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdio: Sequence[int] = (-1, -1, -1),
    new_group: bool = True,
    terminal: int = -1,
    parent_death_signal: int = 0,
    watch_pidfd: int = -1,
    ready: Callable[[int], None] | None = None,
    inherited: Inherited = NOTHING_INHERITED,
    ids: tuple[int | None, int | None] = (None, None),
    new_session: bool = False,
) -> int:
    """fork, prepare (new group, terminal foreground, stdio, parent-death signal), exec.
    Returns the child's pid once it has exec'd; raises OSError(errno) if exec failed.
    ``ready(pid)`` runs in the parent while the child, prepared, waits to exec."""
    read_end, write_end = os.pipe()  # close-on-exec: EOF means the exec happened
    gate_read, gate_write = os.pipe() if ready is not None else (-1, -1)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            _prepare_child(
                stdio,
                terminal,
                new_group,
                parent_death_signal,
                watch_pidfd,
                inherited,
                ids,
                new_session,
            )
            if gate_read >= 0:
                os.close(gate_write)
                os.read(gate_read, 1)  # EOF: the parent is done with ready()
                os.close(gate_read)
            os.execve(path, list(argv), env)
        except OSError as exc:
            os.write(write_end, str(exc.errno or errno.EIO).encode())
        finally:
            os._exit(EXIT_SETUP)
    os.close(write_end)
    if ready is not None:
        os.close(gate_read)
        try:
            ready(pid)
        finally:
            os.close(gate_write)
    try:
        report = os.read(read_end, 32)
    finally:
        os.close(read_end)
    if report:
        os.waitpid(pid, 0)
        err = int(report)
        raise OSError(err, describe_exec_error(err), argv[0])
    return pid


def exec_command(
    path: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdio: Sequence[int] = (-1, -1, -1),
    new_group: bool = True,
    terminal: int = -1,
    parent_death_signal: int = 0,
    watch_pidfd: int = -1,
    inherited: Inherited = NOTHING_INHERITED,
    ids: tuple[int | None, int | None] = (None, None),
) -> None:
    """Become the command (execve); returns only by raising OSError."""
    _prepare_child(stdio, terminal, new_group, parent_death_signal, watch_pidfd, inherited, ids)
    try:
        os.execve(path, list(argv), env)
    except OSError as exc:
        raise OSError(exc.errno, describe_exec_error(exc.errno or errno.EIO), argv[0]) from None
