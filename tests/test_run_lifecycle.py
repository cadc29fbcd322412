"""``pidns run`` as root: signals, the init's reaping, shutdown, and what survives (nothing).

Each test names its processes with a unique ``sleep MARKER`` and checks, through the
host's /proc, that none of them outlives the run on any path: the command exits, the
launcher is told to stop (TERM, INT, HUP), the launcher is SIGKILLed (at random moments).
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
    Terminal,
    children,
    in_child,
    needs_root,
    new_marker,
    nspid,
    run_cli,
    state,
    survivors,
    wait_for,
    with_marker,
)

pytestmark = [pytest.mark.real, needs_root]


def _start(*args: str) -> subprocess.Popen[str]:
    """A launcher in its own session, which dies with pytest (if pytest is killed)."""
    return subprocess.Popen(
        [*PIDNS, "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: syscalls.set_parent_death_signal(signal.SIGKILL),  # noqa: PLW1509
    )


def _family(marker: str) -> str:
    """A command with a background child, a setsid'd child, and itself, all sleeping."""
    return f"sleep {marker} & setsid sleep {marker} & exec sleep {marker}"


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
    marker = new_marker()
    script = f'sleep {marker} & trap "" TERM; echo ready; wait $!; echo "status=$?"'
    for option, expected in (("--forward-to-group", "status=143"), (None, None)):
        args = [option] if option else []
        launcher = _start(*args, "--", "sh", "-c", script)
        assert launcher.stdout is not None
        assert launcher.stdout.readline() == "ready\n"
        assert wait_for(lambda: len(with_marker(marker)) == 1)
        launcher.send_signal(signal.SIGTERM)
        if expected:
            assert launcher.stdout.readline() == expected + "\n"
            assert launcher.wait(10) == 0
        else:  # only sh got it, and ignores it: the sleep goes on
            time.sleep(0.3)
            assert with_marker(marker) and launcher.poll() is None
            launcher.kill()  # the init notices the launcher's death and ends it all
            launcher.wait()
        assert survivors(marker) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signalled_launcher_forwards_then_leaves_nothing(sig: signal.Signals) -> None:
    marker = new_marker()
    launcher = _start("--", "sh", "-c", _family(marker))
    assert wait_for(lambda: len(with_marker(marker)) == 3)
    launcher.send_signal(sig)
    assert launcher.wait(10) == 128 + sig
    assert with_marker(marker) == []  # gone before the launcher exits, not only after


def test_the_command_exiting_ends_background_and_setsid_descendants() -> None:
    marker = new_marker()
    script = f"sleep {marker} & setsid sleep {marker} & (setsid sh -c 'sleep {marker} &' &); "
    script += "sleep 0.3; exit 5"
    result = run_cli("run", "--json-report", "-", "--", "sh", "-c", script)
    assert result.returncode == 5
    assert with_marker(marker) == []
    report = json.loads(result.stdout)
    assert report["killed_at_shutdown"]["count"] == 3


def test_a_sigkilled_launcher_leaves_nothing() -> None:
    marker = new_marker()

    def scenario() -> list[int]:
        launcher = _start("--", "sh", "-c", _family(marker))
        assert wait_for(lambda: len(with_marker(marker)) == 3)
        launcher.kill()
        launcher.wait()
        return survivors(marker)

    assert in_child(scenario, subreaper=True) == []


def test_a_launcher_sigkilled_at_random_moments_never_leaves_anything() -> None:
    """Killed before the namespace exists, while the init sets up, while the command
    starts, while it runs: every time, nothing of the namespace may remain."""

    def scenario() -> list[tuple[float, list[int]]]:
        rng = random.Random(os.getpid())
        failures: list[tuple[float, list[int]]] = []
        for _ in range(24):
            marker = new_marker()
            launcher = _start("--", "sh", "-c", _family(marker))
            delay = rng.uniform(0.0, 0.12)
            time.sleep(delay)
            launcher.kill()
            launcher.wait()
            left = survivors(marker, timeout=10)
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
    marker = new_marker()
    stubborn = f"sh -c 'trap \"\" TERM; sleep {marker}; :' &"
    polite = f"sleep {marker} &"
    started = time.monotonic()
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
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert 0.5 <= elapsed < 5
    report = json.loads(result.stdout)
    assert report["killed_at_shutdown"]["count"] == 3  # the stubborn sh and both sleeps
    assert with_marker(marker) == []


def test_the_command_takes_the_terminal_and_job_control_works() -> None:
    marker = new_marker()
    terminal = Terminal()
    try:
        terminal.send(f"{' '.join(PIDNS)} run -- sh -c 'exec sleep {marker}'\n")
        assert wait_for(lambda: len(with_marker(marker)) == 1)
        (sleeper,) = with_marker(marker)
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
        assert with_marker(marker) == []
    finally:
        terminal.close()
