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
import gc
import marshal
import os
import resource
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pidns.core import exits
from pidns.core import flags as cf
from pidns.linux import launcher, server, spawn, status_channel, syscalls, userns
from pidns.linux.launcher import SetupError

SOCKET_KIND = socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
MAX_PASS_FDS = 253 - 6  # SCM_MAX_FD less the fixed fds of a request (server.FIXED_FDS)
SIGKILL = 9
SIGKILL_STATUS = SIGKILL  # the wait status of a process killed by SIGKILL
DONTWAIT = int(socket.MSG_DONTWAIT)  # an int: or-ing socket's enum flags costs microseconds
RLIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))


def _rlimits() -> list[tuple[int, int]]:
    return [resource.getrlimit(kind) for kind in RLIMITS]


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
        self.rlimits = _rlimits()  # the server's, and so every init's unless a request says
        self.spares: dict[bytes, Spare] = {}  # announced by the server, by shape
        mine, theirs = socket.socketpair(socket.AF_UNIX, SOCKET_KIND)
        self.control = mine.detach()  # a plain fd: left open at exit without a warning
        pidfd = os.pidfd_open(os.getpid())  # opened before the server exists: no race
        main_thread = threading.current_thread() is threading.main_thread()
        try:
            self.pid, self.forked = _spawn_server(theirs.fileno(), pidfd, main_thread)
        finally:
            theirs.close()
            os.close(pidfd)

    def changed_rlimits(self) -> list[tuple[int, tuple[int, int]]]:
        """The caller's rlimits that differ from its server's (setrlimit since its start)."""
        now = _rlimits()
        return [(kind, now[i]) for i, kind in enumerate(RLIMITS) if now[i] != self.rlimits[i]]

    def send(self, fds: Sequence[int], shape: bytes) -> None:
        """One request: ``N``, the shape a spare must have to serve it, and its fds."""
        carrier = socket.socket(fileno=self.control)
        try:
            socket.send_fds(carrier, [b"N" + shape], list(fds))
        finally:
            carrier.detach()

    def take_spare(self, shape: bytes) -> Spare | None:
        """The spare the server announced for ``shape``, if any and still usable (call
        with ``_lock`` held)."""
        carrier = socket.socket(fileno=self.control)
        try:
            while True:
                try:
                    data, fds = server.recv_fds(carrier, 4096, DONTWAIT)
                except OSError:  # nothing waiting (or the server is gone: sending says)
                    break
                if data[:1] != b"S" or len(fds) < 2:
                    for fd in fds:
                        os.close(fd)
                    break
                pid, _, announced = data[1:].partition(b" ")
                old = self.spares.pop(announced, None)
                if old is not None:
                    old.close()
                self.spares[announced] = Spare(int(pid), *fds)
        finally:
            carrier.detach()
        spare = self.spares.pop(shape, None)
        if spare is not None and spare.stale():
            spare.close()
            return None
        return spare

    def close(self) -> None:
        self.close_spares()
        os.close(self.control)
        _reap(self.pid)

    def close_spares(self) -> None:
        for spare in self.spares.values():
            spare.close()
        self.spares.clear()


class Spare:
    """A spare init the server announced (``spare``): its pid, its pidfd, its request
    channel, and a mountinfo fd of the caller's mount namespace opened before the spare
    copied it (-1 without a mount namespace)."""

    __slots__ = ("channel", "mountinfo", "pid", "pidfd")

    def __init__(self, pid: int, channel: int, pidfd: int, mountinfo: int = -1) -> None:
        self.pid = pid
        self.channel = channel
        self.pidfd = pidfd
        self.mountinfo = mountinfo

    def stale(self) -> bool:
        """Whether anything has been mounted or unmounted here since the spare copied the
        mount table: a mountinfo fd polls POLLPRI then (fs/proc_namespace.c:mounts_poll
        compares the namespace's event count with the one its open saw)."""
        if self.mountinfo < 0:
            return False
        poller = select.poll()
        poller.register(self.mountinfo, select.POLLPRI)
        return bool(poller.poll(0))

    def close(self) -> None:
        """Let it go (it exits once its channel is closed)."""
        for fd in (self.channel, self.pidfd, self.mountinfo):
            if fd >= 0:
                os.close(fd)


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
    """The server as a fork of the caller, for when the interpreter cannot be executed.

    Whatever keeps the interpreter from being executed (a mount over the directory it
    lies in, a uid that cannot search it) may keep the package from being read too: the
    modules the server imports only when it needs them are imported here, before the
    fork, where they still can be (else the server makes no spares: ``_make_spare``).
    In the child, the caller's heap is frozen out of the garbage collector: a cycle of
    the caller's holding a socket or a file would otherwise be finalized there and close
    an fd number the server has reused by then (the fork closed the fds, not the objects
    that name them)."""
    with contextlib.suppress(ImportError):
        from pidns.linux import spare, subreaper  # noqa: PLC0415, F401 (the fallback only)

    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        gc.freeze()
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
            conn.close_spares()
            os.close(conn.control)
    _connection = None
    _retired.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _server() -> Connection:
    global _connection
    with _lock:
        if _connection is not None and _connection.context != _context():
            if _connection.context[0] == os.getpid():
                _connection.close_spares()  # made with the old credentials or namespaces
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


def _cwd_path(cwd: str | None) -> str | None:
    """The command's working directory as a path from the root, for a spare to look up in
    its own mount namespace (``spare._enter_cwd``); None if there is none (deleted)."""
    try:
        here = os.getcwd()
    except OSError:
        return None
    return here if cwd is None else os.path.join(here, os.fsdecode(cwd))


def _umask() -> int:
    """The caller's umask, without changing it (umask(2) can only set it, and setting it
    back would race with other threads)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Umask:"):
                return int(line.split()[1], 8)
    return -1


def _privileged() -> bool:
    """Whether the caller holds CAP_SYS_ADMIN (capget(2): no /proc read)."""
    return bool(syscalls.effective_capabilities() >> userns.CAP_SYS_ADMIN & 1)


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
    environment: Mapping[str, str] | Mapping[bytes, bytes]
    if env is None:
        # the caller's own, as bytes (what execve takes: decoding each variable here and
        # encoding it again in the init costs more than the rest of a request); it needs
        # no checks: putenv refuses NUL bytes, "=" in names and empty names
        environment = dict(os.environb)
    else:
        environment = dict(env)
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
        "cwd_path": _cwd_path(cwd),
    }
    cwd_fd = os.open("." if cwd is None else cwd, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # with a "/", relative to the new working directory, as exec finds it
        request["path"] = spawn.resolve(program, env) if "/" not in program else program
        for fd in passed:
            os.fstat(fd)  # EBADF now, not in the server
        fds = [cwd_fd, *(fd if fd >= 0 else _own(i) for i, fd in enumerate(stdio)), *passed]

        def attempt(chosen: launcher.Options, subreaper: bool) -> Served:
            mount_ns = chosen.mount_ns and not subreaper
            return _start(argv, request, chosen, mount_ns, subreaper, fds)

        return launcher.with_fallback(argv[0], options, attempt, notice)
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
    privileged = _privileged()
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
    shape = _shape(request)
    ns = None if not shape else _to_spare(argv, request, fds, shape)
    if ns is None:
        ns = _send(argv, request, fds, shape)
    ns.remap_exit = options.remap_exit
    ns.subreaper = subreaper
    try:
        ns.await_ready()
    except _Declined:
        ns.close()  # it did nothing: the server makes this one
        ns = _send(argv, request, fds, shape)
        ns.remap_exit = options.remap_exit
        ns.await_ready()
    except BaseException:
        ns.kill()
        ns.wait()
        ns.close()
        raise
    return ns


class _Declined(Exception):
    """A spare declined a request before doing anything (``spare``)."""


def _to_spare(
    argv: list[str], request: dict[str, Any], fds: list[int], shape: bytes
) -> Served | None:
    """Send the request to the spare announced for its shape; None if there is none (or
    it is gone)."""
    with _lock:
        conn = _connection
        if conn is None or conn.context != _context():
            return None
        spare = conn.take_spare(shape)
        request["rlimits"] = conn.changed_rlimits()
    if spare is None:
        return None
    memfd = os.memfd_create("pidns-request", os.MFD_CLOEXEC)
    try:
        view = memoryview(marshal.dumps(request))
        while view:
            view = view[os.write(memfd, view) :]
        channel = socket.socket(fileno=spare.channel)
        try:
            socket.send_fds(channel, [b"N"], [memfd, *fds])
        except OSError:  # it is gone (killed while waiting): the server makes this one
            channel.close()
            spare.channel = -1
            spare.close()
            return None
    finally:
        os.close(memfd)
    if spare.mountinfo >= 0:
        os.close(spare.mountinfo)
    ns = Served(argv, channel, request["flags"], direct=False)
    ns.init_pid = ns.pid = spare.pid
    ns.pidfd = spare.pidfd
    ns.spare = True
    return ns


def _shape(request: dict[str, Any]) -> bytes:
    """What a spare init must have made before the request to serve it (``spare``), or
    b"" if none can: one without a pid namespace or an init (the subreaper fallback,
    as_pid_1), one whose mounts would not be private (a copy made before the request
    would then differ from one made at it in more than the mount table the server
    watches), a relative /proc (the init's cwd names it), or a cwd with no path."""
    mount_ns = request["mount_ns"]
    proc_dir = request["proc_dir"]
    if (
        request["as_pid_1"]
        or request["subreaper"]
        or (mount_ns and (request["propagation"] != "private" or request["cwd_path"] is None))
        or (proc_dir is not None and not proc_dir.startswith("/"))
    ):
        return b""
    id_map = request["id_map"]
    shape = (
        request["flags"],
        id_map,
        mount_ns,
        proc_dir,
        request["propagation"] if mount_ns else None,
        request["launcher_death_signal"],
        None if id_map is None else request["caller_ids"],
    )
    return repr(shape).encode()


def _send(argv: list[str], request: dict[str, Any], fds: list[int], shape: bytes) -> Served:
    for attempt in (1, 2):
        conn = _server()
        request["rlimits"] = conn.changed_rlimits()
        memfd = os.memfd_create("pidns-request", os.MFD_CLOEXEC)
        try:
            view = memoryview(marshal.dumps(request))
            while view:
                view = view[os.write(memfd, view) :]
            mine, theirs = socket.socketpair(socket.AF_UNIX, SOCKET_KIND)
            try:
                conn.send([memfd, theirs.fileno(), *fds], shape)
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
        finally:
            os.close(memfd)
    raise AssertionError("unreachable")


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
        self.spare = False  # made ahead by the server: says t (taken) or d (declined) first
        self.taken = False
        self.declined = False
        self.wait_lock = threading.RLock()
        self.fd_lock = threading.Lock()

    @property
    def channel(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()

    # -- the status channel ------------------------------------------------------------

    def _records(self) -> None:
        """Take every message waiting on the channel (never blocks)."""
        self._take_all()
        if self._reported() and select.select([self.pidfd], [], [], 0)[0]:
            self._ended(exits.from_wait_status(self.command_status or 0) << 8)

    def _reported(self) -> bool:
        """Whether the init has sent its report and only its exit remains: its pidfd
        then says when the namespace is empty (pid 1 exits after its last process,
        kernel/pid_namespace.c:zap_pid_ns_processes), with no wait for the server's
        ``W``. (Not for the subreaper fallback: its exit does not end the tree.)"""
        return (
            self.command_status is not None
            and self.wait_status is None
            and not self.subreaper
            and self.pidfd >= 0
        )

    def _take_all(self) -> None:
        while self.sock is not None and not self.eof:
            try:
                data, fds = server.recv_fds(self.sock, 65536, DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data:
                self.eof = True
                self._ended(None)
                return
            if data in (b"t", b"d") and self.spare:
                self.taken, self.declined = data == b"t", data == b"d"
                continue
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
                self.wait_status = SIGKILL_STATUS if self.ready else exits.LOST_WAIT_STATUS
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
        if self.subreaper:  # an init killed before it could empty its cgroup
            from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

            subreaper.clean_up_after(self.init_pid)

    def _close_channel(self) -> None:
        self.eof = True
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _wait_readable(self, timeout: float | None) -> bool:
        if self.sock is None:
            return True
        watched = [self.sock.fileno(), self.pidfd] if self._reported() else [self.sock]
        return bool(select.select(watched, [], [], timeout)[0])

    def step(self) -> bool:
        """Take what has arrived; whether ``await_ready`` is done (raises its errors)."""
        with self.wait_lock:
            self._records()
            return self._settled()

    def _settled(self) -> bool:
        if self.spare and not self.taken and (self.declined or self.eof):
            raise _Declined  # (an EOF before t: it went before it could do anything)
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
