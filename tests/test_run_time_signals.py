"""``pidns run``'s time and signal options on the real kernel, as root and as uid 65534:
--timeout, --kill-signal, --grace for the shutdown, --parent-death-signal,
--rewrite-signal, --remap-exit, --die-by-signal."""

from __future__ import annotations

import os
import resource  # noqa: F401 (run --die-by-signal imports it: loaded before dropping to 65534)
import signal
import subprocess
import time

import pytest

from test_run_support import (
    PIDNS,
    Marker,
    children,
    cli_as_nobody,
    cli_captured,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    read_line,
    run_cli,
    run_until_ready,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]

FAMILY = "sleep 1000 & setsid sleep 1000 & exec sleep 1000"
DEAF = "sh -c 'trap \"\" TERM; sleep 1000'"  # survives TERM, only KILL ends it


def test_timeout_ends_the_whole_namespace_with_124() -> None:
    with Marker() as marker:
        started = time.monotonic()
        result = run_cli("run", "--timeout", "0.5", "--", "sh", "-c", FAMILY, cwd=marker.path)
        took = time.monotonic() - started
        assert result.returncode == 124, result.stderr
        assert 0.5 <= took < 10
        assert marker.survivors() == []


def test_timeout_terms_first_and_kills_after_the_grace() -> None:
    script = f'trap "echo got-TERM" TERM; {DEAF} & wait; wait'
    with Marker() as marker:
        started = time.monotonic()
        result = run_cli(
            "run", "--timeout", "0.3", "--grace", "0.5", "--", "sh", "-c", script, cwd=marker.path
        )
        took = time.monotonic() - started
        assert result.returncode == 124, result.stderr
        assert result.stdout == "got-TERM\n"  # TERM first, caught by the command
        assert 0.8 <= took < 10  # the deaf child lasted until the KILL after the grace
        assert marker.survivors() == []


def test_timeout_with_a_kill_signal_and_a_quick_command() -> None:
    result = run_cli("run", "--timeout", "1m", "--", "sh", "-c", "exit 5")
    assert result.returncode == 5  # the timeout did not run out
    script = 'trap "echo got-INT; exit 0" INT; while :; do sleep 0.02; done'
    result = run_cli("run", "--timeout", "0.3", "--kill-signal", "INT", "--", "sh", "-c", script)
    assert (result.returncode, result.stdout) == (124, "got-INT\n")


def test_kill_signal_and_grace_shape_the_shutdown_without_wait_all() -> None:
    """The command exits: TERM (not KILL) to what is left, KILL after the grace."""
    script = (
        "sh -c 'trap \"echo child-got-TERM; exit 0\" TERM; while :; do sleep 0.02; done' & "
        f"{DEAF} & sleep 0.3"
    )
    with Marker() as marker:
        started = time.monotonic()
        result = run_cli(
            "run", "--kill-signal", "TERM", "--grace", "0.5", "--", "sh", "-c", script,
            cwd=marker.path,
        )  # fmt: skip
        took = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert result.stdout == "child-got-TERM\n"
        assert 0.8 <= took < 10
        assert marker.survivors() == []


def test_parent_death_signal_is_catchable_then_kill_after_the_grace(
    tmp_path: os.PathLike[str],
) -> None:
    note = os.path.join(tmp_path, "note")
    script = (
        f'trap "echo got-HUP > {note}; exit 0" HUP; {DEAF} & echo ready; '
        "while :; do sleep 0.02; done"
    )
    with Marker() as marker:
        launcher = run_until_ready(
            ["--parent-death-signal", "HUP", "--grace", "0.5"], script, marker.path
        )
        launcher.kill()
        launcher.wait()
        assert wait_for(lambda: os.path.exists(note), 10)
        with open(note) as f:
            assert f.read() == "got-HUP\n"
        # the deaf one got the HUP too (sh dies of an untrapped HUP): nothing left
        assert marker.survivors() == []


def test_parent_death_signal_ignored_then_killed_after_the_grace() -> None:
    script = "trap '' HUP TERM; sleep 1000 & echo ready; wait"
    with Marker() as marker:
        launcher = run_until_ready(
            ["--parent-death-signal", "HUP", "--grace", "0.3"], script, marker.path
        )
        assert wait_for(lambda: len(marker.processes()) >= 3)  # init, sh, sleep
        launcher.kill()
        launcher.wait()
        time.sleep(0.1)
        assert marker.processes("sh")  # the HUP was ignored: still there for the grace
        assert marker.survivors() == []  # then SIGKILL


def test_rewrite_signal_maps_and_drops() -> None:
    script = (
        'trap "echo got-USR1" USR1; trap "echo got-TERM" TERM; echo ready; '
        "while :; do sleep 0.02; done"
    )
    launcher = subprocess.Popen(
        [*PIDNS, "run", "--rewrite-signal", "TERM:USR1", "--rewrite-signal", "INT:0",
         "--rewrite-signal", "HUP:KILL", "--", "sh", "-c", script],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert launcher.stdout is not None
    try:
        assert launcher.stdout.readline() == "ready\n"
        launcher.send_signal(signal.SIGTERM)
        assert launcher.stdout.readline() == "got-USR1\n"
        launcher.send_signal(signal.SIGINT)  # dropped: nothing happens
        launcher.send_signal(signal.SIGHUP)  # becomes KILL
        assert launcher.wait(10) == 128 + signal.SIGKILL
        assert launcher.stdout.read() == ""  # neither got-TERM nor anything for INT
    finally:
        launcher.kill()
        launcher.wait()


def test_remap_exit_and_die_by_signal() -> None:
    assert run_cli("run", "--remap-exit", "3", "--", "sh", "-c", "exit 3").returncode == 0
    assert run_cli("run", "--remap-exit", "3", "--", "sh", "-c", "exit 4").returncode == 4
    term = run_cli("run", "--remap-exit", "143", "--", "sh", "-c", "kill -TERM $$")
    assert term.returncode == 0  # tini's -e 143: a TERMed command counts as success
    died = run_cli("run", "--die-by-signal", "--", "sh", "-c", "kill -TERM $$")
    assert died.returncode == -signal.SIGTERM  # pidns run itself died of it
    died = run_cli("run", "--die-by-signal", "--", "sh", "-c", "kill -SEGV $$")
    assert died.returncode == -signal.SIGSEGV
    assert run_cli("run", "--die-by-signal", "--", "sh", "-c", "exit 7").returncode == 7
    # the default stays the shell's 128+N
    assert run_cli("run", "--", "sh", "-c", "kill -TERM $$").returncode == 143


def test_unprivileged_timeout_rewrite_and_remap() -> None:
    def scenario() -> list[tuple[int, str, str]]:
        with Marker() as marker:
            os.chdir(marker.path)
            results = [
                cli_captured(["run", "--timeout", "0.3", "--", "sh", "-c", FAMILY]),
                cli_captured(["run", "--remap-exit", "9", "--", "sh", "-c", "exit 9"]),
                cli_captured(
                    [
                        "run",
                        "--rewrite-signal",
                        "TERM:USR1",
                        "--",
                        "sh",
                        "-c",
                        'trap "echo got-USR1; exit 3" USR1; kill -TERM 1; '
                        "while :; do sleep 0.02; done",
                    ]
                ),
            ]
            os.chdir("/")
            assert marker.survivors() == []
            return results

    results = in_child(scenario, nobody=True, subreaper=True)
    assert [r[0] for r in results] == [124, 0, 3]
    assert results[2][1] == "got-USR1\n"


def test_unprivileged_parent_death_signal() -> None:
    def scenario() -> tuple[int, list[int]]:
        with Marker() as marker:
            script = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.02; done'
            pid, out = fork_cli(
                ["run", "--parent-death-signal", "TERM", "--", "sh", "-c", script],
                cwd=marker.path,
            )
            assert read_line(out) == "ready\n"
            os.kill(pid, signal.SIGKILL)
            return exit_status(pid), marker.survivors()

    status, left = in_child(scenario, nobody=True, subreaper=True)
    assert status == -signal.SIGKILL
    assert left == []


def test_unprivileged_kill_signal_shutdown() -> None:
    status, out, err = cli_as_nobody(
        "run", "--kill-signal", "TERM", "--", "sh", "-c",
        "sh -c 'trap \"echo left-got-TERM; exit 0\" TERM; while :; do sleep 0.02; done' & "
        "sleep 0.2",
    )  # fmt: skip
    assert (status, out) == (0, "left-got-TERM\n"), err


def test_die_by_signal_when_the_whole_namespace_is_killed() -> None:
    """SIGKILL to pid 1 (the one signal it cannot refuse) ends the namespace; with
    --die-by-signal pidns run then dies of SIGKILL itself, as unshare does."""
    for options, wanted in (([], 128 + signal.SIGKILL), (["--die-by-signal"], -signal.SIGKILL)):
        read_end, write_end = os.pipe()  # the status fd: its first line once the launcher
        launcher = subprocess.Popen(  # knows the command runs (killed sooner, it is setup)
            [*PIDNS, "run", "--json-status-fd", str(write_end), *options, "--", "sleep", "30"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            pass_fds=(write_end,),
        )  # fmt: skip
        os.close(write_end)
        try:
            assert read_line(read_end).startswith('{"child-pid"')
            (init,) = children(launcher.pid)
            os.kill(init, signal.SIGKILL)
            _, err = launcher.communicate(timeout=10)
        finally:
            os.close(read_end)
        assert launcher.returncode == wanted, err
        assert err == b""


def test_unprivileged_die_by_signal() -> None:
    def scenario() -> tuple[int, int]:
        dies, _ = fork_cli(["run", "--die-by-signal", "--", "sh", "-c", "kill -TERM $$"])
        plain, _ = fork_cli(["run", "--", "sh", "-c", "kill -TERM $$"])
        return exit_status(dies), exit_status(plain)

    assert in_child(scenario, nobody=True) == (-signal.SIGTERM, 128 + signal.SIGTERM)
