"""``pidns run``'s streaming status on the real kernel, as root and as uid 65534:
--json-status-fd (bwrap's JSON Lines), --pid-file, --verbose, and socket activation
(LISTEN_PID rewritten, the fds passed through)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from test_run_support import PIDNS, cli_captured, in_child, needs_root, run_cli

pytestmark = [pytest.mark.real, needs_root]


def _status_lines(fd_text: str) -> list[dict[str, int]]:
    return [json.loads(line) for line in fd_text.splitlines()]


def test_json_status_fd_writes_bwraps_lines(tmp_path: os.PathLike[str]) -> None:
    status_path = os.path.join(tmp_path, "status")
    script = "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; cat /proc/1/comm; exit 3"
    with open(status_path, "w") as status_file:
        fd = status_file.fileno()
        result = run_cli(
            "run", "--json-status-fd", str(fd), "--", "sh", "-c", script, pass_fds=(fd,)
        )
    assert result.returncode == 3, result.stderr
    pid_link, mnt_link, _ = result.stdout.split()
    with open(status_path) as f:
        first, last = _status_lines(f.read())
    assert last == {"exit-code": 3}
    assert list(first)[:3] == ["child-pid", "init-pid", "pid-in-namespace"]
    assert first["pid-in-namespace"] == 2
    assert first["child-pid"] != first["init-pid"] > 0
    assert pid_link == f"pid:[{first['pid-namespace']}]"  # nsfs inodes, as bwrap's
    assert mnt_link == f"mnt:[{first['mnt-namespace']}]"
    assert "user-namespace" not in first  # root: no user namespace was made


def test_json_status_fd_exit_code_is_128_plus_n_and_the_command_cannot_see_it() -> None:
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [*PIDNS, "run", "--json-status-fd", str(write_end), "--",
             "sh", "-c", f"ls /proc/self/fd/{write_end} 2>/dev/null; kill -TERM $$"],
            pass_fds=(write_end,), capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end) as f:
            read_end = -1
            lines = _status_lines(f.read())
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    assert result.returncode == 143
    assert result.stdout == ""  # the status fd is not inherited by the command
    assert lines[-1] == {"exit-code": 143} and len(lines) == 2


def test_bwrap_writes_the_same_keys(tmp_path: os.PathLike[str]) -> None:
    """The layout checked against bubblewrap itself, where it is installed."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bwrap is not installed")
    outputs = []
    for prefix in (
        [bwrap, "--unshare-pid", "--dev-bind", "/", "/", "--json-status-fd"],
        [*PIDNS, "run", "--json-status-fd"],
    ):
        path = os.path.join(tmp_path, "status")
        with open(path, "w") as f:
            fd = f.fileno()
            subprocess.run(
                [*prefix, str(fd), "--", "sh", "-c", "exit 3"],
                pass_fds=(fd,), check=False, timeout=30,
            )  # fmt: skip
        with open(path) as f:
            outputs.append(_status_lines(f.read()))
    theirs, ours = outputs
    assert theirs[-1] == ours[-1] == {"exit-code": 3}
    assert set(theirs[0]) <= set(ours[0]) | {"cgroup-namespace", "ipc-namespace"}
    assert {"child-pid", "pid-namespace", "mnt-namespace"} <= set(ours[0])


def test_pid_file_holds_the_commands_host_pid_before_it_runs(tmp_path: os.PathLike[str]) -> None:
    pid_file = os.path.join(tmp_path, "pid")
    # the shell's own /proc/self (the host's /proc): a builtin loop, not grep's
    script = (
        f"cat {pid_file}; while read -r key value; do "
        '[ "$key" != NSpid: ] || echo "$value"; done < /proc/self/status'
    )
    result = run_cli("run", "--no-mount-proc", "--pid-file", pid_file, "--", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    written, nspid = result.stdout.splitlines()
    host_pid, inner = nspid.split()
    assert written == host_pid and inner == "2"
    with open(pid_file) as f:
        assert f.read() == f"{host_pid}\n"


def test_verbose_logs_signals_orphans_and_the_shutdown() -> None:
    script = "(true &); sleep 1000 & kill -USR1 1; sleep 0.3; exit 4"
    result = run_cli("run", "--verbose", "--", "sh", "-c", f"trap '' USR1; {script}")
    assert result.returncode == 4
    log = result.stderr.splitlines()
    assert all(line.startswith("pidns-init: ") for line in log), log
    text = "\n".join(log)
    assert "started sh as pid 2" in text
    assert "forwarding SIGUSR1 to pid 2" in text
    assert "reaped orphan pid" in text
    assert "the command (pid 2) exited 4" in text
    assert "shutdown: SIGKILL to every process left" in text
    assert "was killed by SIGKILL) at the shutdown" in text  # the background sleep
    assert log[-1] == "pidns-init: the namespace is empty; exiting with 4"
    quiet = run_cli("run", "--", "sh", "-c", script)
    assert quiet.stderr == ""


def test_socket_activation_rewrites_listen_pid_and_passes_the_fds(
    tmp_path: os.PathLike[str],
) -> None:
    sock = os.path.join(tmp_path, "data")
    with open(sock, "w") as f:
        f.write("from-the-activator\n")
    command = " ".join([*PIDNS, "run", "--", "sh", "-c", "'echo $LISTEN_PID $LISTEN_FDS; cat <&3'"])
    # exec keeps the pid: LISTEN_PID names pidns run, as systemd would set it
    result = subprocess.run(
        ["sh", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=x exec {command} 3<"{sock}"'],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 1\nfrom-the-activator\n"
    # a LISTEN_PID that names someone else is not ours: left alone
    other = subprocess.run(
        [*PIDNS, "run", "--", "sh", "-c", "echo $LISTEN_PID"],
        env={**os.environ, "LISTEN_PID": "1", "LISTEN_FDS": "1"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert other.stdout == "1\n"
    pid1 = run_cli("run", "--as-pid-1", "--", "sh", "-c", "echo $LISTEN_PID")
    assert pid1.stdout == "\n"


def test_unprivileged_status_fd_pid_file_and_verbose() -> None:
    directory = tempfile.mkdtemp(prefix="pidns-test-")  # not under root's 0700 tmp_path
    os.chmod(directory, 0o777)
    pid_file = os.path.join(directory, "pid")

    def scenario() -> tuple[tuple[int, str, str], list[dict[str, int]], str]:
        read_end, write_end = os.pipe()
        result = cli_captured(
            ["run", "-v", "--json-status-fd", str(write_end), "--pid-file", pid_file, "--",
             "sh", "-c", "id -u; readlink /proc/self/ns/user; exit 6"]
        )  # fmt: skip
        os.close(write_end)
        with os.fdopen(read_end) as f:
            lines = _status_lines(f.read())
        with open(pid_file) as f:
            return result, lines, f.read()

    try:
        (status, out, err), lines, written = in_child(scenario, nobody=True)
    finally:
        shutil.rmtree(directory)
    assert status == 6, err
    uid, user_link = out.split()
    assert uid == "0"
    assert user_link == f"user:[{lines[0]['user-namespace']}]"  # made for uid 65534
    assert lines[-1] == {"exit-code": 6}
    assert written == f"{lines[0]['child-pid']}\n"
    assert "pidns-init: the command (pid 2) exited 6" in err
