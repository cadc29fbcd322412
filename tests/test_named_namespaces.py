"""``pidns run --pause``, ``--name``, ``pidns exec --name``, ``pidns ls`` and ``pidns stop``
on the real kernel, as root and as uid 65534: the registry under $XDG_RUNTIME_DIR/pidns."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Imported now: a child that has become uid 65534 can no longer read /root's stdlib.
import pidns.cli.introspect
import pidns.cli.stop
from pidns.linux import registry
from test_run_support import (
    NOBODY,
    PIDNS,
    Marker,
    cli_captured,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    read_line,
    run_cli,
    wait_for,
)

assert pidns.cli.introspect and pidns.cli.stop  # loaded

pytestmark = [pytest.mark.real, needs_root]


@pytest.fixture
def runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $XDG_RUNTIME_DIR, for this test's names alone."""
    directory = tmp_path / "runtime"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    return directory


def _recorded(name: str) -> bool:
    entry = registry.lookup(name)
    return entry is not None and entry.pid != 0


def _start_paused(name: str, *extra: str) -> subprocess.Popen[str]:
    launcher = subprocess.Popen(
        [*PIDNS, "run", "--pause", "--name", name, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    if not wait_for(lambda: _recorded(name) or launcher.poll() is not None, 30):
        launcher.kill()
    assert launcher.poll() is None, launcher.communicate()
    return launcher


def test_a_paused_namespace_is_joined_by_name_listed_and_stopped(runtime: Path) -> None:
    launcher = _start_paused("db")
    entry = registry.lookup("db")
    assert entry is not None
    with open(f"/proc/{entry.pid}/comm") as f:
        assert f.read().strip() == "pidns-init"
    assert os.readlink(f"/proc/{entry.pid}/cwd") == "/"  # as dumb-init's
    with Marker() as marker:
        joined = run_cli(
            "exec",
            "--name",
            "db",
            "--mount",
            "--",
            "sh",
            "-c",
            'sleep 1000 >/dev/null 2>&1 & setsid sleep 1000 >/dev/null 2>&1 & echo "$$"; '
            "cat /proc/1/comm",
            cwd=marker.path,
        )
        assert joined.returncode == 0, joined.stderr
        assert joined.stdout.split() == ["2", "pidns-init"]  # the first process after the init
        # Held by the paused namespace (the shell may return before its children exec sleep).
        assert wait_for(lambda: len(marker.processes("sleep")) == 2)
        listed = json.loads(run_cli("ls", "--json").stdout)["namespaces"]
        (row,) = [ns for ns in listed if ns["name"] == "db"]
        assert row["inode"] == entry.pid_ns and row["init"] == entry.pid
        assert " db " in run_cli("ls").stdout
        stopped = run_cli("stop", "db")
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert marker.processes() == []  # the moment stop returns, nothing is left
    out, err = launcher.communicate(timeout=30)
    assert (launcher.returncode, out, err) == (0, "", "")  # catatonit -P's status too
    assert list(runtime.joinpath("pidns").iterdir()) == []
    assert run_cli("stop", "db").returncode == 1
    missing = run_cli("exec", "--name", "db", "--", "true")
    assert missing.returncode == 125
    assert missing.stderr == "pidns exec: no namespace named 'db' (see pidns ls)\n"


def test_a_named_command_is_stopped_through_its_init(runtime: Path) -> None:
    launcher = subprocess.Popen(
        [*PIDNS, "run", "--name", "web", "--", "sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"],
        start_new_session=True,
    )
    assert wait_for(lambda: _recorded("web"), 30)
    assert run_cli("stop", "web").returncode == 0
    assert launcher.wait(timeout=30) == 7  # the TERM was forwarded to the command


def test_the_pause_ends_on_term_int_and_hup_to_the_launcher(runtime: Path) -> None:
    for number, sig in enumerate((signal.SIGTERM, signal.SIGINT, signal.SIGHUP)):
        launcher = _start_paused(f"p{number}")
        launcher.send_signal(sig)
        assert launcher.wait(timeout=30) == 0
        assert registry.lookup(f"p{number}") is None


def test_a_sigkilled_launcher_leaves_a_stale_entry_that_readers_remove(runtime: Path) -> None:
    launcher = _start_paused("gone")
    entry = registry.lookup("gone")
    assert entry is not None
    launcher.kill()
    launcher.wait()
    assert wait_for(lambda: not os.path.exists(f"/proc/{entry.pid}"), 30)
    assert (runtime / "pidns" / "gone").exists()  # nobody cleaned it up
    assert '"gone"' not in run_cli("ls", "--json").stdout
    assert not (runtime / "pidns" / "gone").exists()  # ls removed it
    launcher = _start_paused("gone")  # and the name is free again
    again = registry.lookup("gone")
    assert again is not None
    launcher.kill()
    launcher.wait()
    assert wait_for(lambda: not os.path.exists(f"/proc/{again.pid}"), 30)
    result = run_cli("exec", "--name", "gone", "--", "true")
    assert result.returncode == 125
    assert result.stderr == "pidns exec: namespace 'gone' has ended (stale entry removed)\n"
    assert run_cli("stop", "gone").returncode == 1


def test_a_reused_pid_is_not_taken_for_the_init(runtime: Path) -> None:
    """An entry whose pid now names another process (its start time differs) is stale."""
    with Marker() as marker:
        other = subprocess.Popen(["sleep", "1000"], cwd=marker.path)
        try:
            directory = runtime / "pidns" / "old"
            directory.mkdir(parents=True)
            (directory / "init").write_text(f"pid={other.pid}\nstart=1\npid_ns=1\n")
            assert run_cli("stop", "old").returncode == 1
            assert other.poll() is None  # never signalled
            assert not directory.exists()
        finally:
            other.kill()
            other.wait()


def test_a_name_is_taken_once(runtime: Path) -> None:
    launcher = _start_paused("one")
    try:
        again = run_cli("run", "--pause", "--name", "one")
        assert again.returncode == 125
        assert again.stderr.startswith("pidns run: a namespace named 'one' is running already")
        assert again.stderr.count("\n") == 1
    finally:
        launcher.terminate()
        assert launcher.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--pause", "--", "true"], "--pause takes no command (not 'true')"),
        (["run", "--name", "a/b", "true"], "--name: a namespace name is letters, digits"),
        (["run", "--name", "-x", "true"], "--name: a namespace name cannot start with '-'"),
        (["run", "--name", "x" * 65, "true"], "--name: a namespace name has at most 64"),
        (["run", "--name=", "true"], "--name: a namespace name cannot be empty"),
        (["exec", "--name", "..", "true"], "--name: a namespace name cannot start with '.'"),
        (["exec", "--name", "a", "--target", "1", "true"], "give one --target or --name"),
        (["stop"], "no namespace named"),
        (["stop", "a b"], "a namespace name is letters, digits"),
        (["stop", "--grace", "soon", "a"], "--grace needs a number of seconds"),
    ],
)
def test_bad_names_and_usage_are_2_with_one_line(
    runtime: Path, args: list[str], message: str
) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(f"pidns {args[0]}: {message}"), result.stderr
    assert result.stderr.count("\n") == 1


def test_an_unwritable_registry_is_a_setup_failure_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/dev/null")
    result = run_cli("run", "--pause", "--name", "x")
    assert result.returncode == 125
    assert result.stderr.startswith("pidns run: cannot make the registry of named namespaces")
    assert result.stderr.count("\n") == 1


def test_unprivileged_pause_exec_ls_and_stop() -> None:
    # not under tmp_path: pytest's base directory is root's alone (0700)
    directory = Path(tempfile.mkdtemp(prefix="pidns-test-runtime-"))
    os.chown(directory, NOBODY, NOBODY)

    def scenario() -> dict[str, object]:
        os.environ["XDG_RUNTIME_DIR"] = str(directory)
        pid, read_end = fork_cli(["run", "--pause", "--name", "mine"])
        os.close(read_end)
        try:
            assert wait_for(lambda: _recorded("mine"), 30)
            entry = registry.lookup("mine")
            assert entry is not None
            # in a child of its own: pidns exec joins the namespaces itself
            command = 'echo "$$"; id -u'
            child, out = fork_cli(["exec", "--name", "mine", "-m", "--", "sh", "-c", command])
            with os.fdopen(out) as f:
                joined = (exit_status(child), f.read())
            listed = cli_captured(["ls", "--json"])
            stopped = cli_captured(["stop", "mine"])
        except BaseException:
            os.kill(pid, signal.SIGKILL)  # the init sees its launcher die and ends it all
            raise
        finally:
            status = exit_status(pid)
        return {
            "joined": joined,
            "names": [ns["name"] for ns in json.loads(listed[1])["namespaces"] if ns["name"]],
            "stopped": stopped,
            "launcher": status,
            "left": os.listdir(directory / "pidns"),
            "init_alive": os.path.exists(f"/proc/{entry.pid}"),
        }

    try:
        seen = in_child(scenario, nobody=True, timeout=30)
    finally:
        shutil.rmtree(directory)
    assert seen["joined"] == (0, "2\n0\n")  # root of the namespace's user namespace
    assert seen["names"] == ["mine"]
    assert seen["stopped"] == (0, "", "")
    assert seen["launcher"] == 0
    assert seen["left"] == []
    assert seen["init_alive"] is False


# -- pidns stop --grace: SIGTERM to every process of the namespace, SIGKILL after the grace ---

# a process that traps TERM, notes it, and keeps running (only SIGKILL ends it)
STUBBORN = 'trap "echo termed > stubborn" TERM; echo ready; while :; do sleep 0.05; done'
# one that needs a moment after TERM to clean up, then exits
CAREFUL = (
    'trap "sleep 0.3; echo cleaned > careful; exit 0" TERM; echo ready; '
    "while :; do sleep 0.05; done"
)


def _inside(marker: Marker) -> list[int]:
    """The test's processes in the namespace (pidns exec itself, outside, exits after)."""
    return marker.processes("sh") + marker.processes("sleep")


def _joined(name: str, script: str, cwd: str) -> subprocess.Popen[str]:
    joined = subprocess.Popen(
        [*PIDNS, "exec", "--name", name, "--", "sh", "-c", script],
        stdout=subprocess.PIPE, text=True, cwd=cwd, start_new_session=True,
    )  # fmt: skip
    assert joined.stdout is not None and joined.stdout.readline() == "ready\n"
    return joined


def test_stop_gives_joined_processes_the_grace_then_kills(runtime: Path) -> None:
    launcher = _start_paused("g")
    with Marker() as marker:
        stubborn = _joined("g", STUBBORN, marker.path)
        careful = _joined("g", CAREFUL, marker.path)
        started = time.monotonic()
        stopped = run_cli("stop", "--grace", "1.5", "g")
        took = time.monotonic() - started
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert _inside(marker) == []  # the moment stop returns
        assert took >= 1.5  # the stubborn one was killed only once the grace was over
        assert Path(marker.path, "stubborn").read_text() == "termed\n"  # TERM came first
        assert Path(marker.path, "careful").read_text() == "cleaned\n"  # had its 0.3 s
        assert careful.wait(timeout=30) == 0
        assert stubborn.wait(timeout=30) == 128 + signal.SIGKILL
    assert launcher.wait(timeout=30) == 0  # a paused namespace's end is status 0


def test_stop_of_a_command_gives_the_other_processes_the_grace(runtime: Path) -> None:
    with Marker() as marker:
        script = f"sh -c {shlex.quote(CAREFUL)} & trap 'exit 7' TERM; while :; do sleep 0.05; done"
        launcher = subprocess.Popen(
            [*PIDNS, "run", "--name", "web", "--", "sh", "-c", script],
            cwd=marker.path, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert launcher.stdout is not None and launcher.stdout.readline() == "ready\n"
        started = time.monotonic()
        stopped = run_cli("stop", "--grace", "30", "web")
        assert (stopped.returncode, stopped.stderr) == (0, "")
        assert time.monotonic() - started < 25  # everything ended by itself, no SIGKILL wait
        assert _inside(marker) == []
        # the command's exit on TERM did not SIGKILL the rest at once (as a run's end does)
        assert Path(marker.path, "careful").read_text() == "cleaned\n"
        assert launcher.wait(timeout=30) == 7


def test_stop_grace_zero_kills_at_once_and_a_plain_term_still_ends_a_pause(runtime: Path) -> None:
    launcher = _start_paused("z")
    with Marker() as marker:
        stubborn = _joined("z", STUBBORN, marker.path)
        assert run_cli("stop", "--grace", "0", "z").returncode == 0
        assert _inside(marker) == []
        assert stubborn.wait(timeout=30) == 128 + signal.SIGKILL
    assert launcher.wait(timeout=30) == 0


def test_unprivileged_stop_gives_the_grace() -> None:
    directory = Path(tempfile.mkdtemp(prefix="pidns-test-runtime-"))
    os.chown(directory, NOBODY, NOBODY)

    def scenario() -> dict[str, object]:
        os.environ["XDG_RUNTIME_DIR"] = str(directory)
        pid, read_end = fork_cli(["run", "--pause", "--name", "mine"])
        os.close(read_end)
        try:
            assert wait_for(lambda: _recorded("mine"), 30)
            child, out = fork_cli(
                ["exec", "--name", "mine", "--", "sh", "-c", STUBBORN], cwd=str(directory)
            )
            ready = read_line(out, 30)
            started = time.monotonic()
            stopped = cli_captured(["stop", "--grace", "1", "mine"])
            took = time.monotonic() - started
            joined = exit_status(child)
            os.close(out)
        except BaseException:
            os.kill(pid, signal.SIGKILL)
            raise
        finally:
            status = exit_status(pid)
        return {
            "ready": ready,
            "stopped": stopped,
            "took": took,
            "joined": joined,
            "note": (directory / "stubborn").read_text(),
            "launcher": status,
        }

    try:
        seen = in_child(scenario, nobody=True, timeout=60)
    finally:
        shutil.rmtree(directory)
    assert seen["ready"] == "ready\n"
    assert seen["stopped"] == (0, "", "")
    assert isinstance(seen["took"], float) and seen["took"] >= 1.0
    assert seen["note"] == "termed\n"
    assert seen["joined"] == 128 + signal.SIGKILL
    assert seen["launcher"] == 0
