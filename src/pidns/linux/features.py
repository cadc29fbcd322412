"""What this kernel has: the one table of the kernel features pidns uses that some releases
lack, each probed once, lazily, and cached (as CPython's subprocess probes posix_spawn).

Every row names the feature, the release it appeared in, and the idiom pidns falls back
to without it. A probe tells *missing* from *failing*: a feature is missing when the
kernel does not know the call (ENOSYS, ENOTTY for an ioctl, ENOENT for a /proc link) or a
seccomp filter refuses it (EPERM where the probe's own arguments leave no other cause of
EPERM). Any other error is the machine's, not the kernel release's: the probe raises it
and caches nothing, so the next caller probes again.

``PIDNS_FEATURES_MISSING=name,name`` (or ``all``) makes pidns treat those features as
missing without probing them: how the tests exercise every fallback on today's kernel.

Use::

    if features.has("pidfd_open"): ...
    features.require("clone3")       # raises Missing: "clone3 (Linux 5.3) is missing ..."
"""

from __future__ import annotations

import errno
import fcntl
import os

from pidns.core import flags as cf
from pidns.core.abi import SYS_CLONE, SYS_CLONE3, SYS_CLOSE_RANGE, SYS_FSCONFIG, WALL
from pidns.linux import nsfs

TYPE_CHECKING = False  # typing costs start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable


# What a kernel that lacks a call answers, and what a seccomp filter answers for it.
_MISSING_ERRNOS = (errno.ENOSYS, errno.EPERM)

ENV = "PIDNS_FEATURES_MISSING"


class Feature:
    """One row: ``name`` (what pidns calls it), ``since`` (the first release that has it),
    ``fallback`` (what pidns does without it, or "" when nothing can stand in)."""

    __slots__ = ("fallback", "name", "probe", "since", "what")

    def __init__(
        self, name: str, since: str, what: str, fallback: str, probe: Callable[[], bool]
    ) -> None:
        self.name = name
        self.since = since
        self.what = what
        self.fallback = fallback
        self.probe = probe

    def __repr__(self) -> str:
        return f"Feature({self.name!r}, since={self.since!r})"


class Missing(OSError):
    """A feature the running kernel lacks, with no fallback for what was asked: the one
    line a command prints before exiting 125."""

    def __init__(self, feature: Feature, needed_for: str = "") -> None:
        self.feature = feature
        purpose = f", needed for {needed_for}" if needed_for else ""
        super().__init__(
            errno.ENOSYS,
            f"{feature.name} ({feature.what}, Linux {feature.since}) is missing on this "
            f"kernel ({release()}){purpose}",
        )

    def __str__(self) -> str:
        return str(self.strerror)


def _missing(error: OSError, also: tuple[int, ...] = ()) -> bool:
    """The probe's call failed: True if that means "absent", else re-raise."""
    if error.errno in _MISSING_ERRNOS or error.errno in also:
        return True
    raise error


def _syscall(number: int, *args: int) -> int:
    """A raw system call with integer arguments: its result, or -errno."""
    import ctypes  # noqa: PLC0415 - ctypes costs start-up time; only probes need it

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args)))
    return -ctypes.get_errno() if result == -1 else result


def _known_syscall(number: int, *args: int, present: tuple[int, ...] = ()) -> bool:
    """True if the kernel knows syscall ``number``: the call (with arguments chosen so it
    does nothing) returns, or fails with an errno in ``present``."""
    result = _syscall(number, *args)
    if result >= 0 or -result in present:
        return True
    if -result in _MISSING_ERRNOS:
        return False
    raise OSError(-result, os.strerror(-result))


# ---- the probes --------------------------------------------------------------------------


def _probe_signalfd() -> bool:
    # fs/signalfd.c (signalfd4: 2.6.27): an fd for an empty mask, closed at once.
    from pidns.linux import syscalls  # noqa: PLC0415 - ctypes costs start-up time

    try:
        fd = syscalls.signalfd(())
    except OSError as e:
        return not _missing(e)
    os.close(fd)
    return True


def _probe_pidfd_open() -> bool:
    # kernel/pid.c:pidfd_open (5.3): our own pid always has a pidfd.
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError as e:
        return not _missing(e)
    os.close(fd)
    return True


def _probe_pidfd_thread() -> bool:
    # kernel/pid.c:pidfd_open (6.9): PIDFD_THREAD (O_EXCL) is a known flag; before it every
    # flag but PIDFD_NONBLOCK is EINVAL. Our own pid always has a pidfd.
    if not has("pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid(), os.O_EXCL)
    except OSError as e:
        return not _missing(e, (errno.EINVAL,))
    os.close(fd)
    return True


def _probe_pidfd_get_info() -> bool:
    # fs/pidfs.c:pidfd_ioctl (6.13): PIDFD_GET_INFO on a pidfd of our own pid fills in
    # its pid fields; before it the command is unknown (ENOTTY: no pidfs ioctl at all
    # before 6.9, none of this number after).
    if not has("pidfd_open"):
        return False
    from pidns.linux import syscalls  # noqa: PLC0415 - ctypes costs start-up time

    fd = os.pidfd_open(os.getpid())
    try:
        syscalls.pidfd_get_info(fd)
    except OSError as e:
        return not _missing(e, (errno.ENOTTY, errno.EINVAL))
    finally:
        os.close(fd)
    return True


def _probe_clone3() -> bool:
    # kernel/fork.c:copy_clone_args_from_user (5.3): a size below CLONE_ARGS_SIZE_VER0 is
    # EINVAL before anything is copied or created.
    return _known_syscall(SYS_CLONE3, 0, 0, present=(errno.EINVAL,))


def _probe_set_tid() -> bool:
    # kernel/fork.c:copy_clone_args_from_user: a struct of CLONE_ARGS_SIZE_VER1 (80 bytes)
    # with set_tid_size 1 and no set_tid array is EINVAL from 5.5 on; 5.3 and 5.4 know
    # only VER0 and refuse the non-zero tail with E2BIG. Nothing is created either way.
    if not has("clone3"):
        return False
    import ctypes  # noqa: PLC0415 - ctypes costs start-up time; only probes need it

    args = (ctypes.c_uint64 * 10)()
    args[4] = 17  # exit_signal SIGCHLD
    args[9] = 1  # set_tid_size, with set_tid (args[8]) NULL
    result = _syscall(SYS_CLONE3, ctypes.addressof(args), ctypes.sizeof(args))
    if result == 0:  # never: no kernel creates a child from this block
        os._exit(0)
    if result > 0 or -result == errno.EINVAL:
        return True
    if -result in (errno.E2BIG, *_MISSING_ERRNOS):
        return False
    raise OSError(-result, os.strerror(-result))


def _probe_waitid_pidfd() -> bool:
    # kernel/exit.c:kernel_waitid (5.4): P_PIDFD on an fd that is no pidfd is EBADF;
    # older kernels refuse the unknown idtype with EINVAL first.
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    except OSError as e:
        if e.errno == errno.EBADF:
            return True
        return not _missing(e, also=(errno.EINVAL,))
    finally:
        os.close(fd)
    return True


def _probe_setns_pidfd() -> bool:
    # kernel/nsproxy.c:setns (5.8): a pidfd of a reaped child passes check_setns_flags
    # and fails validate_nsset with ESRCH, before any capability check; an older setns
    # takes a pidfd for no namespace file: EINVAL. Joins nothing either way. The child is
    # made by clone(2) with exit signal 0 (not clone3, which seccomp filters refuse more
    # often), so no SIGCHLD reaches the caller and only __WALL reaps it: an init's own
    # reaping loop cannot take it first.
    if not has("pidfd_open"):
        return False
    import ctypes  # noqa: PLC0415 - ctypes costs start-up time; only probes need it

    from pidns.linux import syscalls  # noqa: PLC0415 - ctypes, as above

    libc = ctypes.PyDLL(None, use_errno=True)  # the GIL stays held across the clone
    libc.syscall.restype = ctypes.c_long
    pid = int(libc.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_long(0), ctypes.c_long(0)))
    if pid == 0:
        os._exit(0)
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    try:
        fd = os.pidfd_open(pid)
    finally:
        os.waitpid(pid, WALL)
    try:
        syscalls.setns(fd, cf.NEWUTS)
    except OSError as e:
        if e.errno == errno.ESRCH:
            return True
        return not _missing(e, also=(errno.EINVAL,))
    finally:
        os.close(fd)
    return True  # a joined own-namespace: present


def _ns_fd() -> int:
    return os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)


def _probe_ns_ioctl(request: Callable[[int], object]) -> bool:
    fd = _ns_fd()
    try:
        request(fd)
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.EPERM):
            return True  # the ioctl exists and refused these arguments
        if e.errno in (errno.ENOTTY, errno.EINVAL, errno.ENOSYS):
            return False  # fs/nsfs.c:ns_ioctl does not know the request (or a filter)
        raise
    finally:
        os.close(fd)
    return True


def _probe_ns_get_parent() -> bool:
    # fs/nsfs.c:ns_ioctl (4.9): NS_GET_USERNS came in the same commit as NS_GET_PARENT and,
    # unlike it, answers our own namespace even at the root (NS_GET_PARENT is EPERM there).
    return _probe_ns_ioctl(lambda fd: os.close(int(fcntl.ioctl(fd, nsfs.NS_GET_USERNS))))


def _probe_ns_get_nstype() -> bool:
    # fs/nsfs.c:ns_ioctl (4.11): the type of our own pid namespace.
    return _probe_ns_ioctl(lambda fd: fcntl.ioctl(fd, nsfs.NS_GET_NSTYPE))


def _probe_ns_get_pid() -> bool:
    # fs/nsfs.c:ns_ioctl (6.11): our own pid in our own namespace.
    return _probe_ns_ioctl(lambda fd: nsfs.pid_in(fd, os.getpid()))


def _probe_nspid() -> bool:
    # fs/proc/array.c:task_state (4.1) writes the NSpid line.
    with open("/proc/self/status", "rb") as f:
        return any(line.startswith(b"NSpid:") for line in f)


def _probe_pid_for_children() -> bool:
    # fs/proc/namespaces.c (4.12): the link sits beside ns/pid.
    try:
        os.readlink("/proc/self/ns/pid_for_children")
    except FileNotFoundError:
        return False
    return True


def _probe_close_range() -> bool:
    # fs/file.c:close_range (5.9): a range above every open fd closes nothing.
    return _known_syscall(SYS_CLOSE_RANGE, 2**31 - 2, 2**31 - 2, 0)


def _probe_new_mount_api() -> bool:
    # fs/fsopen.c:fsconfig (5.2, with fsopen, fsmount, move_mount): a negative fd is
    # EINVAL before any capability check (fsopen itself asks for CAP_SYS_ADMIN first).
    return _known_syscall(SYS_FSCONFIG, -1, 0, 0, 0, 0, present=(errno.EINVAL, errno.EBADF))


def _probe_per_ns_pid_max() -> bool:
    # kernel/pid.c (6.14, "pid: allow pid_max to be set per pid namespace"): nothing a
    # process can ask without making a namespace tells it apart, so the release decides.
    return release_tuple() >= (6, 14)


# ---- the table ---------------------------------------------------------------------------

FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature(
            "pidfd_open",
            "5.3",
            "pidfd_open(2)",
            "watch a pid with waitpid/kill(pid, 0) and the parent-death signal",
            _probe_pidfd_open,
        ),
        Feature(
            "pidfd_thread",
            "6.9",
            "pidfd_open's PIDFD_THREAD",
            "",  # the real backend's puppet threads need a pidfd of each thread
            _probe_pidfd_thread,
        ),
        Feature(
            "pidfd_get_info",
            "6.13",
            "the PIDFD_GET_INFO ioctl",
            "",  # the real backend's pidfd_info step is unsupported without it
            _probe_pidfd_get_info,
        ),
        Feature(
            "clone3",
            "5.3",
            "clone3(2)",
            "raw clone(2) (os.fork, or the clone syscall with the flags clone(2) takes)",
            _probe_clone3,
        ),
        Feature("set_tid", "5.5", "clone3's set_tid", "", _probe_set_tid),
        Feature(
            "nspid",
            "4.1",
            "NSpid in /proc/PID/status",
            "pids per level from the runner's own steps",
            _probe_nspid,
        ),
        Feature(
            "ns_get_parent",
            "4.9",
            "the NS_GET_PARENT/NS_GET_USERNS ioctls",
            "namespace parents tracked from the steps that made them",
            _probe_ns_get_parent,
        ),
        Feature(
            "ns_get_nstype",
            "4.11",
            "the NS_GET_NSTYPE ioctl",
            "none for `pidns pid` (it tells a pid namespace file from others with it)",
            _probe_ns_get_nstype,
        ),
        Feature(
            "pid_for_children",
            "4.12",
            "the /proc/PID/ns/pid_for_children link",
            "the namespace a process's children get, tracked from its unshare/setns",
            _probe_pid_for_children,
        ),
        Feature(
            "waitid_pidfd",
            "5.4",
            "waitid(P_PIDFD)",
            "waitpid(pid)",
            _probe_waitid_pidfd,
        ),
        Feature(
            "setns_pidfd",
            "5.8",
            "setns(2) through a pidfd",
            "setns(2) with each /proc/PID/ns/* file",
            _probe_setns_pidfd,
        ),
        Feature(
            "ns_get_pid",
            "6.11",
            "the NS_GET_PID_*_PIDNS ioctls",
            "pids translated through NSpid",
            _probe_ns_get_pid,
        ),
        Feature(
            "per_ns_pid_max",
            "6.14",
            "a pid_max per pid namespace",
            "one global pid_max",
            _probe_per_ns_pid_max,
        ),
        Feature(
            "signalfd",
            "2.6.27",
            "signalfd4(2)",
            "",  # the launcher and the init read every signal from one
            _probe_signalfd,
        ),
        Feature(
            "close_range",
            "5.9",
            "close_range(2)",
            "os.closerange (close(2) on each fd)",
            _probe_close_range,
        ),
        Feature(
            "new_mount_api",
            "5.2",
            "fsopen/fsmount/move_mount",
            "mount(2)",
            _probe_new_mount_api,
        ),
    )
}

_found: dict[str, bool] = {}


def _forced_missing() -> frozenset[str]:
    names = os.environ.get(ENV, "")
    if names.strip() == "all":
        return frozenset(FEATURES)
    return frozenset(n.strip() for n in names.split(",") if n.strip())


def feature(name: str) -> Feature:
    """The row named ``name``; KeyError names the known ones."""
    try:
        return FEATURES[name]
    except KeyError:
        raise KeyError(f"unknown kernel feature {name!r} (known: {', '.join(FEATURES)})") from None


def has(name: str) -> bool:
    """Whether the running kernel has feature ``name``: probed on first use, then cached.

    Raises OSError when the probe itself fails for a reason other than the feature's
    absence (e.g. no /proc, EMFILE); nothing is cached then."""
    found = _found.get(name)
    if found is None:
        row = feature(name)
        found = False if name in _forced_missing() else row.probe()
        _found[name] = found
    return found


def forced(name: str) -> bool:
    """Whether ``name`` counts as missing only because PIDNS_FEATURES_MISSING says so (the
    kernel may well have it: a call that needs it must not be made to find out)."""
    return name in _forced_missing()


def require(name: str, needed_for: str = "") -> None:
    """Raise ``Missing`` unless the kernel has feature ``name``."""
    if not has(name):
        raise Missing(FEATURES[name], needed_for)


def first_missing(names: tuple[str, ...]) -> Feature | None:
    """The first of ``names`` the running kernel lacks, or None if it has them all."""
    for name in names:
        if not has(name):
            return FEATURES[name]
    return None


def unsupported(row: Feature, needed_for: str) -> str:
    """The one line for something that cannot run here: ``unsupported on 3.8.13: ...``."""
    return f"unsupported on {release()}: {needed_for} needs {row.what} (Linux {row.since})"


def missing() -> list[Feature]:
    """Every feature the running kernel lacks (probing each)."""
    return [row for name, row in FEATURES.items() if not has(name)]


def forget() -> None:
    """Drop every cached answer (for tests that change PIDNS_FEATURES_MISSING)."""
    _found.clear()


def release() -> str:
    """The running kernel's upstream release: uname(2)'s (``6.18.44-fc-v1098``), or the
    upstream one its version names where the release does not (Debian's
    ``6.1.0-50-amd64`` is ``6.1.176``: rules change within a stable line, profiles.py)."""
    uname = os.uname()
    return upstream_release(uname.release, uname.version)


def upstream_release(release: str, version: str) -> str:
    """``("6.1.0-50-amd64", "#1 SMP PREEMPT_DYNAMIC Debian 6.1.176-1 (2026-07-02)")`` ->
    ``"6.1.176"``: Debian keeps the stable patch out of the release (its ``.0`` is a
    placeholder) and puts the package's upstream version in ``uname -v``."""
    _, found, rest = version.partition("Debian ")
    upstream = rest.split("-", 1)[0].split(" ", 1)[0]
    parts = upstream.split(".")
    same_line = parts[:2] == release.split(".")[:2]
    if found and same_line and len(parts) == 3 and all(part.isdigit() for part in parts):
        return upstream
    return release


def release_tuple(text: str | None = None) -> tuple[int, ...]:
    """``"6.1.0-41-amd64"`` -> ``(6, 1, 0)``: the leading dotted numbers of a release."""
    numbers: list[int] = []
    for part in (release() if text is None else text).split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(numbers)


__all__ = [
    "ENV",
    "FEATURES",
    "Feature",
    "Missing",
    "feature",
    "first_missing",
    "forget",
    "has",
    "missing",
    "release",
    "release_tuple",
    "require",
    "unsupported",
    "upstream_release",
]


if __name__ == "__main__":  # python3 -m pidns.linux.features: this kernel's rows, as JSON
    import json

    print(json.dumps({"release": release(), "features": {n: has(n) for n in FEATURES}}))
