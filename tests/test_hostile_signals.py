"""Hostile signal states and job control: what a caller inherits must not change pidns.

A caller may ignore SIGCHLD, HUP, INT (nohup, a daemon, ``cmd &`` in sh) or block
signals, and pass that on through exec. The launcher and the init must work regardless,
and the command must get exactly what exec would have given it (subprocess's
restore_signals rule for the two Python itself ignores), never glibc's 32 and 33 ignored.
A signal sent to the launcher's process group reaches the command once. Job control and a
terminal's hangup: the job stops and continues as one, and nothing survives a hangup.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import pytest

import pidns
from pidns.linux import syscalls
from test_run_support import (
    PIDNS,
    Marker,
    Terminal,
    children,
    in_child,
    needs_root,
    read_line,
    state,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]

STATUS_FIELDS = "grep -E '^Sig(Ign|Blk)' /proc/self/status"
COUNTED = signal.SIGRTMIN + 3  # real-time: every copy is queued, none merges with another
SENTINEL = signal.SIGRTMIN + 4  # sent after the counted ones, along the same path


def _ignore_glibc_internal_signals() -> None:
    """What glibc's posix_spawn leaves in a child (make runs its recipes so): 32 and 33
    ignored, set here by rt_sigaction's number, as glibc's sigaction refuses them."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    action = (ctypes.c_ulong * 4)(1, 0, 0, 0)  # SIG_IGN, no flags, no restorer, no mask
    for sig in syscalls.GLIBC_INTERNAL_SIGNALS:
        assert libc.syscall(13, sig, ctypes.byref(action), None, 8) == 0, ctypes.get_errno()


def _caller_state(
    ignore: tuple[int, ...] = (), block: tuple[int, ...] = (), internal_ignored: bool = False
) -> Callable[[], None]:
    """A preexec_fn giving the child (the caller of pidns) this signal state, inherited
    by exec as a daemon or a nohup-like wrapper would pass it on; ``internal_ignored``:
    glibc's 32 and 33 ignored too, as under make, else reset, whatever the test runner
    inherited."""

    def prepare() -> None:
        syscalls.set_parent_death_signal(signal.SIGKILL)
        if internal_ignored:
            _ignore_glibc_internal_signals()
        else:
            syscalls.reset_internal_signals()
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, block)

    return prepare


def _run(
    args: list[str], prepare: Callable[[], None], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        start_new_session=True,
        preexec_fn=prepare,
    )


def test_a_caller_ignoring_sigchld_gets_the_commands_status() -> None:
    prepare = _caller_state(ignore=(signal.SIGCHLD,))
    result = _run([*PIDNS, "run", "--", "sh", "-c", "exit 3"], prepare)
    assert (result.returncode, result.stderr) == (3, "")
    result = _run([*PIDNS, "run", "--as-pid-1", "--", "sh", "-c", "exit 4"], prepare)
    assert (result.returncode, result.stderr) == (4, "")


def test_a_caller_ignoring_sigchld_can_still_stop_a_long_command() -> None:
    with Marker() as marker:
        launcher = subprocess.Popen(
            [*PIDNS, "run", "--", "sh", "-c", "echo ready; exec sleep 1000"],
            stdout=subprocess.PIPE,
            cwd=marker.path,
            start_new_session=True,
            preexec_fn=_caller_state(ignore=(signal.SIGCHLD, signal.SIGTERM)),  # noqa: PLW1509
        )
        assert launcher.stdout is not None
        assert read_line(launcher.stdout.fileno()) == "ready\n"
        launcher.send_signal(signal.SIGINT)  # the command inherited TERM ignored, not INT
        assert launcher.wait(timeout=20) == 128 + signal.SIGINT
        launcher.stdout.close()
        assert marker.survivors() == []


def test_the_api_with_sigchld_ignored_gets_the_commands_status() -> None:
    def body() -> tuple[int, int]:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        first = pidns.run(["sh", "-c", "exit 3"]).returncode
        with pidns.Popen(["sh", "-c", "exit 5"]) as proc:
            second = proc.wait(timeout=20)
        return first, second

    assert in_child(body, timeout=40) == (3, 5)


INTERNAL_BITS = 0b11 << 31  # signals 32 and 33 in a /proc/PID/status mask


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="rt_sigaction's number is x86-64's")
@pytest.mark.parametrize("internal_ignored", [False, True], ids=["plain", "under-make"])
@pytest.mark.parametrize("mode", [[], ["--as-pid-1"], ["--no-mount-proc"]])
def test_the_command_inherits_the_callers_signal_state_as_exec_would(
    mode: list[str], internal_ignored: bool
) -> None:
    prepare = _caller_state(
        ignore=(signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGCHLD),
        block=(signal.SIGUSR2, signal.SIGRTMIN + 5),
        internal_ignored=internal_ignored,
    )
    direct = _run(["sh", "-c", f"exec {STATUS_FIELDS}"], prepare)
    through = _run([*PIDNS, "run", *mode, "--", "sh", "-c", f"exec {STATUS_FIELDS}"], prepare)
    assert through.returncode == 0, through.stderr
    assert bool(_mask(direct.stdout, "SigIgn") & INTERNAL_BITS) == internal_ignored
    for field in ("SigBlk", "SigIgn"):  # exec's inheritance, less glibc's two signals
        assert _mask(through.stdout, field) == _mask(direct.stdout, field) & ~INTERNAL_BITS
    assert _mask(through.stdout, "SigIgn") & (1 << (signal.SIGHUP - 1))


def _mask(status: str, field: str) -> int:
    return int(status.split(f"{field}:")[1].split(maxsplit=1)[0], 16)


def test_a_plain_caller_gives_the_command_a_clean_signal_state() -> None:
    result = _run([*PIDNS, "run", "--", "sh", "-c", f"exec {STATUS_FIELDS}"], _caller_state())
    assert result.stdout == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"


def test_the_api_gives_the_command_the_callers_signal_state() -> None:
    def body() -> str:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])
        read_end, write_end = os.pipe()
        done = pidns.run(["sh", "-c", f"exec {STATUS_FIELDS}"], stdout=write_end)
        os.close(write_end)
        assert done.returncode == 0
        with os.fdopen(read_end) as f:
            return f.read()

    usr1, usr2 = 1 << (signal.SIGUSR1 - 1), 1 << (signal.SIGUSR2 - 1)
    assert in_child(body) == f"SigBlk:\t{usr2:016x}\nSigIgn:\t{usr1:016x}\n"


# -- one signal, delivered once ---------------------------------------------------------

# Counts the copies of COUNTED it gets before SENTINEL, which comes after them on the
# launcher's path. Both stay blocked, so that none is lost or merged.
COUNTER = (
    "import signal, sys\n"
    f"signal.pthread_sigmask(signal.SIG_BLOCK, [{COUNTED}, {SENTINEL}])\n"
    "print('ready', flush=True)\n"
    f"signal.sigwait([{SENTINEL}])\n"
    "n = 0\n"
    f"while signal.sigtimedwait([{COUNTED}], 0): n += 1\n"
    "print(n, flush=True)\n"
)


def test_a_signal_to_the_launchers_process_group_reaches_the_command_once() -> None:
    with Marker() as marker:
        launcher = subprocess.Popen(
            [*PIDNS, "run", "--", sys.executable, "-c", COUNTER],
            stdout=subprocess.PIPE,
            cwd=marker.path,
            start_new_session=True,  # the launcher leads its group, as under a shell's job
            preexec_fn=_caller_state(),  # noqa: PLW1509
        )
        assert launcher.stdout is not None
        fd = launcher.stdout.fileno()
        assert read_line(fd, timeout=20) == "ready\n"
        os.killpg(launcher.pid, COUNTED)  # kill -RTMIN+3 -PGID, as timeout(1) would
        os.kill(launcher.pid, SENTINEL)
        assert read_line(fd, timeout=20) == "1\n"
        assert launcher.wait(timeout=20) == 0
        launcher.stdout.close()
        assert marker.survivors() == []


def test_a_signal_to_the_api_callers_process_group_reaches_the_command_once() -> None:
    def body() -> str:
        os.setpgid(0, 0)
        signal.pthread_sigmask(signal.SIG_BLOCK, [COUNTED])  # the caller is in the group too
        read_end, write_end = os.pipe()
        with pidns.Popen([sys.executable, "-c", COUNTER], stdout=write_end) as proc:
            os.close(write_end)
            assert read_line(read_end, timeout=20) == "ready\n"
            os.killpg(0, COUNTED)
            proc.send_signal(SENTINEL)
            count = read_line(read_end, timeout=20)
            proc.wait(timeout=20)
        os.close(read_end)
        return count

    assert in_child(body, timeout=60) == "1\n"


# -- job control and hangups -------------------------------------------------------------


def _launcher_of(terminal: Terminal) -> int:
    assert wait_for(lambda: len(children(terminal.pid)) == 1)
    return children(terminal.pid)[0]


def test_fg_after_ctrl_z_gives_the_terminal_back_before_the_command_runs() -> None:
    with Marker() as marker:
        terminal = Terminal(cwd=marker.path)
        try:
            terminal.send(f"{' '.join(PIDNS)} run -- cat\n")
            assert wait_for(lambda: len(marker.processes("cat")) == 1)
            (cat,) = marker.processes("cat")
            assert wait_for(lambda: terminal.foreground_group() == cat)
            terminal.send("one\n")
            terminal.expect(r"one\r?\n.*one")  # the echo, then cat's copy
            terminal.send("\x1a")
            terminal.expect(r"Stopped")
            terminal.expect(r"READY\$ ")
            terminal.send("fg\n")
            assert wait_for(lambda: terminal.foreground_group() == cat)
            terminal.send("two\n")  # cat reads it: it did not stop again on SIGTTIN
            terminal.expect(r"two\r?\n.*two")
            assert state(cat) != "T"
            terminal.send("\x04")  # EOF: cat exits 0
            terminal.expect(r"READY\$ ")
            terminal.send("echo rc=$?\n")
            terminal.expect(r"rc=0")
        finally:
            terminal.close()
        assert marker.survivors() == []


def _start_stopped_job(terminal: Terminal, command: str) -> int:
    """``pidns run -- COMMAND &`` at the shell's prompt, reading the terminal from the
    background: it stops (SIGTTIN); the launcher's pid, once it has."""
    terminal.send(f"{' '.join(PIDNS)} run -- {command} &\n")
    terminal.expect(r"READY\$ ")
    launcher = _launcher_of(terminal)
    assert wait_for(lambda: state(launcher) == "T", 20), "the job did not stop"
    return launcher


def test_a_background_job_stopped_at_once_comes_back_with_fg() -> None:
    with Marker() as marker:
        terminal = Terminal(cwd=marker.path)
        try:
            # cat reads the terminal from the background: SIGTTIN at once, often in the
            # same read of the status channel as the ready line
            _start_stopped_job(terminal, "cat")
            (cat,) = marker.processes("cat")
            terminal.send("fg\n")
            assert wait_for(lambda: terminal.foreground_group() == cat)
            terminal.send("hello\n")
            terminal.expect(r"hello\r?\n.*hello")
            terminal.send("\x04")
            terminal.expect(r"READY\$ ")
        finally:
            terminal.close()
        assert marker.survivors() == []


@pytest.mark.parametrize("command", ["cat", "sh -c 'trap \"\" HUP; exec cat'"])
def test_nothing_survives_a_hangup_of_a_stopped_job(command: str) -> None:
    with Marker() as marker:
        terminal = Terminal(cwd=marker.path)
        try:
            _start_stopped_job(terminal, command)
            terminal.hang_up()  # SIGHUP to bash, which passes it on
            assert marker.survivors(timeout=20) == []
        finally:
            terminal.close()


def test_nothing_survives_a_hangup_while_the_command_is_stopped_in_the_foreground() -> None:
    """The dead-terminal state: the launcher runs in the foreground, the command is
    stopped (here by a SIGSTOP from outside, which no terminal stop reports) and ignores
    SIGHUP. bash passes the hangup on without a SIGCONT (its job is running), so only the
    launcher can wake the command, as the kernel's own hangup does (HUP, then CONT)."""
    with Marker() as marker:
        terminal = Terminal(cwd=marker.path)
        try:
            terminal.send(f"{' '.join(PIDNS)} run -- sh -c 'trap \"\" HUP; exec cat'\n")
            assert wait_for(lambda: len(marker.processes("cat")) == 1)
            (cat,) = marker.processes("cat")
            assert wait_for(lambda: terminal.foreground_group() == cat)
            os.kill(cat, signal.SIGSTOP)
            assert wait_for(lambda: state(cat) == "T")
            terminal.hang_up()
            assert marker.survivors(timeout=20) == []
        finally:
            terminal.close()
