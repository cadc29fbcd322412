"""System calls for pid namespaces, through ``os`` where Python has them, ctypes where not.

Every wrapper raises ``OSError(errno)`` on failure, like the ``os`` module does.

``clone`` goes through clone3(2), which takes raw flags (CLONE_PARENT included) and
``set_tid``; it runs CPython's own fork hooks around the call, exactly as ``os.fork``
does, so the child is a normal Python process. Flags that would share memory, signal
handlers or the thread group with the caller (VM, SIGHAND, THREAD, VFORK, SETTLS) cannot
give a Python child: ``clone`` passes them to the kernel only when it is certain the
kernel will refuse them, and otherwise raises ``ValueError``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from pidns.core import flags as cf
from pidns.core.abi import (
    SYS_CLONE,
    SYS_CLONE3,
    SYS_FSCONFIG,
    SYS_FSMOUNT,
    SYS_FSOPEN,
    SYS_MOVE_MOUNT,
    SYS_PIDFD_SEND_SIGNAL,
)
from pidns.core.copy_process import copy_process_refusal
from pidns.linux import fastsignal as signal

TYPE_CHECKING = False  # collections.abc costs `pidns run` start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_libc = ctypes.CDLL(None, use_errno=True)
# The GIL must stay held across clone3 so the child does not wake up needing a GIL that
# another (vanished) thread owns: PyDLL keeps it, as os.fork does.
_libc_gil = ctypes.PyDLL(None, use_errno=True)
_libc_gil.syscall.restype = ctypes.c_long
_libc.syscall.restype = ctypes.c_long

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2


def _io(kind: int, nr: int) -> int:
    return (kind << 8) | nr


# include/uapi/linux/pidfd.h
_PIDFS = 0xFF
PIDFD_GET_PID_FOR_CHILDREN_NAMESPACE = _io(_PIDFS, 6)

# Flags a Python child cannot survive: it would share the caller's memory or thread group.
SHARING = (
    cf.VM | cf.SIGHAND | cf.THREAD | cf.VFORK | cf.SETTLS | cf.CHILD_SETTID | cf.CHILD_CLEARTID
)


def _check(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def unshare(flags: int) -> None:
    """unshare(2)."""
    if hasattr(os, "unshare"):  # Python >= 3.12
        os.unshare(flags)
        return
    _check(_libc.unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    """setns(2) with an nsfs fd or a pidfd."""
    if hasattr(os, "setns"):  # Python >= 3.12
        os.setns(fd, nstype)
        return
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


class _CloneArgs(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("pidfd", ctypes.c_uint64),
        ("child_tid", ctypes.c_uint64),
        ("parent_tid", ctypes.c_uint64),
        ("exit_signal", ctypes.c_uint64),
        ("stack", ctypes.c_uint64),
        ("stack_size", ctypes.c_uint64),
        ("tls", ctypes.c_uint64),
        ("set_tid", ctypes.c_uint64),
        ("set_tid_size", ctypes.c_uint64),
        ("cgroup", ctypes.c_uint64),
    ]


def _rejected_before_copy(flags: int) -> bool:
    """Flag words that copy_process always refuses with EINVAL (kernel/fork.c:copy_process),
    so passing them to the kernel can never create a task."""
    return copy_process_refusal(flags) is not None


def clone(
    flags: int = 0,
    *,
    set_tid: Sequence[int] = (),
    exit_signal: int | None = None,
    want_pidfd: bool = False,
) -> tuple[int, int]:
    """clone3(2) that behaves like os.fork: returns ``(pid, pidfd)`` in the parent
    (pidfd is -1 unless asked for) and ``(0, -1)`` in the child.

    ``exit_signal`` defaults to SIGCHLD, or 0 with CLONE_PARENT (clone3 requires it;
    the kernel then gives the child the caller's own exit signal).
    """
    if flags & SHARING and not _rejected_before_copy(flags):
        raise ValueError("clone flags that share memory or threads cannot make a Python child")
    call: _Clone3 | _Clone2 = _Clone3(flags, set_tid, exit_signal, want_pidfd)
    from pidns.linux import features  # noqa: PLC0415 (features imports nothing of ours back)

    if not features.has("clone3"):
        if set_tid and features.forced("clone3"):
            raise ValueError(features.unsupported(features.feature("set_tid"), "set_tid"))
        if not set_tid:  # set_tid is clone3's alone: the kernel answers it (ENOSYS)
            call = _Clone2(flags, exit_signal)
    ctypes.pythonapi.PyOS_BeforeFork()
    result, err = call()
    if result == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0, -1
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if result < 0:
        raise OSError(err, os.strerror(err))
    return result, call.pidfd.value


def clone_bare(
    flags: int = 0, *, exit_signal: int | None = None, want_pidfd: bool = False
) -> tuple[int, int]:
    """clone3(2) without CPython's fork hooks (PyOS_BeforeFork/AfterFork: the
    os.register_at_fork callbacks and the runtime's lock re-initialisation), as
    posix_spawn's child skips pthread_atfork handlers.

    For a child that runs only the caller's own code and ends in os._exit, never returning
    to the program's: it then copies (on write) far fewer pages. Safe only when the
    calling process has a single thread, so that no lock can be held by a thread that
    the child lacks; raises ValueError for the flags ``clone`` refuses.
    """
    if flags & SHARING and not _rejected_before_copy(flags):
        raise ValueError("clone flags that share memory or threads cannot make a Python child")
    call = _Clone3(flags, (), exit_signal, want_pidfd)
    result, err = call()
    if result < 0:
        raise OSError(err, os.strerror(err))
    return result, (call.pidfd.value if result else -1)


class _Clone3:
    """The clone3 argument block (include/uapi/linux/sched.h: struct clone_args)."""

    def __init__(
        self, flags: int, set_tid: Sequence[int], exit_signal: int | None, want_pidfd: bool
    ) -> None:
        if exit_signal is None:
            exit_signal = 0 if flags & (cf.PARENT | cf.THREAD) else int(signal.SIGCHLD)
        self.tids = (ctypes.c_int * max(1, len(set_tid)))(*set_tid)
        self.pidfd = ctypes.c_int(-1)
        self.args = args = _CloneArgs()
        args.flags = flags | (cf.PIDFD if want_pidfd else 0)
        args.pidfd = ctypes.addressof(self.pidfd) if want_pidfd else 0
        args.exit_signal = exit_signal
        args.set_tid = ctypes.addressof(self.tids) if set_tid else 0
        args.set_tid_size = len(set_tid)

    def __call__(self) -> tuple[int, int]:
        """(result, errno): the GIL stays held across the call (see _libc_gil)."""
        result = _libc_gil.syscall(
            ctypes.c_long(SYS_CLONE3),
            ctypes.byref(self.args),
            ctypes.c_size_t(ctypes.sizeof(self.args)),
        )
        return int(result), ctypes.get_errno()


class _Clone2:
    """Raw clone(2) for kernels without clone3 (before 5.3): no stack (the child runs on a
    copy of the caller's, as after fork), the exit signal in the flags' low byte
    (kernel/fork.c:SYSCALL_DEFINE5(clone)), and no pidfd (CLONE_PIDFD is 5.2)."""

    def __init__(self, flags: int, exit_signal: int | None) -> None:
        if exit_signal is None:
            exit_signal = 0 if flags & (cf.PARENT | cf.THREAD) else int(signal.SIGCHLD)
        self.flags = flags | (exit_signal & 0xFF)
        self.pidfd = ctypes.c_int(-1)

    def __call__(self) -> tuple[int, int]:
        result = _libc_gil.syscall(
            ctypes.c_long(SYS_CLONE),
            ctypes.c_ulong(self.flags),
            ctypes.c_void_p(0),
            ctypes.c_void_p(0),
            ctypes.c_void_p(0),
            ctypes.c_ulong(0),
        )
        return int(result), ctypes.get_errno()


def pidfd_open(pid: int, flags: int = 0) -> int:
    return os.pidfd_open(pid, flags)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    signal.pidfd_send_signal(pidfd, sig)


# siginfo_t's _rt fields: si_pid, si_uid, si_value after the preamble (signo, errno, code,
# and on 64-bit a pad to the union's pointer alignment); 128 bytes in all
_SIGINFO_PREAMBLE = 16 if ctypes.sizeof(ctypes.c_void_p) == 8 else 12


def pidfd_send_signal_value(pidfd: int, sig: int, value: int) -> None:
    """``sig`` with si_code SI_QUEUE carrying ``value`` (a 64-bit word), as sigqueue(3)
    does, through a pidfd. The kernel lets anyone who may signal the process send it:
    only SI_USER-or-above codes are reserved (kernel/signal.c:do_pidfd_send_signal)."""
    info = ctypes.create_string_buffer(128)
    struct.pack_into("iii", info, 0, sig, 0, SI_QUEUE)
    struct.pack_into("IIQ", info, _SIGINFO_PREAMBLE, os.getpid(), os.getuid(), value)
    _check(_libc.syscall(SYS_PIDFD_SEND_SIGNAL, pidfd, sig, info, 0))


PIDFD_THREAD = os.O_EXCL  # include/uapi/linux/pidfd.h (6.9)
# _IOWR(PIDFS_IOCTL_MAGIC, 11, struct pidfd_info): the 64-byte first version of the struct
PIDFD_INFO_SIZE = 64
PIDFD_GET_INFO = (3 << 30) | (PIDFD_INFO_SIZE << 16) | (_PIDFS << 8) | 11
PIDFD_INFO_PID = 0x1
_PIDFD_INFO = struct.Struct("QQIII")  # mask, cgroupid, pid, tgid, ppid


def pidfd_get_info(pidfd: int) -> tuple[int, int, int]:
    """ioctl(PIDFD_GET_INFO) for PIDFD_INFO_PID (fs/pidfs.c:pidfd_info, 6.13): the
    process's pid, tgid and ppid as the caller's active pid namespace numbers them."""
    buf = bytearray(PIDFD_INFO_SIZE)
    struct.pack_into("Q", buf, 0, PIDFD_INFO_PID)
    fcntl.ioctl(pidfd, PIDFD_GET_INFO, buf, True)
    _mask, _cgroup, pid, tgid, ppid = _PIDFD_INFO.unpack_from(buf)
    return pid, tgid, ppid


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(
        _libc.prctl(
            ctypes.c_int(option),
            ctypes.c_ulong(arg2),
            ctypes.c_ulong(arg3),
            ctypes.c_ulong(arg4),
            ctypes.c_ulong(arg5),
        )
    )


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def effective_capabilities() -> int:
    """capget(2): the calling thread's effective capability set, as a bit mask."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two struct __user_cap_data_struct (3 words each)
    _check(_libc.capget(header, data))
    return int(data[0]) | int(data[3]) << 32


def set_child_subreaper(on: bool = True) -> None:
    prctl(PR_SET_CHILD_SUBREAPER, int(on))


# rt_sigaction(2) by number: glibc's sigaction refuses its two internal signals (32, 33),
# which a process started by glibc's posix_spawn (make, for one) inherits ignored.
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)
GLIBC_INTERNAL_SIGNALS = (32, 33)


def reset_internal_signals() -> None:
    """Give glibc's internal signals SIG_DFL (kernel/signal.c:do_sigaction), as
    posix_spawn's POSIX_SPAWN_SETSIGDEF does for a spawned command: a forked child about
    to exec must not pass on an ignored 32 or 33 it inherited. A kernel ``struct
    sigaction`` of zeros is SIG_DFL with no flags and an empty mask."""
    if _SYS_RT_SIGACTION is None:
        return
    action = (ctypes.c_ulong * 4)()
    for sig in GLIBC_INTERNAL_SIGNALS:
        _check(_libc.syscall(_SYS_RT_SIGACTION, sig, ctypes.byref(action), None, 8))


def set_parent_death_signal(sig: int) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            None if source is None else os.fsencode(source),
            os.fsencode(target),
            None if fstype is None else os.fsencode(fstype),
            ctypes.c_ulong(flags),
            None if data is None else os.fsencode(data),
        )
    )


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), ctypes.c_int(flags)))


def ns_ioctl(fd: int, request: int, arg: int = 0) -> int:
    """An nsfs or pidfs ioctl whose result is the return value (an fd, a pid, a type)."""
    return int(fcntl.ioctl(fd, request, arg))


# The new mount API (fs/fsopen.c, fs/namespace.c); its syscall numbers are core.abi's.
FSOPEN_CLOEXEC = 1
FSCONFIG_SET_FD = 5
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100


def fsopen(fstype: str, flags: int = FSOPEN_CLOEXEC) -> int:
    """fsopen(2): a filesystem context fd for ``fstype`` (fs/fsopen.c)."""
    return _check(
        _libc.syscall(ctypes.c_long(SYS_FSOPEN), os.fsencode(fstype), ctypes.c_uint(flags))
    )


def fsconfig(
    fd: int, cmd: int, key: str | None = None, value: str | None = None, aux: int = 0
) -> None:
    """fsconfig(2). For FSCONFIG_SET_FD the fd goes in ``aux`` and ``value`` stays None."""
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_FSCONFIG),
            ctypes.c_int(fd),
            ctypes.c_uint(cmd),
            None if key is None else os.fsencode(key),
            None if value is None else os.fsencode(value),
            ctypes.c_int(aux),
        )
    )


def fsmount(fd: int, flags: int = FSMOUNT_CLOEXEC, attr_flags: int = 0) -> int:
    """fsmount(2): a detached mount of a created filesystem context; returns its fd."""
    return _check(
        _libc.syscall(
            ctypes.c_long(SYS_FSMOUNT),
            ctypes.c_int(fd),
            ctypes.c_uint(flags),
            ctypes.c_uint(attr_flags),
        )
    )


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int = 0) -> None:
    """move_mount(2): attach (or move) a mount, e.g. an fsmount fd with MOVE_MOUNT_F_EMPTY_PATH."""
    _check(
        _libc.syscall(
            ctypes.c_long(SYS_MOVE_MOUNT),
            ctypes.c_int(from_fd),
            os.fsencode(from_path),
            ctypes.c_int(to_fd),
            os.fsencode(to_path),
            ctypes.c_uint(flags),
        )
    )


# signalfd(2) (fs/signalfd.c): blocked signals read as struct signalfd_siginfo records.
SFD_NONBLOCK = os.O_NONBLOCK
SFD_CLOEXEC = os.O_CLOEXEC
SIGINFO_SIZE = 128  # sizeof(struct signalfd_siginfo)
SI_USER = 0  # kill(2), pidfd_send_signal(2), the parent-death signal
SI_KERNEL = 0x80  # sent by the kernel itself, e.g. a terminal's ^C to its foreground group
SI_QUEUE = -1  # sigqueue(3), and pidfd_send_signal_value below: carries a value
# ssi_signo, ssi_errno, ssi_code, ssi_pid, ssi_uid, then (at 48) ssi_ptr, the value
_SIGINFO = struct.Struct("=IiiII28xQ")


def _sigset(signals: Iterable[int]) -> ctypes.Array[ctypes.c_ulong]:
    """A glibc ``sigset_t`` (1024 bits) holding ``signals``."""
    bits = ctypes.sizeof(ctypes.c_ulong) * 8
    words = (ctypes.c_ulong * (1024 // bits))()
    for sig in signals:
        words[(sig - 1) // bits] |= 1 << ((sig - 1) % bits)
    return words


def signalfd(signals: Iterable[int], flags: int = SFD_CLOEXEC | SFD_NONBLOCK) -> int:
    """signalfd(2): a new fd on which ``signals`` can be read once they are pending.

    The signals must also be blocked (signal.pthread_sigmask), or they are delivered
    the ordinary way instead of queued for the fd (kernel/signal.c:dequeue_signal).
    """
    mask = _sigset(signals)
    return _check(_libc.signalfd(ctypes.c_int(-1), ctypes.byref(mask), ctypes.c_int(flags)))


# posix_spawn(3) through libc itself rather than os.posix_spawn: Python builds its sigsets
# with sigaddset, which refuses glibc's two internal signals (32, 33), so os.posix_spawn
# cannot reset them, and glibc's child sets every blocked internal signal to SIG_IGN
# (sysdeps/unix/sysv/linux/spawni.c:__spawni_child): the command would start with 32 and
# 33 ignored. posix_spawnattr_setsigdefault copies the set as it is, bits and all.
POSIX_SPAWN_SETPGROUP = 0x02
POSIX_SPAWN_SETSIGDEF = 0x04
POSIX_SPAWN_SETSIGMASK = 0x08
POSIX_SPAWN_SETSID = 0x80  # glibc 2.26
_SPAWNATTR_SIZE = 1024  # sizeof(posix_spawnattr_t) is 336 on x86-64 glibc: room to spare
_FILE_ACTIONS_SIZE = 256  # sizeof(posix_spawn_file_actions_t) is 80


def posix_spawn(
    path: str,
    argv: Sequence[str],
    env: Iterable[tuple[str, str]],
    *,
    dup2: Iterable[tuple[int, int]] = (),
    pgroup: int | None = None,
    sigdefault: Iterable[int] = (),
    sigmask: Iterable[int] = (),
    setsid: bool = False,
    rehearse: bool = False,
) -> int:
    """posix_spawn(3): ``(fd, target)`` pairs dup2'd, ``sigdefault`` reset to SIG_DFL, the
    signal mask set to ``sigmask``, a new process group ``pgroup`` (0: its own) unless
    None, a new session with ``setsid``. Returns the child's pid; raises OSError with the
    exec errno. ``rehearse``: everything but the spawn itself (returns 0; ``spare``)."""
    attr = ctypes.create_string_buffer(_SPAWNATTR_SIZE)
    actions = ctypes.create_string_buffer(_FILE_ACTIONS_SIZE)
    _libc.posix_spawnattr_init(attr)
    _libc.posix_spawn_file_actions_init(actions)
    try:
        flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK
        if setsid:
            flags |= POSIX_SPAWN_SETSID
        elif pgroup is not None:
            flags |= POSIX_SPAWN_SETPGROUP
            _libc.posix_spawnattr_setpgroup(attr, ctypes.c_int(pgroup))
        default, mask = _sigset(sigdefault), _sigset(sigmask)
        _libc.posix_spawnattr_setsigdefault(attr, ctypes.byref(default))
        _libc.posix_spawnattr_setsigmask(attr, ctypes.byref(mask))
        _libc.posix_spawnattr_setflags(attr, ctypes.c_short(flags))
        for fd, target in dup2:
            err = _libc.posix_spawn_file_actions_adddup2(actions, fd, target)
            if err:
                raise OSError(err, os.strerror(err))
        words = [os.fsencode(a) for a in argv]
        c_argv = (ctypes.c_char_p * (len(words) + 1))(*words, None)
        pairs = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env]
        c_env = (ctypes.c_char_p * (len(pairs) + 1))(*pairs, None)
        pid = ctypes.c_int(0)
        if rehearse:
            return 0
        err = _libc.posix_spawn(ctypes.byref(pid), os.fsencode(path), actions, attr, c_argv, c_env)
        if err:
            raise OSError(err, os.strerror(err), path)
        return pid.value
    finally:
        _libc.posix_spawn_file_actions_destroy(actions)
        _libc.posix_spawnattr_destroy(attr)


class SigInfo:
    """The fields of one signalfd_siginfo record that pidns uses (a plain class: importing
    typing for a NamedTuple would cost `pidns run` milliseconds of start-up)."""

    __slots__ = ("code", "pid", "signo", "uid", "value")

    def __init__(self, signo: int, code: int, pid: int, uid: int, value: int = 0) -> None:
        self.signo = signo
        self.code = code  # SI_USER, SI_KERNEL, SI_QUEUE, CLD_EXITED, ...
        self.pid = pid  # the sender, in the reader's pid namespace; 0 when not visible there
        self.uid = uid
        self.value = value  # the sigval of an SI_QUEUE signal (as an unsigned 64-bit word)

    def __repr__(self) -> str:
        return f"SigInfo(signo={self.signo}, code={self.code}, pid={self.pid}, uid={self.uid})"


def read_signals(fd: int) -> list[SigInfo]:
    """Every signal pending on a non-blocking signalfd ([] when there is none)."""
    found: list[SigInfo] = []
    while True:
        try:
            data = os.read(fd, SIGINFO_SIZE * 16)
        except BlockingIOError:
            return found
        for offset in range(0, len(data), SIGINFO_SIZE):
            signo, _errno, code, pid, uid, value = _SIGINFO.unpack_from(data, offset)
            found.append(SigInfo(signo, code, pid, uid, value))
        if len(data) < SIGINFO_SIZE * 16:
            return found


__all__ = [
    "clone",
    "clone_bare",
    "fsconfig",
    "fsmount",
    "fsopen",
    "mount",
    "move_mount",
    "ns_ioctl",
    "pidfd_open",
    "pidfd_send_signal",
    "posix_spawn",
    "prctl",
    "read_signals",
    "set_child_subreaper",
    "set_parent_death_signal",
    "setns",
    "signalfd",
    "umount",
    "unshare",
]
