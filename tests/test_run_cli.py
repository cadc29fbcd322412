"""``pidns run`` as root, on the real kernel: pid numbers, /proc, exit statuses, usage."""

from __future__ import annotations

import json
import os

import pytest

from test_run_support import needs_root, proc_mounts, run_cli

pytestmark = [pytest.mark.real, needs_root]


def test_the_init_is_pid_1_and_the_command_pid_2() -> None:
    result = run_cli(
        "run", "--", "sh", "-c", 'echo "$$"; cat /proc/1/comm; set -- /proc/[0-9]*; echo "$@"'
    )
    assert result.returncode == 0, result.stderr
    pid, init_name, *visible = result.stdout.split()
    assert pid == "2"
    assert init_name == "pidns-init"
    # the shell's own glob (with ls | grep, ls could read /proc before grep was forked):
    # the fresh /proc shows the init and sh, nothing else
    assert visible == ["/proc/1", "/proc/2"]


def test_as_pid_1_makes_the_command_pid_1_without_an_init() -> None:
    result = run_cli("run", "--as-pid-1", "--", "sh", "-c", 'echo "$$"; cat /proc/1/comm')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "sh"]


def test_the_fresh_proc_belongs_to_the_new_namespace_and_the_hosts_is_untouched() -> None:
    before = proc_mounts()
    host_ns = os.readlink("/proc/self/ns/pid")
    result = run_cli(
        "run",
        "--",
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; readlink /proc/self; grep ' /proc ' /proc/self/mountinfo",
    )
    assert result.returncode == 0, result.stderr
    ns, self_link, mount_line = result.stdout.splitlines()[:3]
    assert ns != host_ns
    assert int(self_link) < 10  # readlink's own pid, in-namespace (the fresh procfs's view)
    assert "proc" in mount_line
    assert proc_mounts() == before
    assert os.readlink("/proc/self") == str(os.getpid())


def test_mounts_made_inside_stay_inside(tmp_path: os.PathLike[str]) -> None:
    target = os.fspath(tmp_path)
    result = run_cli(
        "run",
        "--",
        "sh",
        "-c",
        f"mount -t tmpfs pidns-test {target} && grep -c pidns-test /proc/self/mountinfo",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    with open("/proc/self/mountinfo") as f:
        assert "pidns-test" not in f.read()


def test_no_mount_proc_keeps_the_hosts_mounts_and_proc() -> None:
    result = run_cli(
        "run", "--no-mount-proc", "--", "sh", "-c", 'echo "$$"; readlink /proc/self/ns/mnt'
    )
    assert result.returncode == 0, result.stderr
    pid, mnt = result.stdout.split()
    assert pid == "2"
    assert mnt == os.readlink("/proc/self/ns/mnt")


@pytest.mark.parametrize(
    ("command", "status"),
    [
        ("exit 0", 0),
        ("exit 3", 3),
        ("exit 255", 255),
        ("kill -TERM $$", 128 + 15),  # the command killed by a signal: 128+S
        ("kill -KILL $$", 128 + 9),
    ],
)
def test_the_exit_status_is_the_commands(command: str, status: int) -> None:
    assert run_cli("run", "--", "sh", "-c", command).returncode == status
    as_pid_1 = run_cli("run", "--as-pid-1", "--", "sh", "-c", command).returncode
    if command.startswith("kill"):
        # pid 1 cannot kill itself with a signal it does not catch: the kernel drops
        # it (kernel/signal.c:sig_task_ignored, SIGNAL_UNKILLABLE), so sh exits 0
        assert as_pid_1 == 0
    else:
        assert as_pid_1 == status


def test_command_not_found_is_127_in_one_line() -> None:
    result = run_cli("run", "--", "no-such-command-pidns")
    assert result.returncode == 127
    assert result.stderr == "pidns run: no-such-command-pidns: command not found\n"
    result = run_cli("run", "--", "/no/such/path")
    assert result.returncode == 127


def test_not_executable_is_126_in_one_line(tmp_path: os.PathLike[str]) -> None:
    script = os.path.join(tmp_path, "script")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho hi\n")
    os.chmod(script, 0o644)
    for target in (script, os.fspath(tmp_path), "/etc/passwd"):
        result = run_cli("run", "--", target)
        assert result.returncode == 126, target
        assert result.stderr == f"pidns run: {target}: Permission denied\n"
    with open(script, "wb") as f:
        f.write(b"\x7fELF garbage")
    os.chmod(script, 0o755)
    result = run_cli("run", "--", script)
    assert result.returncode == 126
    assert result.stderr.count("\n") == 1 and "Exec format error" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--"],
        ["--bogus", "true"],
        ["--grace"],
        ["--grace", "soon", "--wait-all", "true"],
        ["--grace", "-1", "--wait-all", "true"],
        ["--timeout", "0", "true"],
        ["--timeout", "soon", "true"],
        ["--timeout", "-1s", "true"],
        ["--kill-signal", "NOPE", "true"],
        ["--parent-death-signal", "99", "true"],
        ["--rewrite-signal", "TERM", "true"],
        ["--rewrite-signal", "TERM:NOPE", "true"],
        ["--remap-exit", "300", "true"],
        ["--json-status-fd", "99", "true"],  # not open
        ["--json-status-fd", "x", "true"],
        ["--pid-file", "/nonexistent-pidns/pid", "true"],
        ["--as-pid-1", "--timeout", "1", "true"],
        ["--as-pid-1", "--rewrite-signal", "TERM:0", "true"],
        ["--as-pid-1", "--wait-all", "true"],
        ["--as-pid-1", "--forward-to-group", "true"],
        ["--map-root-user", "--map-current-user", "true"],
        ["--wait-all=yes", "true"],
        ["--json-report"],
    ],
)
def test_bad_usage_is_2_in_one_line(args: list[str]) -> None:
    result = run_cli("run", *args)
    assert result.returncode == 2, result
    assert result.stderr.startswith("pidns run: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_help_and_options_after_the_command_belong_to_it() -> None:
    result = run_cli("run", "--help")
    assert result.returncode == 0 and "--map-root-user" in result.stdout
    result = run_cli("run", "echo", "--as-pid-1", "-x")
    assert result.stdout == "--as-pid-1 -x\n"
    result = run_cli("run", "--fork", "--", "sh", "-c", 'echo "$$"')
    assert result.stdout == "2\n"


def test_the_json_report_describes_the_run(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "report.json")
    result = run_cli(
        "run",
        "--json-report",
        path,
        "--",
        "sh",
        "-c",
        'trap "" USR1; (true &); (true &); sleep 5 & sleep 0.2; kill -USR1 1; sleep 0.1; exit 4',
    )
    assert result.returncode == 4, result.stderr
    with open(path) as f:
        report = json.load(f)
    assert report["command"][:2] == ["sh", "-c"]
    assert report["exit_status"] == 4 and report["returncode"] == 4
    assert report["pid_in_namespace"] == 2
    assert set(report["namespaces"]) == {"pid", "mnt", "user"}
    assert report["namespaces"]["pid"] and report["namespaces"]["mnt"]
    assert report["namespaces"]["user"] is None  # root: no user namespace
    init_pid, cmd_pid = report["host_pids"]["init"], report["host_pids"]["command"]
    assert init_pid > 0 and cmd_pid > 0 and init_pid != cmd_pid
    assert report["orphans_reaped"] == 2  # the two subshells' children
    # `sleep 5 &` was still running when sh exited: killed at shutdown
    assert report["killed_at_shutdown"]["count"] == 1
    assert len(report["killed_at_shutdown"]["pids"]) == 1
    assert report["signals_forwarded"]["init"] == ["USR1"]  # kill -USR1 1 from inside
    timings = report["timings_ms"]
    assert all(timings[k] is not None and timings[k] >= 0 for k in timings), timings
    result = run_cli("run", "--json-report", "-", "--", "true")
    assert json.loads(result.stdout)["exit_status"] == 0


def test_an_unwritable_report_is_a_usage_error() -> None:
    result = run_cli("run", "--json-report", "/no/such/dir/report.json", "--", "true")
    assert result.returncode == 2
    assert result.stderr.startswith("pidns run: cannot write the report")
