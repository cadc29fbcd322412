"""The caller's side of the namespace server (``server``): start it, send requests, follow
each namespace on its status channel.

One server per process, started on first use with ``posix_spawn`` (a vfork: nothing of
the caller is copied, whatever it holds, and no fork of a threaded program) of
``python -I -S -c`` importing only ``pidns.linux.server``. Where the interpreter cannot be
executed (a process that changed uid without exec, whose interpreter lies in a directory
the new uid cannot search), the server is a fork of the caller instead: it works the
same, but each namespace then costs what forking the caller costs.

A fork of the caller (``os.fork``, multiprocessing) forgets its parent's server
(``os.register_at_fork``) and starts its own on first use; so does a caller whose
credentials or namespaces changed since its server started (a daemon that dropped
root), since the server makes namespaces with its own.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pidns.core import flags as cf
from pidns.linux import launcher, server, spawn, status_channel, userns
from pidns.linux.launcher import SetupError

SOCKET_KIND = socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
MAX_PASS_FDS = 253 - 6  # SCM_MAX_FD less the fixed fds of a request (server.FIXED_FDS)
SIGKILL = 9
SIGKILL_STATUS = SIGKILL  # the wait status of a process killed by SIGKILL


def _context() -> tuple[object, ...]:
    """What the server must share with its caller: pid, credentials, namespaces."""
    ids: list[object] = [os.getpid(), os.getresuid(), os.getresgid(), tuple(os.getgroups())]
    for kind in ("user", "mnt", "pid_for_children", "cgroup"):
        try:
            ids.append(os.stat(f"/proc/self/ns/{kind}").st_ino)
        except OSError:
            ids.append(None)
    return tuple(ids)


class Connection:
    """This process's server: its control socket and pid."""

    def __init__(self) -> None:
        self.context = _context()
        mine, theirs = socket.socketpair(socket.AF_UNIX, SOCKET_KIND)
        self.control = mine.detach()  # a plain fd: left open at exit without a warning
        pidfd = os.pidfd_open(os.getpid())  # opened before the server exists: no race
        main_thread = threading.current_thread() is threading.main_thread()
        try:
            self.pid, self.forked = _spawn_server(theirs.fileno(), pidfd, main_thread)
        finally:
            theirs.close()
            os.close(pidfd)

    def send(self, fds: Sequence[int]) -> None:
        carrier = socket.socket(fileno=self.control)
        try:
            socket.send_fds(carrier, [b"N"], list(fds))
        finally:
            carrier.detach()

    def close(self) -> None:
        os.close(self.control)
        _reap(self.pid)


def _spawn_server(control: int, pidfd: int, main_thread: bool) -> tuple[int, bool]:
    """Start the server (pid, whether it is the fork fallback)."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # the fds keep their numbers in the server; dup2 onto itself clears FD_CLOEXEC in
    # glibc's posix_spawn (POSIX.1-2017 posix_spawn_file_actions_adddup2)
    code = (
        f"import sys; sys.path.insert(0, {package_root!r}); "
        f"from pidns.linux.server import main; main({control}, {pidfd}, {main_thread})"
    )
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, null, fd) for fd in (0, 1, 2)]
        actions += [(os.POSIX_SPAWN_DUP2, control, control), (os.POSIX_SPAWN_DUP2, pidfd, pidfd)]
        try:
            pid = os.posix_spawn(
                sys.executable,
                [sys.executable, "-I", "-S", "-c", code],
                {"PATH": os.defpath},
                file_actions=actions,
                setsigmask=(),
            )
        except OSError:
            return _fork_server(control, pidfd, main_thread, null), True
        return pid, False
    finally:
        os.close(null)


def _fork_server(control: int, pidfd: int, main_thread: bool, null: int) -> int:
    """The server as a fork of the caller, for when the interpreter cannot be executed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            keep = sorted((control, pidfd))
            os.closerange(3, keep[0])
            os.closerange(keep[0] + 1, keep[1])
            os.closerange(keep[1] + 1, 2**31 - 1)
            server.main(control, pidfd, main_thread)
        finally:
            os._exit(0)
    return pid


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):  # an application's SIGCHLD handler was first
        os.waitpid(pid, os.WNOHANG)


_lock = threading.Lock()
_connection: Connection | None = None
_retired: list[Connection] = []  # servers of an earlier context, kept for their namespaces


def _forget_after_fork() -> None:
    """In the child of a fork: the parent's server is not ours (its fds are closed, it
    is never signalled or reaped from here)."""
    global _connection, _lock
    _lock = threading.Lock()
    for conn in [_connection, *_retired]:
        if conn is not None:
            os.close(conn.control)
    _connection = None
    _retired.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _server() -> Connection:
    global _connection
    with _lock:
        if _connection is not None and _connection.context != _context():
            if _connection.context[0] == os.getpid():
                _retired.append(_connection)  # its namespaces still run: keep its socket
            _connection = None
        if _connection is None:
            _connection = Connection()
        return _connection


def _restart(dead: Connection) -> None:
    global _connection
    with _lock:
        if _connection is dead:
            dead.close()
            _connection = None


# -- a request ----------------------------------------------------------------------------


def _checked(value: str, what: str) -> bytes:
    data = os.fsencode(value)
    if b"\0" in data:
        raise ValueError(f"embedded null byte in {what}")
    return data


def _umask() -> int:
    """The caller's umask, without changing it (umask(2) can only set it)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return -1


def start(
    argv: list[str],
    options: launcher.Options,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    executable: str | None = None,
    stdio: tuple[int, int, int] = (-1, -1, -1),
    pass_fds: Sequence[int] = (),
    new_group: bool = False,
    new_session: bool = False,
    restore_signals: bool = True,
    umask: int = -1,
    notice: Callable[[str], None] | None = None,
) -> Served:
    """Have the server start ``argv``; returns once the command runs.

    Raises, before anything is forked: ValueError for NUL bytes and bad names,
    FileNotFoundError/NotADirectoryError/PermissionError for ``cwd`` and for the
    command, as subprocess does. Then OSError with the exec errno, or SetupError. With
    ``options.fallback`` "subreaper", the same retries as ``launcher.start``: without a
    fresh /proc, then without a pid namespace (``notice`` gets the line that says so)."""
    if not argv:
        raise ValueError("no command given")
    for arg in argv:
        _checked(arg, "an argument")
    environment = dict(os.environ) if env is None else dict(env)
    for key, value in environment.items():
        if "=" in key or not key:
            raise ValueError(f"illegal environment variable name {key!r}")
        _checked(key, "an environment variable name")
        _checked(value, f"the environment variable {key}")
    program = argv[0] if executable is None else executable
    _checked(program, "the executable")
    passed = sorted({int(fd) for fd in pass_fds if int(fd) > 2})
    if len(passed) > MAX_PASS_FDS:
        raise ValueError(f"at most {MAX_PASS_FDS} pass_fds")
    inherited = spawn.Inherited.from_caller(restore=restore_signals)
    request = {
        "argv": argv,
        "env": environment,
        "as_pid_1": options.as_pid_1,
        "wait_all": options.wait_all,
        "grace": options.grace,
        "forward_to_group": options.forward_to_group,
        "kill_signal": options.kill_signal,
        "launcher_death_signal": options.launcher_death_signal,
        "timeout": options.timeout,
        "rewrite": options.rewrite,
        "new_group": new_group,
        "new_session": new_session,
        "inherited": (inherited.ignored, inherited.mask),
        "umask": _umask() if umask < 0 else umask,
        "caller_ids": (os.getuid(), os.getgid()),
        "pass_fds": passed,
    }
    cwd_fd = os.open("." if cwd is None else cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # with a "/", relative to the new working directory, as exec finds it
        request["path"] = spawn.resolve(program, environment) if "/" not in program else program
        for fd in passed:
            os.fstat(fd)  # EBADF now, not in the server
        fds = [cwd_fd, *(fd if fd >= 0 else _own(i) for i, fd in enumerate(stdio)), *passed]
        try:
            return _start(argv, request, options, options.mount_ns, False, fds)
        except SetupError as exc:
            if options.fallback != launcher.FALLBACK_SUBREAPER:
                raise
            failure = exc
        if failure.stage == "proc":  # a pid namespace, only not a fresh /proc in it
            try:
                ns = _start(argv, request, options, False, False, fds)
            except SetupError as exc:
                failure = exc
            else:
                if notice is not None:
                    notice(launcher.without_proc_notice(argv[0], failure))
                ns.fallback_reason = str(failure)
                return ns
        if failure.stage not in launcher.NO_PID_NAMESPACE:
            raise failure
        if notice is not None:
            notice(launcher.subreaper_notice(argv[0], failure))
        ns = _start(argv, request, options, False, True, fds)
        ns.fallback_reason = str(failure)
        return ns
    finally:
        os.close(cwd_fd)


def _start(
    argv: list[str],
    request: dict[str, Any],
    options: launcher.Options,
    mount_ns: bool,
    subreaper: bool,
    fds: list[int],
) -> Served:
    """One request to the server, and its answer."""
    privileged, _threads = userns.self_status()
    id_map = options.id_map
    if id_map is None and (options.map_user is not None or not privileged):
        id_map = userns.IdMap.of(options.map_user or userns.MAP_ROOT, os.getuid(), os.getgid())
    if id_map is not None and id_map.needs_helpers:
        raise ValueError("subordinate id ranges need newuidmap: use pidns run for them")
    flags = cf.NEWPID
    if mount_ns:
        flags |= cf.NEWNS
    if id_map is not None:
        flags |= cf.NEWUSER
    if subreaper:  # no namespace at all: a plain fork that becomes a child subreaper
        flags, id_map = 0, None
    proc_dir = options.mount_proc if isinstance(options.mount_proc, str) else "/proc"
    request.update(
        flags=flags,
        id_map=None if id_map is None else (id_map.user, id_map.group, id_map.setgroups),
        mount_ns=mount_ns,
        proc_dir=proc_dir if options.mount_proc and mount_ns else None,
        propagation=options.propagation,
        ids=options.ids,
        subreaper=subreaper,
    )
    ns = _send(argv, request, fds)
    ns.remap_exit = options.remap_exit
    ns.subreaper = subreaper
    try:
        ns.await_ready()
    except BaseException:
        ns.kill()
        ns.wait()
        ns.close()
        raise
    return ns


def _send(argv: list[str], request: dict[str, Any], fds: list[int]) -> Served:
    memfd = os.memfd_create("pidns-request", os.MFD_CLOEXEC)
    try:
        payload = marshal.dumps(request)
        view = memoryview(payload)
        while view:
            view = view[os.write(memfd, view) :]
        for attempt in (1, 2):
            mine, theirs = socket.socketpair(socket.AF_UNIX, SOCKET_KIND)
            conn = _server()
            try:
                conn.send([memfd, theirs.fileno(), *fds])
            except OSError as exc:
                mine.close()
                if attempt == 2 or exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise SetupError(
                        exc.errno or errno.EIO, f"cannot reach the namespace server: {exc}"
                    ) from None
                _restart(conn)  # it died: start another, once
                continue
            finally:
                theirs.close()
            return Served(argv, mine, request["flags"], direct=request["as_pid_1"])
        raise AssertionError("unreachable")
    finally:
        os.close(memfd)


def _own(fd: int) -> int:
    """The caller's own fd 0, 1 or 2 for the command (subprocess's None), or -1 if closed:
    the server sends /dev/null then."""
    try:
        os.fstat(fd)
    except OSError:
        return -1
    return fd


# -- a namespace, as the caller follows it -------------------------------------------------


class Served(launcher.RunningNamespace):
    """A namespace made by the server: the init is the server's child, so the caller has
    its pidfd (for signals) and learns its end from the status channel (``W``: reaped, the
    namespace is empty). Safe to use from several threads: reading the channel holds
    ``wait_lock``; the pidfd is used and closed under ``fd_lock``."""

    def __init__(self, argv: list[str], sock: socket.socket, flags: int, direct: bool) -> None:
        super().__init__(argv, 0, -1, -1, direct)
        self.sock: socket.socket | None = sock
        self.flags = flags
        self.ready = False
        self.failure: status_channel.Failed | None = None
        self.clone_error: int | None = None
        self.eof = False
        self.kill_requested = False  # kill() before the pidfd came: kill on its arrival
        self.wait_lock = threading.RLock()
        self.fd_lock = threading.Lock()

    @property
    def channel(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()

    # -- the status channel ------------------------------------------------------------

    def _records(self) -> None:
        """Take every message waiting on the channel (never blocks)."""
        while self.sock is not None and not self.eof:
            try:
                data, fds = server.recv_fds(self.sock, 65536, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self.eof = True
                self._ended(None)
                return
            for line in data.decode().splitlines():
                self._record(status_channel.decode(line), fds)
                fds = []
            for fd in fds:
                os.close(fd)

    def _record(self, message: status_channel.Message, fds: list[int]) -> None:
        if isinstance(message, status_channel.HelperSpawned) and fds:
            with self.fd_lock:
                self.init_pid = message.init_pid
                if self.direct or self.pid == 0:
                    self.pid = self.init_pid
                self.pidfd = fds.pop()
                if self.kill_requested:
                    launcher.RunningNamespace.send_signal(self, SIGKILL)
        elif isinstance(message, status_channel.Ready):
            self.pid_in_namespace = message.pid_in_ns
            self.pid = message.host_pid or self.pid
            self.times["ready"] = message.t_spawned
            self.ready = True
        elif isinstance(message, status_channel.Failed):
            self.failure = message
        elif isinstance(message, status_channel.CloneFailed):
            self.clone_error = message.errno
        elif isinstance(message, status_channel.Reaped):
            self._ended(message.wait_status)
        else:
            self._take(message)

    def _ended(self, status: int | None) -> None:
        """The init has been reaped (``status``), or the server is gone (None)."""
        if self.wait_status is not None:
            return
        if status is None:
            if self.pidfd < 0:  # no init was made (clone failed), or we cannot tell
                self.wait_status = SIGKILL_STATUS if self.ready else launcher.EXIT_LOST
                self._close_channel()
                return
            select.select([self.pidfd], [], [])  # the init dies with its server
            status = SIGKILL_STATUS  # its status went with the server
        self.wait_status = status
        self.times["end"] = time.monotonic_ns()
        self._close_channel()
        with self.fd_lock:
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1
        if self.subreaper:  # an init killed before it could remove its cgroup
            from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

            left = subreaper.cgroup_for(self.init_pid)
            if left is not None:
                subreaper.remove_cgroup(left)

    def _close_channel(self) -> None:
        self.eof = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _wait_readable(self, timeout: float | None) -> bool:
        if self.sock is None:
            return True
        return bool(select.select([self.sock], [], [], timeout)[0])

    def step(self) -> bool:
        """Take what has arrived; whether ``await_ready`` is done (raises its errors)."""
        with self.wait_lock:
            self._records()
            return self._settled()

    def _settled(self) -> bool:
        if self.clone_error is not None:
            raise launcher.clone_failure(self.clone_error, self.flags)
        if self.failure is not None:
            if self.wait_status is None and not self.eof:
                return False  # raise once the init is gone, as launcher does
            raise launcher.setup_failure(self.failure, self.argv, self.flags)
        if self.ready and self.pidfd >= 0:
            return True
        if self.ready and self.wait_status is not None:
            return True  # a quick command: over before the messages were read
        if self.eof or self.wait_status is not None:
            raise SetupError(errno.ECHILD, "the namespace server went away during setup")
        return False

    def await_ready(self, flags: int = 0) -> None:
        """Block until the command runs; raise what went wrong if it could not."""
        while not self.step():
            self._wait_readable(None)

    # -- waiting -----------------------------------------------------------------------

    def poll(self) -> int | None:
        if self.wait_status is None and self.wait_lock.acquire(blocking=False):
            try:
                self._records()
            finally:
                self.wait_lock.release()
        return self.returncode if self.wait_status is not None else None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the namespace to end (its init reaped); None if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.wait_lock.acquire(timeout=-1 if timeout is None else timeout):
            return None
        try:
            while self.wait_status is None:
                self._records()
                if self.wait_status is not None:
                    break
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self._wait_readable(left) and left is not None:
                    self._records()
                    if self.wait_status is None:
                        return None
        finally:
            self.wait_lock.release()
        return self.returncode

    # -- signals -----------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        with self.fd_lock:
            if self.wait_status is None and self.pidfd >= 0:
                super().send_signal(sig)

    def kill(self) -> None:
        """SIGKILL pid 1 (as soon as its pidfd is known): the namespace dies with it."""
        if self.subreaper and self.wait_status is None and self.init_pid > 0:
            from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

            subreaper.kill_tree(self.init_pid, subreaper.cgroup_for(self.init_pid))
        with self.fd_lock:
            self.kill_requested = True
        self.send_signal(SIGKILL)

    def close(self) -> None:
        with self.wait_lock:
            self._close_channel()
        with self.fd_lock:
            if self.pidfd >= 0:
                os.close(self.pidfd)
                self.pidfd = -1


def server_pid() -> int | None:
    """The pid of this process's namespace server, if it has started one."""
    conn = _connection
    return None if conn is None or conn.context[0] != os.getpid() else conn.pid


def server_is_forked() -> bool:
    """Whether this process's server is the fork fallback (the interpreter could not be
    executed) rather than a fresh interpreter."""
    conn = _connection
    return conn is not None and conn.forked
