"""Fault injection: the real tool, with each thing it relies on taken away in turn.

Each case runs ``pidns run`` (and the Python API) in a forked child of pytest that first
makes its environment hostile: a seccomp filter refusing one system call of the setup
(ENOSYS, as an old kernel answers, and EPERM, as a container's profile does), no /proc,
a masked /proc, a full disk, a read-only /tmp (in a private mount namespace of the child),
closed stdio, every signal ignored or blocked, as root and as uid 65534.

What every case must show, whatever the environment: an answer within the time limit
(no hang), the command's own status or a documented one (125 for setup, with one line
that names the cause, never "internal error"), no traceback, nothing left running (the
case's processes are found by their working directory), the host's mounts unchanged.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable

import pytest

import confinement
import pidns
from pidns.cli import main as cli_main
from pidns.core import flags as cf
from pidns.linux import mounts, syscalls, userns
from test_run_support import Marker, cli_captured, in_child, needs_root

pytestmark = [pytest.mark.real, needs_root]

# x86_64 numbers (arch/x86/entry/syscalls/syscall_64.tbl) of what pidns run and the API
# call between their start and the command's exec.
SETUP_SYSCALLS = {
    "clone3": 435,
    "clone": 56,
    "pidfd_open": 434,
    "pidfd_send_signal": 424,
    "signalfd4": 289,
    "unshare": 272,
    "setns": 308,
    "mount": 165,
    "pipe2": 293,
    "prctl": 157,
    "setpgid": 109,
    "wait4": 61,
    "waitid": 247,
    "ioctl": 16,
    "close_range": 436,
    "fsopen": 430,
    "fsmount": 432,
    "move_mount": 429,
    "kill": 62,
    "rt_sigprocmask": 14,
}
ERRNOS = {"ENOSYS": errno.ENOSYS, "EPERM": errno.EPERM}
USERS = {"root": False, "nobody": True}
COMMAND_STATUS = 3  # what the command exits with: a case either runs it or fails setup
COMMAND = ["sh", "-c", f"exit {COMMAND_STATUS}"]
LIMIT = 30.0  # seconds a case may take before it counts as a hang

needs_seccomp = pytest.mark.skipif(
    not confinement.seccomp_supported, reason="the test filter is written for x86_64"
)


def _mountinfo() -> list[tuple[str, str]]:
    """The host's mounts (mount point, options), as pytest's own process sees them."""
    with open("/proc/self/mountinfo") as f:
        return sorted((line.split()[4], line.split()[5]) for line in f)


def _check_outcome(status: int, out: str, err: str, *, allowed: tuple[int, ...] = ()) -> None:
    """The one rule of every case: the command's status, or 125 with one line of cause."""
    assert "Traceback" not in out + err, err
    assert "internal error" not in err, err
    if status == COMMAND_STATUS or status in allowed:
        return
    assert status == 125, f"status {status}: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pidns run: "), err


def _run_case(
    prepare: Callable[[], None],
    *,
    nobody: bool,
    args: tuple[str, ...] = (),
    api: bool = False,
    allowed: tuple[int, ...] = (),
) -> None:
    """``pidns run ARGS -- COMMAND`` (or pidns.run) after ``prepare()`` in a child."""
    before = _mountinfo()
    with Marker() as marker:

        def body() -> tuple[int, str, str]:
            os.chdir(marker.path)
            prepare()
            if not api:
                return cli_captured(["run", *args, "--", *COMMAND])
            try:
                return pidns.run(COMMAND).returncode, "", ""
            except OSError as exc:  # SetupError, or the exec's own errno
                text = str(exc)
                assert "\n" not in text and text, repr(text)
                return 125, "", f"pidns run: {text}\n"

        status, out, err = in_child(body, nobody=nobody, timeout=LIMIT)
        _check_outcome(status, out, err, allowed=allowed)
        assert marker.survivors() == [], "processes left running"
    assert _mountinfo() == before, "the host's mounts changed"


# -- each setup system call refused ----------------------------------------------------


@needs_seccomp
@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("err", ERRNOS)
@pytest.mark.parametrize("name", SETUP_SYSCALLS)
def test_run_with_a_setup_syscall_refused(name: str, err: str, user: str) -> None:
    _run_case(
        lambda: confinement.seccomp_refuse({SETUP_SYSCALLS[name]: ERRNOS[err]}),
        nobody=USERS[user],
    )


@needs_seccomp
@pytest.mark.parametrize("err", ERRNOS)
@pytest.mark.parametrize("name", SETUP_SYSCALLS)
def test_the_api_with_a_setup_syscall_refused(name: str, err: str) -> None:
    _run_case(
        lambda: confinement.seccomp_refuse({SETUP_SYSCALLS[name]: ERRNOS[err]}),
        nobody=False,
        api=True,
    )


@needs_seccomp
@pytest.mark.parametrize("err", ERRNOS)
@pytest.mark.parametrize("name", ["clone3", "pidfd_open", "signalfd4", "mount", "prctl"])
def test_run_as_pid_1_with_a_setup_syscall_refused(name: str, err: str) -> None:
    _run_case(
        lambda: confinement.seccomp_refuse({SETUP_SYSCALLS[name]: ERRNOS[err]}),
        nobody=False,
        args=("--as-pid-1",),
    )


# -- hostile environments ----------------------------------------------------------------


def _private_mounts() -> None:
    if os.geteuid() != 0:  # as 65534: root of a user namespace of its own first
        uid, gid = os.getuid(), os.getgid()
        syscalls.unshare(cf.NEWUSER)
        userns.write_id_maps(userns.MAP_ROOT, uid, gid)
    syscalls.unshare(cf.NEWNS)
    mounts.make_private_recursive()


def _no_proc() -> None:
    _private_mounts()
    if os.geteuid() == 0 and os.getuid() == 0 and not _in_own_userns():
        syscalls.umount("/proc", syscalls.MNT_DETACH)
    else:  # a mount locked by a more privileged namespace cannot go: cover it instead
        syscalls.mount("tmpfs", "/proc", "tmpfs", syscalls.MS_RDONLY)


def _in_own_userns() -> bool:
    with open("/proc/self/uid_map") as f:
        return f.read().split()[:3] != ["0", "0", "4294967295"]


def _masked_proc() -> None:
    if os.geteuid() != 0:
        _private_mounts()
        for path in confinement.MASKED:
            if os.path.isdir(path):
                syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY)
    else:
        confinement.mask_proc()
    # as container engines also do: the whole of /proc/sys read-only
    syscalls.mount("/proc/sys", "/proc/sys", None, syscalls.MS_BIND)
    syscalls.mount(
        None, "/proc/sys", None, syscalls.MS_BIND | syscalls.MS_REMOUNT | syscalls.MS_RDONLY
    )


def _read_only_tmp() -> None:
    _private_mounts()
    syscalls.mount("tmpfs", "/tmp", "tmpfs", syscalls.MS_RDONLY)


def _full_disk() -> None:
    """A tiny tmpfs over /tmp, filled."""
    _private_mounts()
    syscalls.mount("tmpfs", "/tmp", "tmpfs", 0, "size=16k")
    fd = os.open("/tmp/fill", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


def _stdout_on_full_device() -> None:
    fd = os.open("/dev/full", os.O_WRONLY)
    os.dup2(fd, 1)
    os.close(fd)


def _ignore_every_signal() -> None:
    for sig in signal.valid_signals():
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_IGN)


def _block_every_signal() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())


ENVIRONMENTS: dict[str, Callable[[], None]] = {
    "no /proc": _no_proc,
    "masked /proc": _masked_proc,
    "read-only /tmp": _read_only_tmp,
    "full disk": _full_disk,
    "stdout on /dev/full": _stdout_on_full_device,
    "every signal ignored": _ignore_every_signal,
    "every signal blocked": _block_every_signal,
}


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_run_in_a_hostile_environment(environment: str, user: str) -> None:
    _run_case(ENVIRONMENTS[environment], nobody=USERS[user])


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_api_in_a_hostile_environment(environment: str) -> None:
    _run_case(ENVIRONMENTS[environment], nobody=False, api=True)


@pytest.mark.parametrize("user", USERS)
@pytest.mark.parametrize("closed", [(0,), (1,), (2,), (0, 1, 2)])
def test_run_with_stdio_closed(closed: tuple[int, ...], user: str) -> None:
    """No capture possible: the status alone, and the one line when fd 2 is open."""
    before = _mountinfo()
    with Marker() as marker:

        def body() -> int:
            os.chdir(marker.path)
            for fd in closed:
                os.close(fd)
            return cli_main(["run", "--", *COMMAND])

        assert in_child(body, nobody=USERS[user], timeout=LIMIT) == COMMAND_STATUS
        assert marker.survivors() == []
    assert _mountinfo() == before
