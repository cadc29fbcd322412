"""Bad input and hostile surroundings on the command line: one line, a documented status.

Unbounded input (/dev/zero as a scenario), numbers no kernel takes (huge pids, Unicode
digits, a repeated --target), output to a full device, a closed stderr, no /proc for
the introspection and check commands, a world that cannot be made (user namespaces off),
and a step by a process whose fork never completed (its parent stopped itself).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest

import confinement
import pidns

# Imported now: a child that has become uid 65534 can no longer read /root's stdlib.
import pidns.cli.check
import pidns.linux.diagnose
import pidns.scenario.real
from pidns.core import flags as cf
from pidns.linux import mounts, syscalls
from test_run_support import PIDNS, cli_captured, drop_privileges, in_child, needs_root, run_cli

pytestmark = [pytest.mark.real, needs_root]
assert pidns.cli.check and pidns.linux.diagnose and pidns.scenario.real and resource  # loaded

STOPPED_FORK = "A: kill 0 STOP\nA: fork -> B\nB: getpid\n"


def test_a_scenario_from_dev_zero_is_refused_at_once() -> None:
    for name in ("sim", "check"):
        result = run_cli(name, "/dev/zero", timeout=30)
        assert result.returncode == 2
        assert result.stderr == "/dev/zero:1:1: larger than 1048576 bytes: not a scenario\n"


def test_a_step_of_a_child_whose_fork_blocked_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "stopped.pidns"
    path.write_text(STOPPED_FORK)
    for name in ("sim", "check"):
        result = run_cli(name, str(path), timeout=60)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
        assert "B: getpid       -> skipped" in result.stdout or name == "check"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["pid", "99999999999999999999"], "pidns pid: not a pid: '99999999999999999999'"),
        (["pid", "\u0663"], "pidns pid: not a pid: '\u0663'"),
        (
            ["exec", "--target", "99999999999999999999", "--", "true"],
            "pidns exec: --target needs a pid (a number from 1 to 4194304), "
            "not '99999999999999999999'",
        ),
        (
            ["exec", "--target", "\u0663", "--", "true"],
            "pidns exec: --target needs a pid (a number from 1 to 4194304), not '\u0663'",
        ),
        (["exec", "-t", "1", "-t", "2", "--", "true"], "pidns exec: --target is given more"),
        (["sim", "--world-level", "-5", "x.pidns"], "pidns sim: --world-level needs a number"),
    ],
)
def test_numbers_no_kernel_takes_are_bad_usage(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize("args", [["ls"], ["tree"], ["pid", "1"], ["--help"], ["help", "run"]])
def test_output_to_a_full_device_is_one_line_and_status_1(args: list[str]) -> None:
    with open("/dev/full", "w") as full:
        result = run_cli(*args, stdout=full, capture_output=False, stderr=subprocess.PIPE)
    assert result.returncode == 1
    assert result.stderr.endswith("cannot write the output: No space left on device\n")
    assert len(result.stderr.splitlines()) == 1


def test_help_for_a_command_shows_its_own_help_and_v_is_the_version() -> None:
    assert run_cli("help", "run").stdout == run_cli("run", "--help").stdout
    assert run_cli("-V").stdout == run_cli("--version").stdout == f"pidns {pidns.__version__}\n"


def test_with_stderr_closed_errors_never_go_to_stdout() -> None:
    result = subprocess.run(
        [*PIDNS, "run", "--no-such-option"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        check=False,
        preexec_fn=lambda: os.close(2),
    )
    assert (result.returncode, result.stdout) == (2, "")


def _without_proc() -> None:
    syscalls.unshare(cf.NEWNS)
    mounts.make_private_recursive()
    syscalls.umount("/proc", syscalls.MNT_DETACH)


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["run", "--", "sh", "-c", "exit 3"], 3),  # it mounts a /proc of its own
        (["ls"], 2),  # /proc is their input: it cannot be read
        (["tree"], 2),
        (["pid", "1"], 2),
        (["check", "examples/01_seed_login_flow.pidns"], 125),
        (["demo"], 125),
    ],
)
def test_without_proc_each_command_says_so(args: list[str], status: int) -> None:
    def body() -> tuple[int, str, str]:
        _without_proc()
        return cli_captured(args)

    got, _, err = in_child(body)
    assert got == status, err
    assert "Traceback" not in err and "internal error" not in err
    if status != 3:
        assert len(err.splitlines()) == 1, err
        assert "/proc" in err, err


@pytest.mark.skipif(not confinement.seccomp_supported, reason="x86_64 only")
@pytest.mark.parametrize("args", [["demo"], ["check", "--random", "3", "--seed", "1"]])
def test_a_world_that_cannot_be_made_is_a_setup_failure(args: list[str], tmp_path: Path) -> None:
    """Unprivileged, with user namespaces off: 125 and the cause, never a divergence."""
    save = str(tmp_path / "saved")

    def body() -> tuple[int, str, str]:
        drop_privileges()
        confinement.disable_user_namespaces()
        confinement.drop_capability()
        return cli_captured([*args, "--save", save] if args[0] == "check" else args)

    status, _, err = in_child(body)
    assert status == 125, err
    assert err.splitlines()[-1].startswith(f"pidns {args[0]}: cannot make the world: user")
    assert not os.path.exists(save) or os.listdir(save) == []


# -- reports and messages ----------------------------------------------------------------


def test_a_quick_commands_report_names_every_namespace(tmp_path: Path) -> None:
    """The init of `true` may be gone before the launcher reads its /proc: the ids then
    come from the init's own report of its namespaces, never null."""
    for _ in range(20):
        result = run_cli("run", "--json-report", "-", "--", "true")
        namespaces = json.loads(result.stdout)["namespaces"]
        assert namespaces["pid"] is not None and namespaces["mnt"] is not None, namespaces


def test_a_setup_failure_leaves_an_existing_report_as_it_was(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text("the last run's report\n")
    result = run_cli("run", "--json-report", str(report), "--", "/nonexistent-pidns")
    assert result.returncode == 127
    assert report.read_text() == "the last run's report\n"
    assert run_cli("run", "--json-report", str(report), "--", "true").returncode == 0
    assert json.loads(report.read_text())["exit_status"] == 0


@pytest.mark.parametrize("target", ["/dev/full", "-"])
def test_a_report_that_cannot_be_written_is_status_2(target: str) -> None:
    with open("/dev/full", "w") as full:
        result = run_cli(
            "run", "--json-report", target, "--", "sh", "-c", "exit 3",
            stdout=full, capture_output=False, stderr=subprocess.PIPE,
        )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("pidns run: cannot write the report: ")
    assert len(result.stderr.splitlines()) == 1


def test_a_script_whose_interpreter_is_missing_is_126_bad_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/nonexistent/pidns-interpreter\necho hi\n")
    script.chmod(0o755)
    with pidns.Popen(["sleep", "100"]) as target:
        for name in ("run", "exec"):
            args = ["exec", "--target", str(target.pid)] if name == "exec" else ["run"]
            result = run_cli(*args, "--", str(script))
            assert result.returncode == 126
            assert result.stderr == (
                f"pidns {name}: {script}: bad interpreter /nonexistent/pidns-interpreter: "
                "No such file or directory\n"
            )
        target.kill()


def test_fixes_suggested_to_root_never_say_run_as_root() -> None:
    diagnose = pidns.linux.diagnose
    facts = diagnose.Facts()
    facts.sysctls["user.max_user_namespaces"] = 0
    assert "run as root" not in str(diagnose.refusal("clone", 28, user=True, facts=facts))


def test_a_limit_reached_above_us_does_not_suggest_raising_ours() -> None:
    diagnose = pidns.linux.diagnose
    facts = diagnose.Facts()
    facts.sysctls["user.max_user_namespaces"] = 2**31 - 1
    text = str(diagnose.refusal("clone", 28, user=True, facts=facts))
    assert text.startswith("a namespace limit of a parent user namespace is reached"), text
    assert "sysctl -w" not in text
