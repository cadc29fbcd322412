"""The commands on kernels that lack what today's has, exercised on this kernel by
PIDNS_FEATURES_MISSING (pidns.linux.features): each falls back, or says in one line which
feature is missing and exits 125. The same commands on real 3.8.13 and 6.1 kernels:
tests/test_kernels.py."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

import pidns
from pidns.linux import features
from test_run_support import (
    children,
    cli_captured,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    nspid,
    read_line,
    run_cli,
)

pytestmark = [pytest.mark.real]


def _without(names: str) -> dict[str, str]:
    return {**os.environ, features.ENV: names}


@pytest.fixture
def target() -> Iterator[pidns.Popen]:
    with pidns.Popen(["sleep", "60"]) as process:
        yield process


@needs_root
def test_exec_before_5_8_joins_through_the_proc_ns_files(target: pidns.Popen) -> None:
    result = run_cli(
        "exec", "--target", str(target.pid), "--mount", "--", "sh", "-c",
        'echo "$$"; readlink /proc/self/ns/pid /proc/self/ns/mnt',
        env=_without("setns_pidfd"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inside, pid_ns, mnt_ns = result.stdout.split()
    assert inside == "3"  # after the init (1) and the command (2)
    assert pid_ns == os.readlink(f"/proc/{target.pid}/ns/pid")
    assert mnt_ns == os.readlink(f"/proc/{target.pid}/ns/mnt")


def test_unprivileged_exec_before_5_8_joins_the_user_namespace_first() -> None:
    def scenario() -> tuple[int, str, str, int]:
        pid, out = fork_cli(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        assert read_line(out) == "2\n"
        (init,) = children(pid)
        (command,) = children(init)
        os.environ[features.ENV] = "setns_pidfd"
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
    assert text.split() == ["3", "0"]
    assert launcher == 143


def test_exec_without_pidfds_names_the_feature_and_exits_125(target: pidns.Popen) -> None:
    result = run_cli("exec", "--target", str(target.pid), "--", "true", env=_without("pidfd_open"))
    assert result.returncode == 125
    assert result.stderr.splitlines() == [
        f"pidns exec: pidfd_open (pidfd_open(2), Linux 5.3) is missing on this kernel "
        f"({os.uname().release}), needed for pidns exec"
    ]
    assert nspid(target.pid)  # nothing happened to the target


@pytest.mark.parametrize("missing", ["ns_get_nstype", "nspid"])
def test_pid_without_what_it_reads_names_the_feature_and_exits_125(missing: str) -> None:
    result = run_cli("pid", "1", env=_without(missing))
    assert result.returncode == 125
    (line,) = result.stderr.splitlines()
    row = features.FEATURES[missing]
    assert line.startswith(f"pidns pid: {missing} ({row.what}, Linux {row.since}) is missing")


def test_pid_works_without_the_pid_ioctls_through_nspid() -> None:
    result = run_cli("pid", "--json", str(os.getpid()), env=_without("ns_get_pid"))
    assert result.returncode == 0, result.stderr
    assert f'"result": {os.getpid()}' in result.stdout
    assert '"method": "nspid"' in result.stdout
