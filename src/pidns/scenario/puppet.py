"""The code that runs inside the real backend's world: its init and every puppet.

A *puppet* is a real process that performs the system calls the runner sends it over a
SOCK_SEQPACKET socket (one message per command, one per reply) and reports each result.
Children of a puppet are puppets made by the puppet's own fork or clone, so parents,
namespaces, credentials and signal dispositions are the kernel's own.

Signals a puppet catches are blocked and read from a signalfd, which gives ``ssi_pid``
(Python's handlers do not expose ``si_pid``); a no-op Python handler stays installed so
that the kernel sees a handler (kernel/signal.c:sig_task_ignored drops SIG_DFL signals
sent to an init). A puppet takes its caught signals when the runner says so, once a
step has settled (the ``drain`` command, or WAKE for one blocked in wait), and before
every call: so two signals of one number sent during one step merge into one, as the
kernel keeps one pending instance of a standard signal, whatever the scheduling. A
puppet blocked in ``wait`` stays in a real waitpid(2); the runner interrupts it with
WAKE (SIGRTMAX, the one signal scenarios may not use), it drains, and waits again.

A puppet may run *threads* (puppet threads): ``thread`` starts one with pthread_create
(so the kernel's own errno comes back) that serves a channel of its own, so each thread
of the process is a puppet the runner addresses by name. The process's caught signals,
pidfds and dispositions are the group's, each thread's signal mask its own; ``signal``
uses sigaction(2) itself, which any thread may call (Python's signal module works only
in the main thread). A thread ends with ``exit_thread``: exit(2) itself, as
pthread_exit makes it, without glibc's bookkeeping. A pidfd the puppet opens stays in
its descriptor table (its children inherit it, as fork copies the table); the runner
names it by its descriptor number.

``exec`` is a real execve(2) of a fresh puppet (``main`` below) by the calling thread,
which keeps its channel to the runner across it: the kernel ends every other thread
(their channels close with the old image: every descriptor here but that one is
O_CLOEXEC), keeps the thread's signal mask and pending signals, resets caught signals
to SIG_DFL and keeps ignored ones. The new image is told only what it cannot read from
the kernel: its channel's number and which signals the thread blocked with ``block``
(the rest of its inherited mask is the old image's catching). It replies to the exec.

The commands and replies, and their wire format, are pidns.scenario.puppet_protocol; which
command each op sends is the op registry's (pidns.scenario.ops).
"""

from __future__ import annotations

import ctypes
import errno
import gc
import os
import resource
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import ClassVar, NoReturn

from pidns.core import flags as cf
from pidns.core import wire as core_wire
from pidns.core.abi import WALL
from pidns.linux import features, mounts, nsfs, syscalls
from pidns.scenario import puppet_protocol as wire
from pidns.scenario.puppet_protocol import (
    Blocks,
    Broken,
    Caught,
    Done,
    Errno,
    Exited,
    Killed,
    NothingToCollect,
    Number,
    Numbers,
    Reply,
    Unsupported,
    receive,
    send,
)

WAKE = int(signal.SIGRTMAX)
PR_SET_DUMPABLE = 4
_SIGINFO_SIZE = 128  # struct signalfd_siginfo
_SFD_NONBLOCK = os.O_NONBLOCK
_SFD_CLOEXEC = os.O_CLOEXEC

_libc = ctypes.CDLL(None, use_errno=True)  # CDLL: the GIL is released during each call
_libc.waitpid.restype = ctypes.c_int
_libc.waitid.restype = ctypes.c_int
_libc.setsid.restype = ctypes.c_int
_libc.signalfd.restype = ctypes.c_int
_libc.syscall.restype = ctypes.c_long
_libc.pthread_create.restype = ctypes.c_int
_libc.pthread_self.restype = ctypes.c_void_p
SYS_EXIT = 60  # exit(2) of one thread (x86-64); exit_group is what os._exit calls
SYS_TGKILL = 234
SYS_SETUID = 105
P_PIDFD = 3  # include/uapi/linux/wait.h
CLD_EXITED = 1
_START = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)


class _SigInfo(ctypes.Structure):
    """The head of siginfo_t for SIGCHLD: what waitid(2) fills in."""

    _fields_ = (
        ("signo", ctypes.c_int),
        ("errno", ctypes.c_int),
        ("code", ctypes.c_int),
        ("_pad", ctypes.c_int),
        ("pid", ctypes.c_int),
        ("uid", ctypes.c_uint),
        ("status", ctypes.c_int),
        ("_rest", ctypes.c_byte * 100),
    )


class _SigAction(ctypes.Structure):
    """glibc's struct sigaction (x86-64)."""

    _fields_ = (
        ("handler", ctypes.c_void_p),
        ("mask", ctypes.c_ulong * 16),
        ("flags", ctypes.c_int),
        ("restorer", ctypes.c_void_p),
    )


_libc.sigaction.argtypes = [ctypes.c_int, ctypes.POINTER(_SigAction), ctypes.POINTER(_SigAction)]


def _set_action(signo: int, how: str) -> None:
    """sigaction(2) from any thread: SIG_IGN, SIG_DFL, or for ``catch`` the handler Python
    installed for WAKE (its C trampoline, which runs no Python code for a signal Python
    has no handler for; a caught signal stays blocked and goes to the signalfd anyway)."""
    act = _SigAction()
    if how == "catch":
        _checked(_libc.sigaction(WAKE, None, ctypes.byref(act)))
        act.mask = (ctypes.c_ulong * 16)()
    else:
        act.handler = 1 if how == "ignore" else 0  # SIG_IGN, SIG_DFL
    _checked(_libc.sigaction(signo, ctypes.byref(act), None))


def _glibc_tid_offset() -> int | None:
    """Where glibc keeps the calling thread's tid in its struct pthread (its own cache,
    which its fork() refreshes and a raw clone3 does not): the one 4-byte slot of the
    first 4 KiB that holds our tid, found once; None if unsure."""
    base = _libc.pthread_self()
    if not base:
        return None
    tid = threading.get_native_id()
    raw = ctypes.string_at(base, 4096)
    found = [off for off in range(0, 4096, 4) if struct.unpack_from("i", raw, off)[0] == tid]
    return found[0] if len(found) == 1 else None


_TID_OFFSET = _glibc_tid_offset()


def _refresh_glibc_tid() -> None:
    """After clone3 glibc still caches the parent's tid, so its setxid broadcast
    (setuid(3) in a threaded process) signals a thread that does not exist and spins:
    store the child's own tid there, as glibc's fork() does."""
    base = _libc.pthread_self()
    if _TID_OFFSET is not None and base:
        ctypes.c_int.from_address(base + _TID_OFFSET).value = threading.get_native_id()


def _close_all_but(keep: Sequence[int]) -> None:
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def _quiet_standard_streams() -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _noop(_signum: int, _frame: object) -> None:
    """The handler the kernel sees for a caught signal (the signal itself goes to the signalfd)."""


def reset_signals() -> None:
    """Every disposition SIG_DFL and nothing blocked, as in a freshly exec'd process;
    WAKE gets its no-op handler (it only interrupts a blocking wait)."""
    for signo in signal.valid_signals():
        if signo in (signal.SIGKILL, signal.SIGSTOP):
            continue
        signal.signal(signo, _noop if signo == WAKE else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _sigset(signos: Sequence[int]) -> ctypes.Array[ctypes.c_ulong]:
    words = (ctypes.c_ulong * 16)()  # sigset_t: 1024 bits
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    for signo in signos:
        words[(signo - 1) // bits] |= 1 << ((signo - 1) % bits)
    return words


# How long a set_tid clone may find its number still taken by a release in flight.
_RELEASE_GRACE_TRIES = 20
_RELEASE_GRACE_PAUSE = 0.002


def _clone_settled(flags: int, set_tid: Sequence[int], exit_signal: int | None) -> tuple[int, int]:
    """clone3 with ``set_tid``, taking a number the step before freed.

    A thread's (or an autoreaped child's) release runs in the exiting task itself
    (kernel/exit.c:release_task), and it unhashes the pid, so /proc stops showing it,
    before ``free_pids`` gives the number back: the runner's settle cannot see the free,
    and for a few microseconds the number is still allocated (alloc_pid: EEXIST). A
    step starts only once the world is at rest, so an EEXIST that goes away within
    milliseconds was that release: the call is made again. One that persists is the
    kernel's answer (a live task holds the number). EEXIST creates nothing, so making
    the call again changes nothing else.
    """
    for _ in range(_RELEASE_GRACE_TRIES if set_tid else 0):
        try:
            return syscalls.clone(flags, set_tid=set_tid, exit_signal=exit_signal, want_pidfd=True)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise
        time.sleep(_RELEASE_GRACE_PAUSE)
    return syscalls.clone(flags, set_tid=set_tid, exit_signal=exit_signal, want_pidfd=True)


class _Peer:
    """One thread of a puppet, as its other threads reach it: a pipe it polls, and an
    event it sets once it has made its signal mask the process's (``Puppet.sync_mask``)."""

    def __init__(self) -> None:
        self.tid = threading.get_native_id()
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self.synced = threading.Event()

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class _BecomeChild(Exception):
    """Raised in a freshly forked puppet: unwind to the loop and serve the new channel."""

    def __init__(
        self,
        channel: socket.socket,
        drop: Sequence[socket.socket],
        shared: bool,
        blocked: set[int],
    ) -> None:
        super().__init__()
        self.blocked = blocked  # what the forking thread blocked: the child's mask
        self.channel = channel
        self.drop = drop  # the parent's sockets, which this process must not use
        self.shared = shared  # CLONE_FILES: one fd table with the parent, so close nothing


class Puppet:
    """One puppet process: the runner's channel to each of its threads, and the group's
    state (its caught signals, what each thread blocked)."""

    def __init__(self, channel: socket.socket) -> None:
        self._here = threading.local()  # the calling thread's channel
        self.channel = channel
        self.channels = [channel]  # every thread's, which a forked child must close
        self.catching: set[int] = set()
        self.caught: list[tuple[int, int]] = []
        self.sigfd = -1
        self.lock = threading.RLock()  # one thread at a time touches the state here
        # signals each thread blocked with ``block`` (by native thread id): a caught one
        # stays pending for the process until some thread unblocks it
        self.user_blocked: dict[int, set[int]] = {threading.get_native_id(): set()}
        self.threads: list[object] = []  # the ctypes callbacks of running threads
        self.peers: dict[int, _Peer] = {}  # every live thread, by native id
        self.setxid: int | None = None  # a setuid the other threads make in their sync
        self._here.peer = self._join()

    def _join(self) -> _Peer:
        peer = _Peer()
        with self.lock:
            self.peers[peer.tid] = peer
        return peer

    @property
    def peer(self) -> _Peer:
        """The calling thread's own."""
        peer: _Peer = self._here.peer
        return peer

    def sync_mask(self) -> None:
        """The calling thread's signal mask: what it blocked (``block``) and every caught
        signal, which only the signalfd may take (a thread that does not block it would
        run the no-op handler, and the signal would be lost)."""
        signal.pthread_sigmask(signal.SIG_SETMASK, self.catching | self.mine)

    def _sync_others(self) -> None:
        """After a disposition changed: every other thread makes its mask anew (woken in
        its poll by its pipe, or in a blocking wait by WAKE), and this one waits for it."""
        others = [peer for tid, peer in list(self.peers.items()) if tid != self.peer.tid]
        for peer in others:
            peer.synced.clear()
            os.write(peer.write_fd, b"s")
            _libc.syscall(SYS_TGKILL, os.getpid(), peer.tid, WAKE)
        for peer in others:
            if not peer.synced.wait(10.0):
                raise RuntimeError(f"thread {peer.tid} did not take the new signal mask")

    def _synced_if_asked(self) -> bool:
        """Take a request of ``_sync_others`` if one came (the pipe is non-blocking)."""
        try:
            os.read(self.peer.read_fd, 64)
        except BlockingIOError:
            return False
        self.sync_mask()
        if self.setxid is not None:
            _checked(_libc.syscall(SYS_SETUID, self.setxid))
        self.peer.synced.set()
        return True

    @property
    def channel(self) -> socket.socket:
        """The calling thread's channel to the runner."""
        channel: socket.socket = self._here.channel
        return channel

    @channel.setter
    def channel(self, channel: socket.socket) -> None:
        self._here.channel = channel

    @property
    def mine(self) -> set[int]:
        """The signals the calling thread blocked with ``block``."""
        return self.user_blocked.setdefault(threading.get_native_id(), set())

    # ---- the loop ----

    def serve(self) -> NoReturn:
        while True:
            try:
                self._loop()
            except _BecomeChild as child:
                for sock in child.drop:
                    if child.shared:
                        sock.detach()
                    else:
                        sock.close()
                self.channel = child.channel
                if not features.has("pidfd_open"):
                    say_born(self.channel)
                self.channels = [child.channel]
                self.lock = threading.RLock()  # another thread may have held it at fork
                self.caught = []  # pending signals are not inherited (kernel/fork.c)
                self.threads = []  # only the forking thread goes on in the child
                self.user_blocked = {threading.get_native_id(): child.blocked}
                for peer in self.peers.values():  # the parent's pipes, copied with the table
                    if not child.shared:  # CLONE_FILES: the parent's own, still in use
                        peer.close()
                self.peers = {}
                self._here.peer = self._join()
                # A signalfd's mask lives in the file the parent shares: take our own.
                if self.sigfd >= 0 and not child.shared:
                    os.close(self.sigfd)
                self.sigfd = -1
                if self.catching:
                    self._watch_caught_signals()

    def _loop(self) -> None:
        poller = select.poll()
        poller.register(self.channel.fileno(), select.POLLIN)
        poller.register(self.peer.read_fd, select.POLLIN)
        channel = self.channel.fileno()
        while True:
            ready = {fd for fd, _events in poller.poll()}
            if self.peer.read_fd in ready:
                self._synced_if_asked()
            if channel not in ready:
                continue
            try:
                data = self.channel.recv(wire.MAX_MESSAGE)  # commands never carry descriptors
            except OSError:
                os._exit(0)
            if not data:
                os._exit(0)  # the runner is gone: the world is being torn down
            try:
                reply = self._command(data.decode())
            except _BecomeChild:
                raise
            except Exception as exc:  # a bug here must reach the runner, not kill the puppet
                reply = Broken(f"{type(exc).__name__}: {exc}")
            if reply is not None:
                send(self.channel, wire.encode_reply(reply))

    def _drain(self) -> None:
        if self.sigfd < 0:
            return
        while True:
            try:
                data = os.read(self.sigfd, _SIGINFO_SIZE * 16)
            except BlockingIOError:
                return
            for offset in range(0, len(data), _SIGINFO_SIZE):
                signo, _errno, _code, pid = struct.unpack_from("IiiI", data, offset)
                self.caught.append((signo, pid))

    # ---- commands ----

    def _command(self, text: str) -> Reply | None:
        word, args = wire.decode_command(text)
        with self.lock:
            self._drain()  # signals caught so far are recorded before the next call
        if word == wire.DRAIN:
            return None  # the runner's settle: take the caught signals, no reply
        try:
            return self.handlers[word](self, *args)
        except OSError as exc:
            return Errno(exc.errno or 0)

    # One handler per command word of the op registry (tests/test_ops.py checks both
    # name the same commands); the arguments come typed by puppet_protocol.

    def do_fork(self) -> Reply | None:
        return self._fork(None, ())

    def do_clone(
        self, flags: int, set_tid: tuple[int, ...], exit_signal: int, keep: int
    ) -> Reply | None:
        """clone3; with ``keep`` the child's pidfd (CLONE_PIDFD) stays in this process."""
        return self._fork(flags, set_tid, None if exit_signal < 0 else exit_signal, bool(keep))

    def do_thread(self) -> Reply | None:
        """pthread_create a thread that serves a channel of its own; reply with its tid,
        a PIDFD_THREAD pidfd of it and the runner's end of its channel."""
        ours, theirs = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
        )
        started = threading.Event()
        tid: list[int] = []
        inherited = set(self.mine)  # a new thread starts with its creator's mask

        def body(_arg: object) -> int:
            tid.append(threading.get_native_id())
            with self.lock:
                self.user_blocked[tid[0]] = inherited
            self.channel = theirs
            self._here.peer = self._join()
            started.set()
            self.serve()

        callback = _START(body)
        handle = ctypes.c_ulong()
        err = _libc.pthread_create(ctypes.byref(handle), None, callback, None)
        if err:
            ours.close()
            theirs.close()
            return Errno(err)
        self.threads.append(callback)  # a callback must outlive its thread
        self.channels.append(theirs)
        started.wait()
        pidfd = syscalls.pidfd_open(tid[0], syscalls.PIDFD_THREAD)
        try:
            send(self.channel, wire.encode_reply(Number(tid[0])), [pidfd, ours.fileno()])
        finally:
            os.close(pidfd)
            ours.close()
        return None

    def do_gettid(self) -> Reply:
        return Number(threading.get_native_id())

    def do_exit_thread(self, code: int) -> Reply:
        """exit(2) of the calling thread only: the process lives while another thread
        does (the GIL is released as ctypes calls it, and never taken back)."""
        with self.lock:
            self.user_blocked.pop(threading.get_native_id(), None)
            self._watch_caught_signals()
            self.peers.pop(self.peer.tid).close()
        self.channel.detach()  # the fd stays open in the group's table; the runner reads /proc
        _libc.syscall(SYS_EXIT, code)
        raise AssertionError("exit(2) returned")  # pragma: no cover

    def do_exec(self) -> Reply:
        """execve(2) of a fresh puppet by this thread, keeping this thread's channel (made
        inheritable for it) and telling the new image what it blocked; the new image
        replies (``main``). Python's start-up sets SIGPIPE and SIGXFSZ to SIG_IGN, so
        the kernel's answer for those two cannot be read there: an exec with either not
        at SIG_DFL is unsupported."""
        for signo in (signal.SIGPIPE, signal.SIGXFSZ):
            act = _SigAction()
            _checked(_libc.sigaction(signo, None, ctypes.byref(act)))
            if act.handler:
                return Unsupported(f"exec with {signal.Signals(signo).name} not at SIG_DFL")
        fd = self.channel.fileno()
        blocked = core_wire.ints(sorted(self.mine))
        argv = [sys.executable, "-m", "pidns.scenario.puppet", str(fd), blocked, str(_world_root)]
        os.set_inheritable(fd, True)
        try:
            # the interpreter through the thread's own exe link: its path may pass through
            # a directory the actor's uid cannot search (a per-user install, under /root),
            # and /proc/self is the leader, whose exe a leader that exit(2)ed lacks
            own = "thread-self" if os.path.exists("/proc/thread-self") else "self"  # 3.17
            os.execv(f"/proc/{own}/exe", argv)
        except OSError as exc:
            os.set_inheritable(fd, False)
            return Errno(exc.errno or 0)
        raise AssertionError("execve returned")  # pragma: no cover

    def do_pidfd(self, pid: int, flags: int) -> Reply:
        """pidfd_open(2): the descriptor stays open here; its number is the reply."""
        return Number(syscalls.pidfd_open(pid, flags))

    def do_pidfd_send_signal(self, fd: int, signo: int) -> Reply:
        syscalls.pidfd_send_signal(fd, signo)
        return Number(0)

    def do_waitid(self, fd: int, nohang: int) -> Reply | None:
        """waitid(P_PIDFD, fd, WEXITED): blocks like ``wait`` unless ``nohang``."""
        info = _SigInfo()
        if _libc.waitid(P_PIDFD, fd, ctypes.byref(info), os.WEXITED | os.WNOHANG) < 0:
            return Errno(ctypes.get_errno())
        if info.pid:
            return _waitid_result(info)
        if nohang:
            return NothingToCollect()
        send(self.channel, wire.encode_reply(Blocks()))
        while True:
            info = _SigInfo()
            if _libc.waitid(P_PIDFD, fd, ctypes.byref(info), os.WEXITED) == 0:
                reply = _waitid_result(info)
                break
            err = ctypes.get_errno()
            if err != errno.EINTR:
                reply = Errno(err)
                break
            self._synced_if_asked()
            with self.lock:
                self._drain()
        send(self.channel, wire.encode_reply(Done(reply)))
        return None

    def do_pidfd_setns(self, fd: int) -> Reply:
        syscalls.setns(fd, cf.NEWPID)
        return Number(0)

    def do_pidfd_info(self, fd: int) -> Reply:
        return Numbers(syscalls.pidfd_get_info(fd))

    def do_unshare(self, flags: int) -> Reply:
        syscalls.unshare(flags)
        return Number(0)

    def do_setns(self, host_pid: int, kind: str) -> Reply:
        fd = os.open(f"/proc/{host_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            syscalls.setns(fd, cf.NEWPID)
        finally:
            os.close(fd)
        return Number(0)

    def do_getpid(self) -> Reply:
        return Number(os.getpid())

    def do_getppid(self) -> Reply:
        return Number(os.getppid())

    def do_getpgid(self, pid: int) -> Reply:
        return Number(os.getpgid(pid))

    def do_getsid(self, pid: int) -> Reply:
        return Number(os.getsid(pid))

    def do_setpgid(self, pid: int, pgid: int) -> Reply:
        os.setpgid(pid, pgid)
        return Number(0)

    def do_block(self, signo: int) -> Reply:
        """sigprocmask(SIG_BLOCK): a caught signal is blocked anyway; the signalfd then
        leaves it pending, as the kernel keeps it for the process."""
        with self.lock:
            self.mine.add(signo)
            signal.pthread_sigmask(signal.SIG_BLOCK, [signo])
            self._watch_caught_signals()
        return Number(0)

    def do_unblock(self, signo: int) -> Reply:
        with self.lock:
            self.mine.discard(signo)
            self._watch_caught_signals()
            if signo not in self.catching:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
        return Number(0)

    def do_pending(self) -> Reply:
        """SigPnd | ShdPnd of the caller, as a mask (the caught ones taken first)."""
        mask = 0
        own = "thread-self" if os.path.exists("/proc/thread-self") else "self"  # 3.17
        with open(f"/proc/{own}/status", "rb") as f:
            for line in f:
                if line.startswith((b"SigPnd:", b"ShdPnd:")):
                    mask |= int(line.split()[1], 16)
        return Number(mask)

    def do_pid_max(self, value: int) -> Reply:
        """/proc/sys/kernel/pid_max, keyed on the caller's active pid namespace whichever
        procfs it goes through (kernel/pid.c:pid_table_root_lookup); -1 reads it."""
        path = "/proc/sys/kernel/pid_max"
        if value < 0:
            with open(path, "rb") as f:
                return Number(int(f.read()))
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, str(value).encode())
        finally:
            os.close(fd)
        return Number(0)

    def do_nsparent(self, host_pid: int) -> Reply:
        return self._ns_ioctl(host_pid, _get_parent)

    def do_ns_pid_in(self, host_pid: int, pid: int) -> Reply:
        return self._ns_ioctl(host_pid, lambda fd: nsfs.pid_in(fd, pid))

    def do_ns_pid_from(self, host_pid: int, pid: int) -> Reply:
        return self._ns_ioctl(host_pid, lambda fd: nsfs.pid_from(fd, pid))

    @staticmethod
    def _ns_ioctl(host_pid: int, call: Callable[[int], int]) -> Reply:
        fd = os.open(f"/proc/{host_pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            return Number(call(fd))
        finally:
            os.close(fd)

    def do_setsid(self) -> Reply:
        return Number(_checked(_libc.setsid()))

    def do_exit(self, code: int) -> Reply:
        os._exit(code)

    def do_wait(self, pid: int, nohang: int, flags: int) -> Reply | None:
        if flags & os.WNOWAIT:
            return self._peek(pid, flags)
        return self._wait(pid, bool(nohang), flags)

    def do_kill(self, pid: int, signo: int) -> Reply:
        os.kill(pid, signo)
        return Number(0)

    def do_signal(self, signo: int, disposition: str) -> Reply:
        return self._signal(signo, disposition)

    def do_caught(self) -> Reply:
        with self.lock:
            self._drain()
            items, self.caught = tuple(self.caught), []
        return Caught(items)

    def do_subreaper(self, on: int) -> Reply:
        syscalls.set_child_subreaper(bool(on))
        return Number(0)

    def do_setuid(self, uid: int) -> Reply:
        """setuid(2) in every thread, as glibc's setuid(3) makes it (the kernel's creds are
        per thread), but broadcast by the puppet: after a raw clone3 glibc's own list of
        threads still holds its parent's, whose cached tids may name other tasks here,
        and its broadcast then never ends."""
        _checked(_libc.syscall(SYS_SETUID, uid))
        self.setxid = uid
        try:
            self._sync_others()
        finally:
            self.setxid = None
        return Number(0)

    handlers: ClassVar[dict[str, Callable[..., Reply | None]]] = {
        "fork": do_fork,
        "clone": do_clone,
        "unshare": do_unshare,
        "setns": do_setns,
        "getpid": do_getpid,
        "getppid": do_getppid,
        "getpgid": do_getpgid,
        "getsid": do_getsid,
        "setsid": do_setsid,
        "exit": do_exit,
        "wait": do_wait,
        "kill": do_kill,
        "signal": do_signal,
        "caught": do_caught,
        "subreaper": do_subreaper,
        "setuid": do_setuid,
        "setpgid": do_setpgid,
        "block": do_block,
        "unblock": do_unblock,
        "pending": do_pending,
        "pid_max": do_pid_max,
        "nsparent": do_nsparent,
        "ns_pid_in": do_ns_pid_in,
        "ns_pid_from": do_ns_pid_from,
        "thread": do_thread,
        "gettid": do_gettid,
        "exit_thread": do_exit_thread,
        "exec": do_exec,
        "pidfd": do_pidfd,
        "pidfd_send_signal": do_pidfd_send_signal,
        "waitid": do_waitid,
        "pidfd_setns": do_pidfd_setns,
        "pidfd_info": do_pidfd_info,
    }

    def _fork(
        self,
        flags: int | None,
        set_tid: tuple[int, ...],
        exit_signal: int | None = None,
        keep: bool = False,
    ) -> Reply | None:
        ours, theirs = socket.socketpair(
            socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
        )
        shares_files = flags is not None and bool(flags & cf.FILES)
        blocked = set(self.mine)  # looked up by this thread's id, which the child lacks
        try:
            if flags is None:
                pid, pidfd = os.fork(), -1
            else:
                pid, pidfd = _clone_settled(flags, set_tid, exit_signal)
        except (OSError, ValueError) as exc:
            ours.close()
            theirs.close()
            if isinstance(exc, ValueError):
                return Unsupported(str(exc))
            return Errno(exc.errno or 0)
        if pid == 0:
            if flags is not None:
                _refresh_glibc_tid()
            raise _BecomeChild(theirs, [*self.channels, ours], shares_files, blocked)
        if pidfd < 0 and features.has("pidfd_open"):
            pidfd = os.pidfd_open(pid)
        reply: Reply = Numbers((pid, pidfd)) if keep else Number(pid)
        try:  # without pidfds (before 5.3) the child tells its pids itself (say_born)
            fds = [ours.fileno()] if pidfd < 0 else [pidfd, ours.fileno()]
            send(self.channel, wire.encode_reply(reply), fds)
        finally:
            if pidfd >= 0 and not keep:
                os.close(pidfd)
            ours.close()
            if shares_files:
                theirs.detach()  # the child's channel, in the table we share with it
            else:
                theirs.close()
        return None

    def _peek(self, pid: int, flags: int) -> Reply:
        """waitid(2) with WNOWAIT|WNOHANG: report a zombie child and leave it."""
        if pid == -1:
            idtype, ident = os.P_ALL, 0
        elif pid <= 0:
            idtype, ident = os.P_PGID, -pid  # 0: the caller's own group (Linux 5.4)
        else:
            idtype, ident = os.P_PID, pid
        try:
            info = os.waitid(idtype, ident, os.WEXITED | os.WNOHANG | flags)
        except OSError as exc:
            return Errno(exc.errno or 0)
        if info is None:
            return NothingToCollect()
        if info.si_code == os.CLD_EXITED:
            return Exited(info.si_pid, info.si_status)
        return Killed(info.si_pid, info.si_status)

    def _wait(self, pid: int, nohang: bool, flags: int = 0) -> Reply | None:
        try:
            got, status = os.waitpid(pid, os.WNOHANG | flags)
        except OSError as exc:
            return Errno(exc.errno or 0)
        if got:
            return _wait_result(got, status)
        if nohang:
            return NothingToCollect()
        send(self.channel, wire.encode_reply(Blocks()))
        send(self.channel, wire.encode_reply(Done(self._blocking_wait(pid, flags))))
        return None

    def _blocking_wait(self, pid: int, flags: int = 0) -> Reply:
        """A real waitpid(2) that blocks; on WAKE (EINTR) drain the signalfd and wait again."""
        status = ctypes.c_int(0)
        while True:
            got = _libc.waitpid(pid, ctypes.byref(status), flags)
            if got > 0:
                return _wait_result(got, status.value)
            err = ctypes.get_errno()
            if err != errno.EINTR:
                return Errno(err)
            self._synced_if_asked()
            with self.lock:
                self._drain()

    def _signal(self, signo: int, disposition: str) -> Reply:
        with self.lock:
            if disposition == "catch":
                signal.pthread_sigmask(signal.SIG_BLOCK, [signo])
                _set_action(signo, disposition)
                self.catching.add(signo)
            else:
                _set_action(signo, disposition)
                self.catching.discard(signo)
                if signo not in self.mine:
                    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signo])
            self._watch_caught_signals()
        self._sync_others()
        return Number(0)

    def _watch_caught_signals(self) -> None:
        """The signalfd takes a caught signal unless every thread blocked it (``block``)."""
        masks = list(self.user_blocked.values())
        everyone = set.intersection(*masks) if masks else set()
        mask = _sigset(sorted(self.catching - everyone))
        self.sigfd = _checked(_libc.signalfd(self.sigfd, mask, _SFD_NONBLOCK | _SFD_CLOEXEC))


_world_root = 0  # root's pid in the runner's namespace (set in root, inherited)


def say_born(channel: socket.socket) -> None:
    """A new puppet's pids where no pidfd carries them (before Linux 5.3): its pid in the
    runner's namespace (/proc is the runner's procfs), getpid(), and its pid in the world's
    namespace, read through the procfs root mounted for it in root's own mount namespace
    (0 when that is unreachable, e.g. after setuid)."""
    host = int(os.readlink("/proc/self"))
    try:
        world = int(os.readlink(f"/proc/{_world_root}/root/proc/self"))
    except (OSError, ValueError):
        world = 0
    send(channel, f"{wire.BORN} {host} {os.getpid()} {world}")


def _mount_world_proc() -> None:
    """Root's own procfs of the world (NSpid's stand-in before 4.1): in a mount namespace
    of root's alone, made after A was forked, so no puppet ever sees it as its /proc."""
    try:
        syscalls.unshare(cf.NEWNS)
        mounts.make_private_recursive()
        mounts.mount_proc()
    except OSError:
        pass  # births two levels down are then unsupported (the runner says so)


def _get_parent(fd: int) -> int:
    """NS_GET_PARENT: 0 when it gives a descriptor (closed at once)."""
    os.close(syscalls.ns_ioctl(fd, nsfs.NS_GET_PARENT))
    return 0


def _checked(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _waitid_result(info: _SigInfo) -> Reply:
    if info.code == CLD_EXITED:
        return Exited(info.pid, info.status)
    return Killed(info.pid, info.status)


def _wait_result(pid: int, status: int) -> Reply:
    if os.WIFSIGNALED(status):
        return Killed(pid, os.WTERMSIG(status))
    return Exited(pid, os.WEXITSTATUS(status))


# ---- the world's init -----------------------------------------------------------------


def world_init(control: socket.socket, first: socket.socket) -> NoReturn:
    """Run as pid 1 of the world (the runner's clone child): make A, then reap for ever.

    ``control`` carries the runner's go-ahead (once it wrote the id maps) and A's pidfd
    back; ``first`` is A's channel. Dies with the runner (PR_SET_PDEATHSIG), and the
    kernel then kills every process of the world (kernel/pid_namespace.c:
    zap_pid_ns_processes).
    """
    global _world_root
    try:
        _world_root = int(os.readlink("/proc/self"))
        syscalls.set_parent_death_signal(int(signal.SIGKILL))
        gc.freeze()  # never finalise the runner's objects in here
        _close_all_but([control.fileno(), first.fileno()])
        _quiet_standard_streams()
        syscalls.prctl(PR_SET_DUMPABLE, 1)  # /proc/PID files owned by our uid, as usual
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        reset_signals()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
        os.setsid()  # the world is its own session: kill(0, ...) never leaves it
        pid = os.fork()  # A: it acts only on commands, so the id maps may come later
        if pid == 0:
            control.close()
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            if not features.has("pidfd_open"):
                say_born(first)
            Puppet(first).serve()
        first.close()
        pidfd = os.pidfd_open(pid) if features.has("pidfd_open") else -1
        text, _fds = receive(control)
        if text != wire.GO:
            os._exit(1)  # the runner died before the world was ready (A dies with us)
        if not features.has("nspid"):
            _mount_world_proc()
        send(control, wire.FIRST_CHILD, [pidfd] if pidfd >= 0 else [])
        if pidfd >= 0:
            os.close(pidfd)
        control.close()
        _reap_for_ever()
    finally:
        os._exit(1)


def _reap_for_ever() -> NoReturn:
    while True:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG | WALL)
            except ChildProcessError:
                pid = 0
            if pid == 0:
                break
        signal.sigwaitinfo([signal.SIGCHLD])


# ---- a puppet's new image, after exec -------------------------------------------------


def main(argv: Sequence[str]) -> NoReturn:
    """The puppet an ``exec`` made: ``CHANNEL BLOCKED WORLD_ROOT`` (its channel's
    descriptor, the signals the exec'ing thread blocked with ``block``, root's host pid).

    The kernel gave it the old thread's mask and dispositions (fs/exec.c:
    flush_signal_handlers: caught ones at SIG_DFL, ignored ones kept). Python's own
    start-up then changed three: SIGPIPE and SIGXFSZ to SIG_IGN (the old image had
    them at SIG_DFL: Puppet.do_exec) and SIGINT to its handler when it found SIG_DFL
    (it keeps SIG_IGN), which are put back; the old image's catching no longer blocks
    anything, so the mask becomes what the thread blocked itself."""
    global _world_root
    channel_fd, blocked_text, root_text = argv
    channel = socket.socket(fileno=int(channel_fd))
    os.set_inheritable(channel.fileno(), False)
    _world_root = int(root_text)
    blocked = set(core_wire.parse_ints(blocked_text))
    for signo in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signo, signal.SIG_DFL)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(WAKE, _noop)
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    puppet = Puppet(channel)
    puppet.user_blocked = {threading.get_native_id(): blocked}
    send(channel, wire.encode_reply(Number(0)))
    puppet.serve()


if __name__ == "__main__":
    main(sys.argv[1:])
