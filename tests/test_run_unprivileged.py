"""``pidns run`` as uid 65534: a user namespace instead of CAP_SYS_ADMIN, same guarantees.

A forked child of the test drops to uid 65534 and calls ``pidns.cli.main`` in-process
(see test_run_support). The terminal test is root-only: uid 65534 cannot exec the
interpreter that a shell would start.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time

import pytest

from pidns.core import flags as cf
from pidns.linux import syscalls, userns
from test_run_support import (
    Marker,
    cli_as_nobody,
    cli_captured,
    drop_privileges,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    proc_mounts,
    read_line,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]

FAMILY = "sleep 1000 & setsid sleep 1000 & exec sleep 1000"


def test_an_unprivileged_caller_is_root_in_a_user_namespace_by_default() -> None:
    status, out, err = cli_as_nobody(
        "run", "--", "sh", "-c", 'echo "$$"; id -u; cat /proc/self/uid_map; cat /proc/1/comm'
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "2"
    assert lines[1] == "0"
    assert lines[2].split() == ["0", "65534", "1"]
    assert lines[3] == "pidns-init"


def test_map_current_user_keeps_the_callers_ids() -> None:
    status, out, err = cli_as_nobody("run", "--map-current-user", "--", "sh", "-c", "id -u; id -g")
    assert status == 0, err
    assert out.split() == ["65534", "65534"]


def test_as_pid_1_and_no_mount_proc_unprivileged() -> None:
    status, out, _ = cli_as_nobody("run", "--as-pid-1", "--", "sh", "-c", 'echo "$$"')
    assert (status, out) == (0, "1\n")
    status, out, _ = cli_as_nobody("run", "--no-mount-proc", "--", "sh", "-c", 'echo "$$"')
    assert (status, out) == (0, "2\n")


def test_unprivileged_exit_statuses_and_errors() -> None:
    def scenario() -> list[tuple[int, str, str]]:
        return [
            cli_captured(["run", "--", "sh", "-c", "exit 9"]),
            cli_captured(["run", "--", "sh", "-c", "kill -KILL $$"]),
            cli_captured(["run", "--", "no-such-command-pidns"]),
            cli_captured(["run", "--", "/etc/shadow"]),
            cli_captured(["run", "--bogus"]),
        ]

    results = in_child(scenario, nobody=True)
    assert [status for status, _, _ in results] == [9, 137, 127, 126, 2]
    assert results[2][2] == "pidns run: no-such-command-pidns: command not found\n"
    assert results[3][2] == "pidns run: /etc/shadow: Permission denied\n"


def test_unprivileged_storm_of_2000_orphans_and_the_hosts_proc_is_untouched() -> None:
    before = proc_mounts()
    storm = 'i=0; while [ "$i" -lt 2000 ]; do (true &); i=$((i+1)); done; sleep 0.1'
    check = "grep -l zombie /proc/[0-9]*/status | wc -l"
    status, out, err = cli_as_nobody(
        "run", "--json-report", "-", "--", "sh", "-c", f"{storm}; {check}"
    )
    assert status == 0, err
    zombies, report = out.split("\n", 1)
    assert zombies == "0"
    assert json.loads(report)["orphans_reaped"] == 2000
    assert proc_mounts() == before


def test_unprivileged_signals_are_forwarded_to_a_trapping_shell() -> None:
    def scenario() -> tuple[str, str, int]:
        script = 'trap "echo got-TERM; exit 7" TERM; echo ready; while :; do sleep 0.02; done'
        pid, out = fork_cli(["run", "--", "sh", "-c", script])
        ready = read_line(out)
        os.kill(pid, signal.SIGTERM)
        return ready, read_line(out), exit_status(pid)

    assert in_child(scenario, nobody=True) == ("ready\n", "got-TERM\n", 7)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_an_unprivileged_launcher_stopped_or_killed_leaves_nothing(sig: signal.Signals) -> None:
    def scenario() -> tuple[int, list[int]]:
        with Marker() as marker:
            pid, _ = fork_cli(["run", "--", "sh", "-c", FAMILY], cwd=marker.path)
            assert wait_for(lambda: len(marker.processes("sleep")) == 3)
            os.kill(pid, sig)
            return exit_status(pid), marker.survivors()

    status, left = in_child(scenario, nobody=True, subreaper=True)
    assert left == []
    assert status == (-9 if sig == signal.SIGKILL else 128 + sig)


def test_unprivileged_launcher_killed_at_random_moments() -> None:
    def scenario() -> list[float]:
        rng = random.Random(os.getpid())
        failures = []
        for _ in range(20):
            with Marker() as marker:
                pid, _ = fork_cli(["run", "--", "sh", "-c", FAMILY], cwd=marker.path)
                delay = rng.uniform(0.0, 0.02)
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                if marker.survivors():
                    failures.append(delay)
        return failures

    assert in_child(scenario, nobody=True, subreaper=True, timeout=120) == []


def test_disabled_user_namespaces_get_a_one_line_cause_and_fix() -> None:
    """user.max_user_namespaces is per user namespace: set to 0 inside one of our own,
    it disables user namespaces for everything below, and nothing else."""

    def scenario() -> tuple[int, str, str]:
        drop_privileges()
        syscalls.unshare(cf.NEWUSER)
        userns.write_id_maps(userns.MAP_ROOT, 65534, 65534)
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
        return cli_captured(["run", "--map-root-user", "--", "true"])

    status, _, err = in_child(scenario)
    assert status == 125
    assert err.count("\n") == 1
    assert "user.max_user_namespaces = 0" in err
    assert "sysctl -w user.max_user_namespaces=" in err


def test_unprivileged_wait_all_and_grace() -> None:
    status, out, err = cli_as_nobody(
        "run", "--wait-all", "--", "sh", "-c", "(sleep 0.2; echo late) & echo early; exit 4"
    )
    assert (status, out) == (4, "early\nlate\n"), err
    script = "sh -c 'trap \"\" TERM; sleep 30' & sleep 0.1"
    started = time.monotonic()
    status, _, err = cli_as_nobody("run", "--wait-all", "--grace", "0.3", "--", "sh", "-c", script)
    assert status == 0, err
    assert 0.3 <= time.monotonic() - started < 10
