"""The namespace server: a small single-threaded process that makes namespaces for the API.

``pidns.run`` and ``pidns.Popen`` do not fork their caller: a fork costs in proportion to
the caller's memory (its page tables are copied, kernel/fork.c:dup_mm), and forking a
multi-threaded program is unsafe. On first use the caller starts this server instead, a
fresh interpreter that imports only this module and what the init needs (the caller's
side is ``pidns.linux.served``). For each request the server calls clone3 with the
namespace flags, as ``pidns run`` does (``launcher.start``): the child is pid 1 of the
new namespace and runs the same init (``init.become_init``), which starts the command
with posix_spawn. Only the server's few megabytes are copied, whatever the caller holds.

Protocol. The control socket (SOCK_SEQPACKET, the caller's end and the server's) carries
one message per request: the byte ``N``, with the fds

    memfd, status, cwd, stdin, stdout, stderr, pass_fds...

``memfd`` holds the request, a ``marshal``-ed dict (keys in ``_plan``); ``status`` is
the server's end of a fresh SOCK_SEQPACKET pair, the request's status channel; ``cwd``
an O_PATH fd of the command's working directory (-1: a slot left empty is sent as
/dev/null, for stdio). On the status channel, one record per message:

- from the server: ``P <pid>`` with the init's pidfd (SCM_RIGHTS) right after clone3;
  ``C <errno>`` if clone3 or the preparation failed; ``W <wait status>`` once the init
  has been reaped, the last record (the namespace is empty then:
  kernel/pid_namespace.c:zap_pid_ns_processes). With ``as_pid_1`` (no init), also
  ``R 1 <pid> <t>`` once the command has been exec'd (its exec closed a pipe).
- from the init: ``R``, ``F``, ``X`` as in ``init`` (they can come before ``P``).

The server watches the caller through a pidfd the caller opened on itself before the
server existed, plus the parent-death signal when the caller's main thread started it
(the signal fires when the *thread* that forked exits: kernel/exit.c:
forget_original_parent). It exits when the caller does, when the control socket closes,
or when its caller's pidfd polls readable (kernel/pid.c:pidfd_poll). Every init gets the
same pidfd of the caller, and a parent-death signal for the server's death.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import marshal
import os
import resource
import select
import time
from _socket import CMSG_SPACE, MSG_CMSG_CLOEXEC, SCM_RIGHTS, SOL_SOCKET

from pidns.core import exits
from pidns.linux import fastsignal as signal
from pidns.linux import features, spawn, status_channel, syscalls, userns
from pidns.linux.init import CATCHABLE, Plan, become_init

TYPE_CHECKING = False  # typing costs the server's start-up: annotations only
if TYPE_CHECKING:
    from typing import Any, NoReturn

SIGCHLD = int(signal.SIGCHLD)
SIGKILL = int(signal.SIGKILL)
REQUEST = b"N"
_SEQPACKET = _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
MAX_FDS = 253  # SCM_MAX_FD (include/net/scm.h): fds in one message
FIXED_FDS = 6  # memfd, status, cwd, stdin, stdout, stderr
SPARE_DELAY = 0.01  # seconds after a spare took a request before the next is made anyway


def recv_fds(sock: _socket.socket, size: int = 16, flags: int = 0) -> tuple[bytes, list[int]]:
    """One message and the fds it carries, close-on-exec (socket.recv_fds of 3.11 drops
    its ``flags`` and cannot do that)."""
    data, ancillary, _flags, _addr = sock.recvmsg(
        size, CMSG_SPACE(MAX_FDS * 4), flags | MSG_CMSG_CLOEXEC
    )
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == SOL_SOCKET and kind == SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            for i in range(0, usable, 4):
                fds.append(int.from_bytes(payload[i : i + 4], "little", signed=True))
    return data, fds


def send_with_fd(sock: int, message: status_channel.Message, fd: int) -> None:
    """One message on a status channel, with ``fd`` attached (SCM_RIGHTS)."""
    carrier = _socket.socket(fileno=os.dup(sock))
    try:
        data = (status_channel.encode(message) + "\n").encode()
        carrier.sendmsg([data], [(SOL_SOCKET, SCM_RIGHTS, fd.to_bytes(4, "little"))])
    finally:
        carrier.close()


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


class Server:
    """The loop: requests on the control socket, SIGCHLD on a signalfd, the caller's pidfd."""

    def __init__(self, control: int, caller_pidfd: int) -> None:
        self.control = _socket.socket(fileno=control)
        self.caller_pidfd = caller_pidfd
        # an ignored SIGCHLD (inherited through exec) would have the inits reaped unseen
        signal.signal(SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)  # the inits inherit the mask
        self.sfd = syscalls.signalfd([SIGCHLD])
        try:  # for NS_GET_PID_IN_PIDNS; without /proc the caller finds the pid itself
            self.host_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self.host_pidns = -1
        for name in ("ns_get_pid", "close_range"):
            features.has(name)  # probed once here, not in every init
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self.root = os.open("/", os.O_PATH | os.O_CLOEXEC)
        os.fchdir(self.root)  # hold no directory busy
        self.channels: dict[int, int] = {}  # init pid -> its status channel
        self.pidfds: dict[int, int] = {}  # init pid -> its pidfd
        self.use_waitid = False
        self.cannot_wait = _wait_refused()  # an init could never reap: refuse requests
        self.sentinels: dict[int, tuple[int, int, bytes]] = {}  # exec pipe -> (pid, channel, F)
        self.wanted: tuple[bytes, dict[str, Any]] | None = None  # the shape spares are made of
        self.refused: set[bytes] = set()  # shapes whose spare could not be made
        self.spare: Spare | None = None  # the one announced to the caller, until it takes one
        self.serving: set[int] = set()  # pids of spares that took a request, until reaped
        self.taken_at = 0.0  # when the last one took its request (monotonic)

    def serve(self) -> None:
        self.poller = poller = select.poll()
        for fd in (self.control.fileno(), self.caller_pidfd, self.sfd):
            poller.register(fd, select.POLLIN)
        while True:
            ready = dict(poller.poll(self._spare_due()))
            if self.caller_pidfd in ready:
                return
            for fd in [fd for fd in ready if fd in self.sentinels]:
                self._exec_report(fd)
                poller.unregister(fd)
            if self.spare is not None and self.spare.sock.fileno() in ready:
                self._spare_said(self.spare)
            if self.sfd in ready:
                syscalls.read_signals(self.sfd)
                self._reap()
            if self.control.fileno() in ready:
                try:
                    data, fds = recv_fds(self.control, 512)
                except OSError:
                    return
                if not data:
                    return  # the caller closed its end
                self._request(data, fds)
            if self.spare is None and self.wanted is not None and self._spare_due() == 0:
                self._make_spare(*self.wanted)

    def _spare_due(self) -> int | None:
        """Milliseconds until the next spare should be made (None: not now). Once the last
        one's namespace has ended, or SPARE_DELAY after it took its request: not at once,
        so that making it does not compete with the command it serves for the CPU."""
        if self.spare is not None or self.wanted is None:
            return None
        if not self.serving:
            return 0
        return max(0, int((self.taken_at + SPARE_DELAY - time.monotonic()) * 1000))

    def _watch(self, sentinel: int) -> None:
        if sentinel >= 0:
            self.poller.register(sentinel, select.POLLIN)

    def _reap(self) -> None:
        """Reap every init that has exited and tell its caller (``W``)."""
        while True:
            try:
                pid, status = self._wait_any()
            except ChildProcessError:
                return
            except OSError:  # wait4 and waitid refused (a seccomp filter): the pidfds
                for pid, pidfd in list(self.pidfds.items()):  # say who exited; the
                    if select.select([pidfd], [], [], 0)[0]:  # statuses are lost, and
                        self._reaped(pid, exits.LOST_WAIT_STATUS)  # the init's X report has its own
                return
            if pid == 0:
                return
            self._reaped(pid, status)

    def _wait_any(self) -> tuple[int, int]:
        """waitpid(-1, WNOHANG); waitid where wait4 is refused (kernel/exit.c: two entry
        points to do_wait)."""
        if not self.use_waitid:
            try:
                return os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                raise
            except OSError:
                self.use_waitid = True
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG)
        if info is None:
            return 0, 0
        if info.si_code == os.CLD_EXITED:
            return info.si_pid, info.si_status << 8
        return info.si_pid, info.si_status | (0x80 if info.si_code == os.CLD_DUMPED else 0)

    def _reaped(self, pid: int, status: int) -> None:
        spare = self.spare
        if spare is not None and spare.pid == pid:
            while self._spare_said(spare):  # what it wrote before it died comes first
                pass
            if self.spare is spare:  # its EOF not read yet
                self._drop(spare)
        self.serving.discard(pid)
        if pid in self.pidfds and pid not in self.channels:
            os.close(self.pidfds.pop(pid))  # a spare that never served
        for pipe, (owner, _, _) in list(self.sentinels.items()):
            if owner == pid:  # its exec report comes first
                self._exec_report(pipe)
        pidfd = self.pidfds.pop(pid, -1)
        if pidfd >= 0:
            os.close(pidfd)
        channel = self.channels.pop(pid, -1)
        if channel >= 0:
            _quietly(status_channel.send, channel, status_channel.Reaped(status))
            os.close(channel)

    def _exec_report(self, pipe: int) -> None:
        """The command of an ``as_pid_1`` request has exec'd (EOF) or reported failure."""
        pid, channel, failure = self.sentinels[pipe]
        data = os.read(pipe, 4096)
        if data:
            self.sentinels[pipe] = (pid, channel, failure + data)
            return
        del self.sentinels[pipe]
        os.close(pipe)
        if failure:
            _quietly(os.write, channel, failure)
        else:
            ready = status_channel.Ready(1, pid, time.monotonic_ns())
            _quietly(status_channel.send, channel, ready)

    def _request(self, data: bytes, fds: list[int]) -> None:
        """Make a request's namespace now. The bytes after ``N`` are its shape (empty when
        no spare could serve it): spares are made of the last one's."""
        if data[:1] != REQUEST or len(fds) < FIXED_FDS:
            for fd in fds:
                os.close(fd)
            return
        try:
            request = marshal.loads(_read_all(fds[0]))
        except Exception:  # a malformed request: one line, never a traceback
            _quietly(status_channel.send, fds[1], status_channel.CloneFailed(errno.EINVAL))
            for fd in fds:
                os.close(fd)
            return
        shape = data[1:]
        wanted = shape and shape not in self.refused and not self.cannot_wait
        if wanted and (self.wanted is None or self.wanted[0] != shape):
            if self.spare is not None:  # of another shape: the caller lets it go
                self._drop(self.spare)
            self.wanted = (shape, request)
        self._watch(self._clone(request, fds))

    def _spare_said(self, spare: Spare) -> bool:
        """Take one message of ``spare`` (never blocks): ``t`` with its request channel
        (it took a request: W goes there), ``f`` it could not make its namespace, EOF it
        is gone. Whether there may be more."""
        try:
            data, fds = recv_fds(spare.sock, 4096, _socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            data, fds = b"", []
        if data == b"r":
            spare.ready = True
            return True
        if data[:1] == b"t" and fds:
            self.channels[spare.pid] = fds.pop()
            self.serving.add(spare.pid)
            self.taken_at = time.monotonic()
        elif data[:1] == b"f" or not spare.ready:
            self.refused.add(spare.shape)  # that shape gets no spares: the error is
            if self.wanted is not None and self.wanted[0] == spare.shape:  # each
                self.wanted = None  # request's own, made at it
        for fd in fds:
            os.close(fd)
        self._drop(spare)
        return False

    def _drop(self, spare: Spare) -> None:
        """Forget ``spare``: close our end of its socket. It is not killed: a spare still
        waiting for a request exits at that EOF (``spare._wait``), and one the caller has
        already handed a request serves it, though its ``t`` may not have reached us yet
        (a request of another shape can come first): killing it there ended a command the
        caller had been told was taken. No signal either for a spare ``_reaped`` drops
        after reaping it, whose pid any new process may have by then."""
        if self.spare is spare:
            self.spare = None
        self.poller.unregister(spare.sock)
        spare.sock.close()

    def _make_spare(self, shape: bytes, request: dict[str, Any]) -> None:
        """Make the next spare: an init in a fresh namespace of ``request``'s shape, with
        its /proc mounted, waiting for a request (``spare.become_spare``), and announce it
        to the caller (``S``): its request channel, its pidfd, and a mountinfo fd of our
        mount namespace opened before the spare copied it (``served.Spare.stale``)."""
        try:
            from pidns.linux import spare as spares  # noqa: PLC0415 (once there is a shape)
        except ImportError:  # the package unreadable from here: no spares, not no server
            self.refused.add(shape)
            self.wanted = None
            return
        mountinfo = -1
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _SEQPACKET)
        callers, its = _socket.socketpair(_socket.AF_UNIX, _SEQPACKET)
        try:
            if request["mount_ns"]:
                mountinfo = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
            pid, pidfd = syscalls.clone_bare(request["flags"], want_pidfd=True)
            if pid == 0:
                channels = (theirs.fileno(), its.fileno())
                spares.become_spare(request, *channels, self.caller_pidfd, self.host_pidns)
        except OSError:
            self.refused.add(shape)
            self.wanted = None
            mine.close()
            callers.close()
            return
        finally:
            theirs.close()
            its.close()
        self.pidfds[pid] = pidfd
        self.spare = Spare(shape, pid, mine)
        self.poller.register(mine, select.POLLIN)
        fds = [callers.fileno(), pidfd] + ([mountinfo] if mountinfo >= 0 else [])
        try:
            self.control.sendmsg([b"S%d " % pid + shape], [(SOL_SOCKET, SCM_RIGHTS, _fds(fds))])
        except OSError:
            self._drop(self.spare)
        finally:
            callers.close()
            if mountinfo >= 0:
                os.close(mountinfo)

    def _clone(self, request: dict[str, Any], fds: list[int]) -> int:
        """Make the request's namespace now; the fd of an exec sentinel to watch, or -1."""
        status, cwd = fds[1:3]
        sentinel = write_end = -1
        pid = -1
        try:
            if self.cannot_wait:
                err = self.cannot_wait
                text = f"cannot wait for pid 1: {os.strerror(err)}"
                status_channel.send(status, status_channel.Failed(125, err, "setup", text))
                raise _Refused
            stdio = [fd if fd >= 0 else self.devnull for fd in fds[3:6]]
            passed = list(zip(fds[FIXED_FDS:], request["pass_fds"], strict=True))
            channel = status
            if request["as_pid_1"]:
                sentinel, write_end = os.pipe()
                channel = write_end
            os.fchdir(cwd)
            try:
                pid, pidfd = syscalls.clone_bare(request["flags"], want_pidfd=True)
                if pid == 0:
                    _become(request, channel, self.caller_pidfd, self.host_pidns, stdio, passed)
            finally:
                os.fchdir(self.root)
        except OSError as exc:
            _quietly(
                status_channel.send, status, status_channel.CloneFailed(exc.errno or errno.EIO)
            )
        except Exception:  # a malformed request: one line, never a traceback
            _quietly(status_channel.send, status, status_channel.CloneFailed(errno.EINVAL))
        finally:
            for fd in fds:
                if fd != status:
                    os.close(fd)
            if write_end >= 0:
                os.close(write_end)
        if pid <= 0:
            os.close(status)
            if sentinel >= 0:
                os.close(sentinel)
            return -1
        self.channels[pid] = status
        _quietly(send_with_fd, status, status_channel.HelperSpawned(pid), pidfd)
        self.pidfds[pid] = pidfd
        if sentinel >= 0:
            self.sentinels[sentinel] = (pid, status, b"")
        return sentinel


class Spare:
    """The server's view of a spare init: its pid and the socket on which it says r, f, t."""

    __slots__ = ("pid", "ready", "shape", "sock")

    def __init__(self, shape: bytes, pid: int, sock: _socket.socket) -> None:
        self.shape = shape
        self.pid = pid
        self.sock = sock
        self.ready = False  # it said r: its namespace is made


def _fds(fds: list[int]) -> bytes:
    """An SCM_RIGHTS payload."""
    return b"".join(fd.to_bytes(4, "little") for fd in fds)


def _id_map(user: int | None, group: int | None, setgroups: str | None) -> userns.IdMap:
    """A request's id_map: (user, group, setgroups), no subordinate ranges."""
    return userns.IdMap(user=user, group=group, setgroups=setgroups)


class _Refused(Exception):
    """A request refused with a message already sent."""


def _wait_refused() -> int:
    """The errno with which wait4 is refused (a seccomp filter), 0 if it works: the init
    reaps with it (with no child yet, waitpid(-1) takes nothing: ECHILD)."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return 0
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def _quietly(fn: Any, *args: Any) -> None:
    try:  # noqa: SIM105 (contextlib would cost the server's start-up)
        fn(*args)
    except OSError:
        pass  # the caller's end is gone: nobody to tell


def plan_of(
    request: dict[str, Any],
    channel: int,
    watched: list[int],
    stdio: list[int],
    passed: list[tuple[int, int]],
) -> tuple[Plan, int, list[int]]:
    """The init's Plan for ``request``, with its fds where the command wants them: each
    ``passed`` (fd, target) dup2'd onto its target (inheritable), and ``channel``, the
    ``watched`` fds and ``stdio`` moved above every target first, so that no dup2 clobbers
    them (their new numbers are returned). Takes the caller's umask, rlimits and ignored
    signals. In the init (the server's child, or a spare), never in the server."""
    targets = [target for _, target in passed if target > 2]
    low = max([2, *targets]) + 1

    def lift(fd: int) -> int:
        return fd if fd < 0 else fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, low)

    channel = lift(channel)
    watched = [lift(fd) for fd in watched]
    stdio = [lift(fd) for fd in stdio]
    for fd, target in [(lift(fd), target) for fd, target in passed if target > 2]:
        os.dup2(fd, target)  # inheritable
    os.umask(request["umask"])
    for kind, limits in request["rlimits"]:  # those the caller changed since our start
        resource.setrlimit(kind, limits)
    ignored, mask = request["inherited"]
    id_map = request["id_map"]
    for sig in ignored:
        # the command gets them ignored, as exec would from the caller; posix_spawn
        # can only reset a disposition (SIGCHLD: become_init forks for it instead)
        if sig != SIGCHLD:
            signal.signal(sig, signal.SIG_IGN)
    plan = Plan(
        request["argv"],
        request["path"],
        request["env"],
        stdio=(stdio[0], stdio[1], stdio[2]),
        as_pid_1=request["as_pid_1"],
        mount_ns=request["mount_ns"],
        proc_dir=request["proc_dir"],
        propagation=request["propagation"],
        ids=tuple(request["ids"]),
        id_map=None if id_map is None else _id_map(*id_map),
        wait_all=request["wait_all"],
        grace=request["grace"],
        forward_to_group=request["forward_to_group"],
        parent_death_signal=True,  # the server's death kills the namespace
        pass_fds=tuple(targets),
        new_group=request["new_group"],
        kill_signal=request["kill_signal"],
        launcher_death_signal=request["launcher_death_signal"],
        timeout=request["timeout"],
        rewrite=request["rewrite"],
        inherited=spawn.Inherited(tuple(ignored), tuple(mask)),
        subreaper=request["subreaper"],
        new_session=request["new_session"],
    )
    # the caller's ids, not ours: in a new user namespace, unmapped yet, getuid()
    # says the overflow uid (kernel/user_namespace.c: from_kuid_munged)
    plan.uid, plan.gid = request["caller_ids"]
    return plan, channel, watched


def report_setup_failure(channel: int, exc: BaseException) -> NoReturn:
    """A failure before the init could start: one F line, exit 125."""
    text = f"{type(exc).__name__}: {exc}"
    failure = status_channel.Failed(125, getattr(exc, "errno", 0) or 0, "setup", text)
    _quietly(status_channel.send, channel, failure)
    os._exit(125)


def _become(
    request: dict[str, Any],
    channel: int,
    caller_pidfd: int,
    host_pidns: int,
    stdio: list[int],
    passed: list[tuple[int, int]],
) -> NoReturn:
    """The child of clone3: put the fds where the command wants them, take the caller's
    signal state and umask, then be the init."""
    try:
        plan, channel, (caller_pidfd, host_pidns) = plan_of(
            request, channel, [caller_pidfd, host_pidns], stdio, passed
        )
    except BaseException as exc:
        report_setup_failure(channel, exc)
    become_init(plan, channel, caller_pidfd, host_pidns)


def main(control: int, caller_pidfd: int, parent_death_signal: bool) -> NoReturn:
    """The server's entry point (``python -I -S -c`` from ``served``, or a fork)."""
    try:
        if parent_death_signal:
            syscalls.set_parent_death_signal(SIGKILL)
        # the caller may have died before the signal was armed: its pidfd says so
        if not select.select([caller_pidfd], [], [], 0)[0]:
            Server(control, caller_pidfd).serve()
    finally:
        os._exit(0)
