"""The pytest plugin (pidns.pytest_plugin) and the report's named leftovers, on the real
kernel: as root (pytest in a subprocess, on a test file of its own) and as uid 65534 (in a
user namespace of its own, as under ``pidns run --map-current-user -- pytest``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import pidns.pytest_plugin
from pidns.core import flags as cf
from pidns.linux import syscalls
from test_run_support import cli_as_nobody, in_child, needs_root, run_cli

pytestmark = [pytest.mark.real, needs_root]

# Background processes that say so once they run their own program (not a shell still
# about to exec): the leftovers' command lines are then known when the test ends.
UP = "import sys, time; sys.stdout.write(chr(49)); sys.stdout.flush(); time.sleep(1000)"
TESTS = f"""
import subprocess, sys

def _started(command, count):
    process = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, text=True)
    assert process.stdout.read(count) == "1" * count  # one "1" from each, once it runs
    process.wait()

def test_leaks(pidns_namespace):
    py = sys.executable
    _started(f"{{py}} -c '{UP}' & setsid {{py}} -c '{UP}' &", 2)

def test_forgets_to_wait(pidns_namespace):
    subprocess.Popen(["sleep", "1002"])

def test_clean(pidns_namespace):
    assert subprocess.run(["sh", "-c", "echo $$"], capture_output=True).stdout == b"2\\n"
    subprocess.run(["sh", "-c", "sleep 0.2 & wait"], check=True)

def test_without_the_fixture():
    assert subprocess.run(["true"]).returncode == 0
"""


def _pytest(tmp_path: Path, *plugin: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_subject.py").write_text(TESTS)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            *plugin,
            "-q",
            "-p",
            "no:cacheprovider",
            "test_subject.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("plugin", [("-p", "pidns.pytest_plugin"), ()], ids=["-p", "entry point"])
def test_the_fixture_fails_a_test_naming_what_it_left(tmp_path: Path, plugin: tuple[str]) -> None:
    result = _pytest(tmp_path, *plugin)
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "4 passed, 2 errors" in out, out  # the two that leaked fail at their teardown
    assert "ERROR at teardown of test_leaks" in out
    assert "2 process(es) left running by the test (now killed):" in out
    report = out.split("short test summary info")[0]  # on CI the summary repeats messages in full
    assert report.count(f" -c {UP}") == 2  # the one setsid made too
    assert "ERROR at teardown of test_forgets_to_wait" in out and ": sleep 1002" in out
    assert "sleep 0.2" not in out  # waited for: not a leftover
    for line in report.splitlines():
        if UP in line or ": sleep 1002" in line:
            assert line.lstrip().startswith("pid ") and " s): " in line  # pid, age, argv


def test_the_plugin_costs_import_pidns_nothing() -> None:
    code = "import sys, pidns; print('pytest' in sys.modules, 'pidns.pytest_plugin' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


# until the background sh has become sleep (builtins only: no pid is spent), or the
# report would rightly name the sh it killed
EXECED = 'sleep 1000 >/dev/null & until read c </proc/$!/comm && [ "$c" = sleep ]; do :; done; '


def test_the_report_names_what_was_killed_at_shutdown() -> None:
    result = run_cli("run", "--json-report", "-", "--", "sh", "-c", EXECED + "exec sleep 0.2")
    assert result.returncode == 0, result.stderr
    killed = json.loads(result.stdout)["killed_at_shutdown"]
    (process,) = killed["processes"]
    assert process["argv"] == ["sleep", "1000"]
    assert process["pid"] == 3 and 0.1 < process["age_s"] < 30
    assert killed["count"] == 1 and killed["pids"] == [3]


def test_the_report_names_them_unprivileged_too() -> None:
    status, out, err = cli_as_nobody(
        "run", "--json-report", "-", "--", "sh", "-c", EXECED + "exec true"
    )
    assert status == 0, err
    processes = json.loads(out)["killed_at_shutdown"]["processes"]
    assert [p["argv"] for p in processes] == [["sleep", "1000"]]


def _own_namespaces() -> None:
    """What ``pidns run --map-current-user -- pytest`` gives pytest: uid 65534 mapped to
    itself, CAP_SYS_ADMIN over a user namespace of its own, and a pid namespace that the
    user namespace owns (the next child is its pid 1, and runs the scenario)."""
    syscalls.unshare(cf.NEWUSER | cf.NEWPID)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/self/{name}", "w") as f:
            f.write("65534 65534 1")


def test_unprivileged_under_map_current_user_the_jail_names_the_leftovers() -> None:
    def jailed() -> tuple[list[dict[str, object]], list[dict[str, object]], int]:
        with_leaks = pidns.pytest_plugin.Jail().open()
        subprocess.run(["sh", "-c", "sleep 1000 >/dev/null 2>&1 & sleep 0.3"], check=True)
        inside = subprocess.run(
            ["sh", "-c", 'echo "$$"'], capture_output=True, text=True, check=True
        )
        left = with_leaks.close()
        clean = pidns.pytest_plugin.Jail().open()
        subprocess.run(["true"], check=True)
        return left, clean.close(), int(inside.stdout)

    def scenario() -> tuple[list[dict[str, object]], list[dict[str, object]], int]:
        _own_namespaces()
        return in_child(jailed)

    left, nothing, pid_inside = in_child(scenario, nobody=True)
    assert [p["argv"] for p in left] == [["sleep", "1000"]]
    assert nothing == []
    assert pid_inside == 5  # after the init (1), the first sh (2) and its two sleeps


def test_unprivileged_without_a_user_namespace_the_reason_is_one_line() -> None:
    def scenario() -> str:
        try:
            pidns.pytest_plugin.Jail().open()
        except PermissionError as exc:
            return str(exc)
        return "opened"

    message = in_child(scenario, nobody=True)
    assert message.startswith("the pidns_namespace fixture needs CAP_SYS_ADMIN")
    assert "pidns run --map-current-user -- pytest" in message and "\n" not in message


def test_pytest_stays_in_its_own_pid_namespace_after_the_fixture(
    pidns_namespace: pidns.pytest_plugin.Jail,
) -> None:
    """This test uses the fixture itself: its children are in the jail, pytest is not."""
    child = subprocess.run(
        ["readlink", "/proc/self/ns/pid"], capture_output=True, text=True, check=True
    )
    assert child.stdout.strip() == os.readlink(f"/proc/{pidns_namespace.init_pid}/ns/pid")
    assert os.readlink("/proc/self/ns/pid") != child.stdout.strip()
