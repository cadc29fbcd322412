"""``pidns run`` as root: signals, the init's reaping, shutdown, and what survives (nothing).

Each test runs its processes in a fresh directory (``Marker``) and checks, through the
host's /proc, that none of them (the launcher, the init, the command and what it
started) outlives the run on any path: the command exits, the launcher is told to stop
(TERM, INT, HUP), the launcher is SIGKILLed (at random moments).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time

import pytest

from pidns.linux import syscalls
from test_run_support import (
    PIDNS,
    Marker,
    Terminal,
    children,
    in_child,
    needs_root,
    nspid,
    run_cli,
    state,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]

# A command with a background child, a setsid'd child, and itself, all sleeping.
FAMILY = "sleep 1000 & setsid sleep 1000 & exec sleep 1000"


def _start(*args: str, cwd: str | None = None) -> subprocess.Popen[str]:
    """A launcher in its own session, which dies with pytest (if pytest is killed)."""
    return subprocess.Popen(
        [*PIDNS, "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
        preexec_fn=lambda: syscalls.set_parent_death_signal(signal.SIGKILL),  # noqa: PLW1509
    )


def test_a_trapping_shell_gets_the_launchers_signals() -> None:
    script = (
        'trap "echo got-USR1" USR1; trap "echo got-HUP" HUP; trap "echo got-TERM; exit 7" TERM; '
        "echo ready; while :; do sleep 0.02; done"
    )
    launcher = _start("--", "sh", "-c", script)
    assert launcher.stdout is not None
    assert launcher.stdout.readline() == "ready\n"
    for sig, expected in ((signal.SIGUSR1, "got-USR1\n"), (signal.SIGHUP, "got-HUP\n")):
        launcher.send_signal(sig)
        assert launcher.stdout.readline() == expected
    launcher.send_signal(signal.SIGTERM)
    assert launcher.stdout.readline() == "got-TERM\n"
    assert launcher.wait(10) == 7


def test_forward_to_group_reaches_the_commands_process_group() -> None:
    script = 'sleep 1000 & trap "" TERM; echo ready; wait $!; echo "status=$?"'
    for option, expected in (("--forward-to-group", "status=143"), (None, None)):
        with Marker() as marker:
            args = [option] if option else []
            launcher = _start(*args, "--", "sh", "-c", script, cwd=marker.path)
            assert launcher.stdout is not None
            assert launcher.stdout.readline() == "ready\n"
            assert wait_for(lambda: len(marker.processes("sleep")) == 1)
            launcher.send_signal(signal.SIGTERM)
            if expected:
                assert launcher.stdout.readline() == expected + "\n"
                assert launcher.wait(10) == 0
            else:  # only sh got it, and ignores it: the sleep goes on
                time.sleep(0.3)
                assert marker.processes("sleep") and launcher.poll() is None
                launcher.kill()  # the init notices the launcher's death and ends it all
                launcher.wait()
            assert marker.survivors() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signalled_launcher_forwards_then_leaves_nothing(sig: signal.Signals) -> None:
    with Marker() as marker:
        launcher = _start("--", "sh", "-c", FAMILY, cwd=marker.path)
        assert wait_for(lambda: len(marker.processes("sleep")) == 3)
        launcher.send_signal(sig)
        assert launcher.wait(10) == 128 + sig
        assert marker.processes() == []  # gone before the launcher exits, not only after


def test_the_command_exiting_ends_background_and_setsid_descendants() -> None:
    script = "sleep 1000 & setsid sleep 1000 & (setsid sh -c 'sleep 1000 &' &); "
    script += "sleep 0.3; exit 5"
    with Marker() as marker:
        result = run_cli("run", "--json-report", "-", "--", "sh", "-c", script, cwd=marker.path)
        assert result.returncode == 5
        assert marker.processes() == []
    report = json.loads(result.stdout)
    assert report["killed_at_shutdown"]["count"] == 3


def test_a_sigkilled_launcher_leaves_nothing() -> None:
    def scenario() -> list[int]:
        with Marker() as marker:
            launcher = _start("--", "sh", "-c", FAMILY, cwd=marker.path)
            assert wait_for(lambda: len(marker.processes("sleep")) == 3)
            launcher.kill()
            launcher.wait()
            return marker.survivors()

    assert in_child(scenario, subreaper=True) == []


def test_a_launcher_sigkilled_at_random_moments_never_leaves_anything() -> None:
    """Killed before the namespace exists, while the init sets up, while the command
    starts, while it runs: every time, nothing of the namespace may remain."""

    def scenario() -> list[tuple[float, list[int]]]:
        rng = random.Random(os.getpid())
        failures: list[tuple[float, list[int]]] = []
        for _ in range(24):
            with Marker() as marker:
                launcher = _start("--", "sh", "-c", FAMILY, cwd=marker.path)
                delay = rng.uniform(0.0, 0.12)
                time.sleep(delay)
                launcher.kill()
                launcher.wait()
                left = marker.survivors()
                if left:
                    failures.append((delay, left))
        return failures

    assert in_child(scenario, subreaper=True, timeout=120) == []


def test_the_init_reaps_a_storm_of_2000_orphans() -> None:
    storm = 'i=0; while [ "$i" -lt 2000 ]; do (true &); i=$((i+1)); done; sleep 0.2'
    check = "ls /proc | grep -c '^[0-9]'; grep -l zombie /proc/[0-9]*/status | wc -l"
    result = run_cli(
        "run", "--json-report", "-", "--", "sh", "-c", f"{storm}; {check}", timeout=120
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    visible, zombies = int(lines[0]), int(lines[1])
    assert zombies == 0 and visible <= 6  # init, sh, ls, grep, and the next pipeline
    report = json.loads("\n".join(lines[2:]))
    assert report["orphans_reaped"] == 2000


def test_wait_all_keeps_the_namespace_until_it_is_empty() -> None:
    script = "(sleep 0.4; echo late) & echo early; exit 3"
    started = time.monotonic()
    result = run_cli("run", "--wait-all", "--", "sh", "-c", script)
    assert result.returncode == 3
    assert result.stdout == "early\nlate\n"
    assert time.monotonic() - started >= 0.4
    result = run_cli("run", "--", "sh", "-c", script)
    assert result.stdout == "early\n"  # without --wait-all the rest is killed at once


def test_wait_all_with_grace_terms_then_kills() -> None:
    stubborn = "sh -c 'trap \"\" TERM; sleep 1000; :' &"
    polite = "sleep 1000 &"
    started = time.monotonic()
    with Marker() as marker:
        result = run_cli(
            "run",
            "--wait-all",
            "--grace",
            "0.5",
            "--json-report",
            "-",
            "--",
            "sh",
            "-c",
            f"{stubborn} {polite} sleep 0.2; exit 0",
            cwd=marker.path,
        )
        elapsed = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert 0.5 <= elapsed < 5
        report = json.loads(result.stdout)
        assert report["killed_at_shutdown"]["count"] == 3  # the stubborn sh and both sleeps
        assert marker.processes() == []


def test_the_command_takes_the_terminal_and_job_control_works() -> None:
    marker = Marker()
    terminal = Terminal(cwd=marker.path)
    try:
        terminal.send(f"{' '.join(PIDNS)} run -- sleep 1000\n")
        assert wait_for(lambda: len(marker.processes("sleep")) == 1)
        (sleeper,) = marker.processes("sleep")
        assert nspid(sleeper)[-1] == 2
        # the command leads its own process group, and that group holds the terminal
        assert os.getpgid(sleeper) == sleeper
        assert wait_for(lambda: terminal.foreground_group() == sleeper)
        launcher = os.getpgid(children(terminal.pid)[0])
        terminal.send("\x1a")  # ^Z: the command stops, and so does the launcher for bash
        terminal.expect(r"Stopped")
        assert wait_for(lambda: state(sleeper) == "T" and state(launcher) == "T")
        terminal.expect(r"READY\$ ")
        terminal.send("fg\n")  # bash continues the launcher, which gives the terminal back
        assert wait_for(lambda: state(sleeper) == "S")
        assert wait_for(lambda: terminal.foreground_group() == sleeper)
        terminal.send("\x03")  # ^C reaches the command's group directly
        terminal.expect(r"READY\$ ")
        terminal.send("echo rc=$?\n")
        terminal.expect(r"rc=130")
        assert marker.processes("sleep") == []
    finally:
        terminal.close()
        marker.close()
