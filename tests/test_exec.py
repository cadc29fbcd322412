"""``pidns exec`` on the real kernel: joining a namespace made by ``pidns run``.

The pids the command sees inside are compared with what the host's /proc says of it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

import pidns
from pidns.linux import features, syscalls
from test_run_support import (
    PIDNS,
    Marker,
    children,
    cli_captured,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    nspid,
    read_line,
    run_cli,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]


@pytest.fixture
def target() -> Iterator[pidns.Popen]:
    """A namespace made by pidns.run's Popen: an init (1) and a sleeping command (2)."""
    with pidns.Popen(["sleep", "60"]) as process:
        yield process


def _exec(*args: str, cwd: str | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*PIDNS, "exec", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: syscalls.set_parent_death_signal(signal.SIGKILL),  # noqa: PLW1509
    )


def test_the_command_gets_the_next_pid_in_the_targets_namespace(target: pidns.Popen) -> None:
    runner = _exec(
        "--target", str(target.pid), "--mount", "--", "sh", "-c", 'echo "$$"; exec sleep 30'
    )
    try:
        assert runner.stdout is not None
        inside = int(runner.stdout.readline())
        (joined,) = children(runner.pid)
        assert nspid(joined) == [joined, inside]  # the host's view agrees, one level down
        assert inside == 3  # after the init (1) and the command (2)
        assert os.readlink(f"/proc/{joined}/ns/pid") == os.readlink(f"/proc/{target.pid}/ns/pid")
        assert os.readlink(f"/proc/{joined}/ns/mnt") == os.readlink(f"/proc/{target.pid}/ns/mnt")
        with open(f"/proc/{joined}/status") as f:
            assert "PPid:\t" + str(runner.pid) in f.read()  # its parent stays outside
    finally:
        runner.terminate()  # forwarded: sh dies of it, and pidns exec reaps it
        assert runner.wait(10) == 128 + signal.SIGTERM


def test_with_mount_proc_shows_the_targets_namespace(target: pidns.Popen) -> None:
    # the shell's own glob: with ls | grep, ls could read /proc before grep was forked
    listing = 'cd /proc && for p in [0-9]*; do echo "$p"; done'
    result = run_cli("exec", "--target", str(target.pid), "--mount", "--", "sh", "-c", listing)
    assert result.returncode == 0, result.stderr
    assert sorted(int(p) for p in result.stdout.split()) == [1, 2, 3]  # init, sleep, sh
    result = run_cli("exec", "--target", str(target.pid), "--", "sh", "-c", 'echo "$$"')
    pid = int(result.stdout)
    assert pid > 2  # in the namespace, but without --mount /proc is still the host's
    result = run_cli(
        "exec", "-t", str(target.pid), "--", "sh", "-c", 'echo "$$"; exec readlink /proc/self'
    )
    inside, through_proc = result.stdout.split()
    assert through_proc != inside  # one process: its host pid, through the host's /proc


def test_exit_statuses_are_those_of_run(target: pidns.Popen) -> None:
    t = str(target.pid)
    assert run_cli("exec", "--target", t, "--", "sh", "-c", "exit 6").returncode == 6
    assert run_cli("exec", "--target", t, "--", "sh", "-c", "kill -TERM $$").returncode == 143
    result = run_cli("exec", "--target", t, "--", "no-such-command-pidns")
    assert result.returncode == 127
    assert result.stderr == "pidns exec: no-such-command-pidns: command not found\n"
    assert run_cli("exec", "--target", t, "--", "/etc").returncode == 126


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["true"],
        ["--target"],
        ["--target", "abc", "true"],
        ["--target", "0", "true"],
        ["--target", "1"],
        ["--bogus", "--target", "1", "true"],
        ["--mount=1", "true"],
    ],
)
def test_bad_usage_is_2(args: list[str]) -> None:
    result = run_cli("exec", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("pidns exec: ") and result.stderr.count("\n") == 1


def test_a_missing_target_is_a_setup_failure() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    result = run_cli("exec", "--target", str(dead.pid), "--", "true")
    assert result.returncode == 125
    assert result.stderr == f"pidns exec: no process {dead.pid}\n"


def test_signals_are_forwarded_and_nothing_outlives_a_killed_exec(target: pidns.Popen) -> None:
    script = 'trap "echo got-TERM; exit 3" TERM; echo ready; while :; do sleep 0.02; done'
    runner = _exec("--target", str(target.pid), "--", "sh", "-c", script)
    assert runner.stdout is not None
    assert runner.stdout.readline() == "ready\n"
    runner.send_signal(signal.SIGTERM)
    assert runner.stdout.readline() == "got-TERM\n"
    assert runner.wait(10) == 3

    def killed() -> list[int]:  # as a subreaper, to reap the orphaned command at once
        with Marker() as marker:
            runner = _exec("--target", str(target.pid), "--", "sleep", "1000", cwd=marker.path)
            assert wait_for(lambda: len(marker.processes("sleep")) == 1)
            runner.kill()  # the joined command has a parent-death signal
            runner.wait()
            return marker.survivors()

    assert in_child(killed, subreaper=True) == []


def test_the_joined_command_dies_with_the_namespace() -> None:
    with Marker() as marker, pidns.Popen(["sleep", "60"]) as process:
        runner = _exec("--target", str(process.pid), "--", "sleep", "1000", cwd=marker.path)
        assert wait_for(lambda: len(marker.processes("sleep")) == 1)
        process.kill()  # SIGKILL to the init: the kernel kills the whole namespace
        assert runner.wait(10) == 128 + signal.SIGKILL
        assert marker.processes() == []


@pytest.mark.parametrize("missing", ["", "setns_pidfd"], ids=["pidfd", "before-5.8"])
def test_unprivileged_exec_joins_the_user_namespace_too(missing: str) -> None:
    """Before 5.8 (no setns through a pidfd, PIDNS_FEATURES_MISSING: tests/test_old_kernels.py)
    the user namespace is joined first, through /proc/PID/ns: the same result."""

    def scenario() -> tuple[int, str, str, int]:
        pid, out = fork_cli(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        assert read_line(out) == "2\n"
        (init,) = children(pid)
        (command,) = children(init)
        if missing:
            os.environ[features.ENV] = missing
            features.forget()
        try:
            status, text, err = cli_captured(
                ["exec", "--target", str(command), "--mount", "--", "sh", "-c", 'echo "$$"; id -u']
            )
        finally:
            os.kill(pid, signal.SIGTERM)
        return status, text, err, exit_status(pid)

    status, text, err, launcher = in_child(scenario, nobody=True)
    assert status == 0, err
    assert text.split() == ["3", "0"]  # pid 3 there, and root of its user namespace
    assert launcher == 143
