"""``pidns run --fallback subreaper`` where no pid namespace can be had (made on the real
kernel for one forked test child: tests/confinement.py), as root and as uid 65534: the
command runs, one notice says pids are not isolated, and nothing it started survives: not
a setsid'd double-forked daemon, not a TERM-ignoring child, not a fork storm, not when
the launcher is SIGKILLed, not when the API kills it.
"""

from __future__ import annotations

import json
import os
import signal
import warnings
from collections.abc import Callable

import pytest

import confinement
import pidns.api
import pidns.linux.subreaper
from pidns.linux import launcher
from test_run_support import (
    Marker,
    cli_captured,
    drop_privileges,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    wait_for,
)

assert pidns.linux.subreaper  # loaded before a child drops its privileges

pytestmark = [pytest.mark.real, needs_root]

NOTICE = "running sh under a subreaper instead: its pids are not isolated"
# a setsid'd daemon that double-forks away, and a child that ignores TERM; the command
# waits until both run, then exits 3
FAMILY = (
    "(setsid sh -c 'touch daemon; exec sleep 1000' &); "
    "sh -c 'trap \"\" TERM; touch stubborn; while :; do sleep 1; done' & "
    "while [ ! -e daemon ] || [ ! -e stubborn ]; do sleep 0.01; done; exit 3"
)


# the same family, but the command stays (sleeping) once both run, and says so: ready
LINGERING = FAMILY.replace("exit 3", "touch ready; exec sleep 1000")


def start_lingering_family(marker: Marker) -> int:
    """``pidns run --fallback subreaper`` of LINGERING in the marker's directory; the
    launcher's pid once the whole family runs."""
    pid, _ = fork_cli(["run", "--fallback", "subreaper", "--", "sh", "-c", LINGERING], marker.path)
    assert wait_for(lambda: os.path.exists(os.path.join(marker.path, "ready")))
    return pid


def no_user_namespaces() -> None:
    confinement.disable_user_namespaces()
    confinement.drop_capability()


ENVIRONMENTS: list[tuple[str, Callable[[], None]]] = [("no-userns", no_user_namespaces)]
if confinement.seccomp_supported:
    ENVIRONMENTS.append(("seccomp", confinement.seccomp_like_docker))
CASES = [
    pytest.param(who, setup, id=f"{name}-{who}")
    for name, setup in ENVIRONMENTS
    for who in ("root", "nobody")
]


def others(marker: Marker) -> list[int]:
    """The marker's processes but this one (which runs there too)."""
    return [pid for pid in marker.processes() if pid != os.getpid()]


def confine(setup: Callable[[], None], who: str) -> None:
    if who == "nobody":
        drop_privileges()
    setup()


@pytest.mark.parametrize(("who", "setup"), CASES)
def test_the_fallback_runs_the_command_and_leaves_nothing(
    who: str, setup: Callable[[], None]
) -> None:
    def scenario() -> tuple[tuple[int, str, str], tuple[int, str, str], list[int], str]:
        confine(setup, who)
        refused = cli_captured(["run", "--", "true"])
        with Marker() as marker:
            os.chdir(marker.path)
            ran = cli_captured(
                ["run", "--fallback", "subreaper", "--json-report", "-", "--", "sh", "-c", FAMILY]
            )
            left = others(marker)  # at once: the init waited for the tree to go
            os.chdir("/")
        return refused, ran, left, str(os.getuid())

    refused, ran, left, _ = in_child(scenario, subreaper=True)
    assert refused[0] == 125  # the default is still to fail
    status, out, err = ran
    assert status == 3, err
    assert left == []
    lines = err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pidns run: no pid namespace can be made here (")
    assert lines[0].endswith(NOTICE)
    assert refused[2].removeprefix("pidns run: ").rstrip("\n") in lines[0]  # the same cause
    report = json.loads(out)
    assert report["mode"] == "subreaper"
    assert report["namespaces"] == {"pid": None, "mnt": None, "user": None}
    assert report["pid_in_namespace"] is None
    assert report["killed_at_shutdown"]["count"] >= 2


@pytest.mark.parametrize(("who", "setup"), CASES)
def test_a_sigkilled_launcher_leaves_nothing(who: str, setup: Callable[[], None]) -> None:
    def scenario() -> tuple[int, list[int]]:
        confine(setup, who)
        with Marker() as marker:
            pid = start_lingering_family(marker)
            assert wait_for(lambda: len(marker.processes("sleep")) >= 3)
            os.kill(pid, signal.SIGKILL)
            return exit_status(pid), marker.survivors()

    status, left = in_child(scenario, subreaper=True)
    assert status == -9
    assert left == []


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_signals_are_forwarded_and_the_status_kept(who: str) -> None:
    def scenario() -> tuple[int, str]:
        confine(no_user_namespaces, who)
        script = 'trap "echo got-TERM; exit 7" TERM; echo ready; while :; do sleep 0.02; done'
        read_end = -1
        pid, read_end = fork_cli(["run", "--fallback", "subreaper", "--", "sh", "-c", script])
        with os.fdopen(read_end) as out:
            assert out.readline() == "ready\n"
            os.kill(pid, signal.SIGTERM)
            return exit_status(pid), out.readline()

    assert in_child(scenario, subreaper=True) == (7, "got-TERM\n")


def test_a_fork_storm_is_frozen_before_it_is_killed() -> None:
    """Processes that fork as fast as they can while the command exits: the tree is
    stopped until a walk finds nothing new, so none forks away from the kill."""

    def scenario() -> tuple[int, list[int], int]:
        confine(no_user_namespaces, "nobody")
        storm = "for i in 1 2 3 4; do (while :; do (sleep 1000 &); done) & done; sleep 0.3; exit 5"
        with Marker() as marker:
            os.chdir(marker.path)
            status, out, _ = cli_captured(
                ["run", "--fallback", "subreaper", "--json-report", "-", "--", "sh", "-c", storm]
            )
            left = others(marker)
            os.chdir("/")
        return status, left, json.loads(out)["killed_at_shutdown"]["count"]

    status, left, killed = in_child(scenario, subreaper=True)
    assert (status, left) == (5, [])
    assert killed > 4


def test_the_environment_variable_and_bad_values() -> None:
    def scenario() -> list[tuple[int, str, str]]:
        confine(no_user_namespaces, "nobody")
        os.environ[launcher.FALLBACK_ENV] = "subreaper"
        results = [cli_captured(["run", "--", "sh", "-c", "echo $$ > /dev/null; exit 4"])]
        results.append(cli_captured(["run", "--fallback", "fail", "--", "true"]))
        os.environ[launcher.FALLBACK_ENV] = "sometimes"
        results.append(cli_captured(["run", "--", "true"]))
        del os.environ[launcher.FALLBACK_ENV]
        results.append(cli_captured(["run", "--fallback", "bogus", "--", "true"]))
        results.append(cli_captured(["run", "--fallback", "subreaper", "--as-pid-1", "true"]))
        return results

    env, fail, bad_env, bad, as_pid_1 = in_child(scenario)
    assert env[0] == 4
    assert env[2].endswith(NOTICE + "\n")
    assert fail[0] == 125
    assert bad_env[0] == 2
    assert (
        "$PIDNS_FALLBACK: fallback must be one of ('fail', 'subreaper'), not 'sometimes'"
        in (bad_env[2])
    )
    assert bad[0] == 2
    assert "not 'bogus'" in bad[2]
    assert as_pid_1[0] == 2
    assert "as-pid-1 needs a pid namespace" in as_pid_1[2]


def test_where_a_namespace_works_the_fallback_is_not_used() -> None:
    status, out, err = in_child(
        lambda: cli_captured(
            ["run", "--fallback", "subreaper", "--json-report", "-", "--", "sh", "-c", "echo $$"]
        )
    )
    assert status == 0, err
    assert err == ""
    pid, report = out.split("\n", 1)
    assert pid == "2"
    assert json.loads(report)["mode"] == "namespace"


def test_a_masked_proc_keeps_the_pid_namespace_without_a_fresh_proc() -> None:
    """Only the fresh /proc is refused there: the fallback keeps the pid namespace (more
    than a subreaper gives) and leaves /proc as it is, as --no-mount-proc does."""

    def scenario() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
        confinement.mask_proc()
        drop_privileges()
        refused = cli_captured(["run", "--", "true"])
        script = "echo $$; " + FAMILY
        ran = cli_captured(
            ["run", "--fallback", "subreaper", "--json-report", "-", "--", "sh", "-c", script]
        )
        return refused, ran

    with Marker() as marker:
        os.chmod(marker.path, 0o777)  # uid 65534 writes the family's marker files there

        def in_marker() -> tuple[tuple[int, str, str], tuple[int, str, str]]:
            os.chdir(marker.path)
            return scenario()

        refused, (status, out, err) = in_child(in_marker, subreaper=True)
        left = marker.processes()
    assert refused[0] == 125
    assert "masked path(s)" in refused[2]
    assert "use --no-mount-proc" in refused[2]
    assert status == 3, err
    assert left == []
    pid, report_text = out.split("\n", 1)
    assert pid == "2"  # still isolated
    report = json.loads(report_text)
    assert report["mode"] == "namespace"
    assert report["namespaces"]["mnt"] is None
    assert report["fallback_reason"] == refused[2].removeprefix("pidns run: ").rstrip("\n")
    assert err == (
        f"pidns run: a fresh /proc cannot be mounted here ({report['fallback_reason']}); "
        "running sh in a pid namespace without one: /proc shows the host's processes\n"
    )


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_the_api_falls_back_warns_and_kills_the_whole_tree(who: str) -> None:
    def scenario() -> tuple[str, int, list[str], list[int], int | None]:
        confine(no_user_namespaces, who)
        with warnings.catch_warnings(record=True) as caught, Marker() as marker:
            warnings.simplefilter("always")
            result = pidns.api.run(
                ["sh", "-c", "echo $$"], capture_output=True, fallback="subreaper"
            )
            with pidns.api.Popen(
                ["sh", "-c", LINGERING], cwd=marker.path, fallback="subreaper"
            ) as proc:
                assert wait_for(lambda: os.path.exists(os.path.join(marker.path, "ready")))
                proc.kill()
                proc.wait()
            left = marker.processes()
        mode = result.report["mode"]
        kinds = [w.category.__name__ for w in caught]
        return mode, int(result.stdout), kinds, left, proc.returncode

    mode, pid, kinds, left, returncode = in_child(scenario, subreaper=True)
    assert mode == "subreaper"
    assert pid > 2  # a host pid: not isolated
    assert kinds.count("FallbackWarning") == 2
    assert left == []
    assert returncode == -9


def test_the_api_without_fallback_raises_setup_error() -> None:
    def scenario() -> str:
        confine(no_user_namespaces, "nobody")
        try:
            pidns.api.run(["true"])
        except pidns.api.SetupError as exc:
            return str(exc)
        return "no error"

    assert "user.max_user_namespaces = 0" in in_child(scenario)


def delegated_cgroup() -> str:
    """A cgroup below root's own, delegated to uid 65534 (owner of the directory and of
    cgroup.procs, as systemd delegates a user's): skips where root has no writable one."""
    parent = pidns.linux.subreaper.cgroup_dir()
    if parent is None:
        pytest.skip("no writable cgroup v2 here")
    path = os.path.join(parent, f"pidns-test-{os.getpid()}")
    os.mkdir(path)
    for name in ("", "cgroup.procs", "cgroup.threads", "cgroup.subtree_control"):
        os.chown(os.path.join(path, name), 65534, 65534)
    return path


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_where_a_cgroup_is_delegated_the_command_is_born_in_one_of_its_own(who: str) -> None:
    delegated = delegated_cgroup() if who == "nobody" else None
    if who == "root" and pidns.linux.subreaper.cgroup_dir() is None:
        pytest.skip("no writable cgroup v2 here")

    def scenario() -> tuple[int, str, str, list[str], list[int]]:
        if delegated is not None:
            with open(os.path.join(delegated, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        confine(no_user_namespaces, who)
        mine = pidns.linux.subreaper.cgroup_dir()
        assert mine is not None
        with Marker() as marker:
            os.chdir(marker.path)
            script = 'grep ^0:: /proc/self/cgroup; echo "$PPID"; ' + FAMILY
            status, out, err = cli_captured(
                ["run", "--fallback", "subreaper", "--", "sh", "-c", script]
            )
            os.chdir("/")
            left = others(marker)
        return status, out, err, sorted(os.listdir(mine)), left

    try:
        status, out, err, entries, left = in_child(scenario, subreaper=True)
    finally:
        if delegated is not None:
            os.rmdir(delegated)
    assert status == 3, err
    assert left == []
    cgroup, init = out.splitlines()
    assert cgroup.endswith(f"/pidns-{init}")
    if delegated is not None:  # below the delegated one, not beside it
        with open("/proc/self/cgroup") as f:
            own = next(line[3:].strip() for line in f if line.startswith("0::"))
        below = f"{own.rstrip('/')}/{os.path.basename(delegated)}/pidns-{init}"
        assert cgroup == f"0::{below}"
    assert f"pidns-{init}" not in entries  # removed once empty


def test_a_sigkilled_launcher_leaves_no_cgroup_behind() -> None:
    if pidns.linux.subreaper.cgroup_dir() is None:
        pytest.skip("no writable cgroup v2 here")

    def scenario() -> tuple[int, list[int], bool]:
        confine(no_user_namespaces, "root")
        with Marker() as marker:
            pid = start_lingering_family(marker)
            init = pidns.linux.subreaper.children(pid)[0]
            cgroup = pidns.linux.subreaper.cgroup_for(init)
            assert cgroup is not None
            os.kill(pid, signal.SIGKILL)
            status = exit_status(pid)
            gone = wait_for(lambda: not os.path.exists(cgroup))
            return status, marker.survivors(), gone

    status, left, gone = in_child(scenario, subreaper=True)
    assert (status, left, gone) == (-9, [], True)


def test_the_fallback_under_a_hidepid_proc_still_finds_every_descendant() -> None:
    """hidepid hides other users' processes, never the caller's own: the tree walk of
    the subreaper still sees all of it."""

    def scenario() -> tuple[int, list[int], int]:
        confinement.hidepid_proc()
        drop_privileges()
        no_user_namespaces()
        with Marker() as marker:
            os.chdir(marker.path)
            status, out, _ = cli_captured(
                ["run", "--fallback", "subreaper", "--json-report", "-", "--", "sh", "-c", FAMILY]
            )
            os.chdir("/")
            left = others(marker)
        return status, left, json.loads(out)["killed_at_shutdown"]["count"]

    status, left, killed = in_child(scenario, subreaper=True)
    assert (status, left) == (3, [])
    assert killed >= 2


@pytest.mark.parametrize("who", ["root", "nobody"])
def test_even_a_sigkilled_init_leaves_nothing_behind_pidns_run(who: str) -> None:
    """The subreaper itself SIGKILLed (not by the launcher): its orphans go to the
    launcher (a subreaper too, on the command line), which kills them; where a cgroup is
    delegated, its cgroup.kill gets them first."""

    def scenario() -> tuple[int, list[int]]:
        confine(no_user_namespaces, who)
        with Marker() as marker:
            pid = start_lingering_family(marker)
            init = pidns.linux.subreaper.children(pid)[0]
            os.kill(init, signal.SIGKILL)
            return exit_status(pid), marker.survivors()

    status, left = in_child(scenario, subreaper=True)
    assert left == []
    assert status == 128 + signal.SIGKILL


def test_even_a_sigkilled_init_leaves_nothing_behind_the_api() -> None:
    """The API's init (made by the namespace server) SIGKILLed by someone else: what it
    started is left in the cgroup the init made, and the end of the Popen kills it there
    (cgroup.kill, the cleanup ``pidns run`` does too: subreaper.clean_up_after) and
    removes the cgroup."""
    if pidns.linux.subreaper.cgroup_dir() is None:
        pytest.skip("no writable cgroup v2 here")

    def scenario() -> tuple[int | None, list[int], bool, bool]:
        confine(no_user_namespaces, "root")
        with warnings.catch_warnings(), Marker() as marker:
            warnings.simplefilter("ignore")
            with pidns.api.Popen(
                ["sh", "-c", LINGERING], cwd=marker.path, fallback="subreaper"
            ) as proc:
                assert wait_for(lambda: os.path.exists(os.path.join(marker.path, "ready")))
                init = proc.init_pid
                cgroup = pidns.linux.subreaper.cgroup_for(init)
                os.kill(init, signal.SIGKILL)
                proc.wait()
            left = marker.survivors()
        return proc.returncode, left, cgroup is not None, bool(cgroup and os.path.exists(cgroup))

    returncode, left, had_cgroup, cgroup_left = in_child(scenario, subreaper=True)
    assert had_cgroup
    assert left == []
    assert not cgroup_left
    assert returncode == -signal.SIGKILL
