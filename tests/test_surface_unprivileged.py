"""The options of issue 15 that had a root test only, now also as uid 65534 on the real
kernel (and PIDNS_GRACE and PIDNS_VERBOSE, which had none, as both): the environment's
defaults, --propagation, -m alone, --kill-child=SIG, the init's working directory, and
pidns exec's -R, --preserve-credentials and a pid_for_children path."""

from __future__ import annotations

import functools
import os
import signal
import time

import pytest

from test_run_support import (
    Marker,
    children,
    cli_captured,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    propagation_seen,
    read_line,
)

pytestmark = [pytest.mark.real, needs_root]

# the command exits once what it leaves has set its trap: that ignores SIGTERM, so only
# the grace's SIGKILL ends it
STUBBORN_LEFT = (
    "d=$(mktemp -d); sh -c \"trap '' TERM; echo up; touch $d/up; while :; do sleep 0.05; done\" & "
    "while [ ! -e $d/up ]; do sleep 0.01; done; rm -r $d"
)


WAIT_FOR_INIT_CWD = (
    'i=0; while [ "$(readlink /proc/1/cwd)" != / ] && [ $i -lt 1000 ]; do sleep 0.01; '
    "i=$((i + 1)); done; readlink /proc/1/cwd"
)


def _with_environment(*options: str, **variables: str) -> tuple[tuple[int, str, str], float]:
    """``pidns run --kill-signal TERM OPTIONS`` of STUBBORN_LEFT with ``variables`` set:
    its result and how long it took."""
    os.environ.update(variables)
    started = time.monotonic()
    argv = ["run", "--kill-signal", "TERM", *options, "--", "sh", "-c", STUBBORN_LEFT]
    result = cli_captured(argv)
    return result, time.monotonic() - started


@pytest.mark.parametrize("nobody", [False, True], ids=["root", "65534"])
def test_pidns_grace_is_the_default_grace(nobody: bool) -> None:
    (status, out, err), took = in_child(
        lambda: _with_environment(PIDNS_GRACE="0.5"), nobody=nobody, subreaper=True
    )
    assert (status, out, err) == (0, "up\n", "")
    assert 0.5 <= took < 8  # the leftover lived out PIDNS_GRACE, not the default 10 s
    # the command line wins over the variable
    (status, out, err), took = in_child(
        lambda: _with_environment("--grace", "0.3", PIDNS_GRACE="60"),
        nobody=nobody,
        subreaper=True,
    )
    assert (status, out, err) == (0, "up\n", "")
    assert 0.3 <= took < 30
    (status, _, err), _ = in_child(
        lambda: _with_environment(PIDNS_GRACE="soon"), nobody=nobody, subreaper=True
    )
    assert status == 2
    assert err == (
        "pidns run: PIDNS_GRACE must be a number of seconds >= 0, not 'soon' "
        "(see pidns run --help)\n"
    )


@pytest.mark.parametrize("nobody", [False, True], ids=["root", "65534"])
def test_pidns_verbose_turns_the_log_on(nobody: bool) -> None:
    def scenario() -> list[tuple[int, str, str]]:
        results = []
        for value in ("1", "0", "", "yes"):
            os.environ["PIDNS_VERBOSE"] = value
            results.append(cli_captured(["run", "--", "sh", "-c", "exit 3"]))
        return results

    on, off, empty, bad = in_child(scenario, nobody=nobody)
    assert on[0] == 3 and "pidns-init: the command (pid 2) exited 3\n" in on[2], on
    assert off == (3, "", "") and empty == (3, "", "")
    assert bad == (2, "", "pidns run: PIDNS_VERBOSE must be 0 or 1, not 'yes' "
                   "(see pidns run --help)\n")  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "tags"),
    [
        ("private", []),
        ("slave", ["master:"]),
        ("shared", ["shared:", "master:"]),
        ("unchanged", ["master:"]),
    ],
)
def test_unprivileged_propagation(mode: str, tags: list[str]) -> None:
    """A shared mount of our own (in a private mount namespace made for the test), seen
    from a run by uid 65534: its mount namespace belongs to a new user namespace, so the
    kernel copies shared mounts into it as slaves of the originals
    (fs/namespace.c:copy_mnt_ns, CL_SHARED_TO_SLAVE): "unchanged" is a slave there, and
    "shared" is shared within it and still a slave of the original."""
    optional = propagation_seen(mode, as_nobody=True)
    assert [tag for tag in ("shared:", "master:") if any(f.startswith(tag) for f in optional)] == (
        tags
    ), optional


def test_unprivileged_mount_alone_init_cwd_and_kill_child() -> None:
    def scenario() -> tuple[tuple[int, str, str], tuple[int, str, str], int, list[int]]:
        mount = cli_captured(
            ["run", "-m", "--no-mount-proc", "--", "readlink", "/proc/self/ns/mnt"]
        )
        # (the init moves to / once the command has started: a bounded wait for it)
        cwd = cli_captured(["run", "--", "sh", "-c", WAIT_FOR_INIT_CWD])
        with Marker() as marker:
            script = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.02; done'
            pid, out = fork_cli(
                ["run", "--kill-child=TERM", "--", "sh", "-c", script], cwd=marker.path
            )
            assert read_line(out) == "ready\n"
            os.kill(pid, signal.SIGKILL)
            return mount, cwd, exit_status(pid), marker.survivors()

    mount, cwd, status, left = in_child(scenario, nobody=True, subreaper=True)
    assert mount[0] == 0 and mount[1].strip() != os.readlink("/proc/self/ns/mnt"), mount
    assert cwd == (0, "/\n", "")  # the init's working directory, as dumb-init's
    assert status == -signal.SIGKILL and left == []


def test_unprivileged_exec_root_preserve_credentials_and_pid_for_children() -> None:
    def scenario() -> list[tuple[int, str, str]]:
        pid, out = fork_cli(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        assert read_line(out) == "2\n"
        (init,) = children(pid)
        (command,) = children(init)
        try:
            # each in a child of its own: pidns exec joins the namespaces itself
            return [
                in_child(functools.partial(cli_captured, args))
                for args in (
                    ["exec", "-t", str(init), "-R", "/usr", "-w/lib", "--", "pwd"],
                    ["exec", "-U", "--preserve-credentials", "-t", str(init), "--", "id", "-u"],
                    ["exec", "-U", "-t", str(init), "--", "id", "-u"],
                    ["exec", f"--pid=/proc/{command}/ns/pid_for_children", "--", "sh", "-c",
                     'echo "$$"'],
                )
            ]  # fmt: skip
        finally:
            os.kill(pid, signal.SIGTERM)
            exit_status(pid)

    root, kept, made_root, nsfs = in_child(scenario, nobody=True)
    assert root == (0, "/lib\n", ""), root
    # 65534 is mapped to 0 in its own namespace: kept, it is 0 there too (as nsenter)
    assert kept == (0, "0\n", "") and made_root == (0, "0\n", ""), (kept, made_root)
    assert nsfs[0] == 0 and int(nsfs[1]) >= 3, nsfs
