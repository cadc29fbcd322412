"""The Python API on the real kernel: pidns.run, pidns.Popen, CompletedProcess (as root)."""

from __future__ import annotations

import fcntl
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import pidns
from pidns.api import DEVNULL, PIPE, STDOUT
from test_run_support import (
    Marker,
    children,
    in_child,
    needs_root,
    nspid,
    proc_mounts,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]


def test_run_returns_a_completed_process_like_subprocess() -> None:
    result = pidns.run(["sh", "-c", 'echo "$$"; echo oops >&2; exit 3'], capture_output=True)
    assert isinstance(result, pidns.CompletedProcess)
    assert isinstance(result, subprocess.CompletedProcess)
    assert result.args == ["sh", "-c", 'echo "$$"; echo oops >&2; exit 3']
    assert (result.returncode, result.stdout, result.stderr) == (3, b"2\n", b"oops\n")
    with pytest.raises(subprocess.CalledProcessError) as caught:
        result.check_returncode()
    assert caught.value.returncode == 3


def test_run_text_input_and_check() -> None:
    result = pidns.run(["cat"], input="héllo\r\nworld", capture_output=True, text=True)
    assert result.stdout == "héllo\nworld"  # universal newlines, as subprocess
    with pytest.raises(subprocess.CalledProcessError) as caught:
        pidns.run(["sh", "-c", "echo out; exit 4"], capture_output=True, check=True)
    assert (caught.value.returncode, caught.value.stdout) == (4, b"out\n")
    result = pidns.run(["sh", "-c", "kill -TERM $$"])
    assert result.returncode == -signal.SIGTERM  # as subprocess: -S when killed by S


def test_run_reports_where_it_ran() -> None:
    result = pidns.run(["sh", "-c", "exit 0"])
    assert result.pid is not None and result.init_pid is not None
    assert result.pid != result.init_pid and result.pid > 0 and result.init_pid > 0
    report = result.report
    assert report["exit_status"] == 0
    assert report["host_pids"] == {"init": result.init_pid, "command": result.pid}


def test_exec_failures_raise_like_subprocess(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(FileNotFoundError) as missing:
        pidns.run(["no-such-command-pidns"])
    assert missing.value.filename == "no-such-command-pidns"
    with pytest.raises(PermissionError):
        pidns.run([os.fspath(tmp_path)])
    bad = os.path.join(tmp_path, "bad")
    with open(bad, "wb") as f:
        f.write(b"\x7fELF nonsense")
    os.chmod(bad, 0o755)
    with pytest.raises(OSError, match="Exec format error"):
        pidns.run([bad])


def test_bad_arguments_raise_before_anything_runs(tmp_path: os.PathLike[str]) -> None:
    missing = os.path.join(tmp_path, "missing")
    with pytest.raises(FileNotFoundError) as caught:
        pidns.run(["true"], cwd=missing)
    assert caught.value.filename == missing  # as subprocess: the directory is named
    with pytest.raises(NotADirectoryError):
        pidns.run(["true"], cwd="/etc/passwd")
    with pytest.raises(ValueError, match="null byte"):
        pidns.run(["echo", "a\0b"])
    with pytest.raises(ValueError, match="null byte"):
        pidns.run(["true"], env={"A": "x\0y"})
    with pytest.raises(ValueError, match="illegal environment variable name"):
        pidns.run(["true"], env={"A=B": "x"})
    with pytest.raises(ValueError):
        pidns.Popen(["true"], map_user="nobody")
    with pytest.raises(ValueError):
        pidns.Popen(["true"], as_pid_1=True, wait_all=True)


def test_popen_pids_are_the_callers_view_of_pid_2_and_pid_1() -> None:
    with pidns.Popen(["sleep", "5"]) as process:
        assert nspid(process.pid) == [process.pid, 2]
        assert nspid(process.init_pid) == [process.init_pid, 1]
        assert process.poll() is None and process.returncode is None
        process.terminate()
        assert process.wait(5) == -signal.SIGTERM


def test_communicate_with_every_kind_of_stream(tmp_path: os.PathLike[str]) -> None:
    script = 'read line; echo "got $line"; echo err >&2; pwd; echo $PIDNS_TEST'
    with pidns.Popen(
        ["sh", "-c", script],
        stdin=PIPE,
        stdout=PIPE,
        stderr=STDOUT,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "PIDNS_TEST": "yes"},
    ) as process:
        out, err = process.communicate(b"hello\n", timeout=10)
    assert out == f"got hello\nerr\n{os.fspath(tmp_path)}\nyes\n".encode()
    assert err is None
    path = os.path.join(tmp_path, "out")
    with open(path, "w") as f:
        pidns.run(["echo", "to a file"], stdout=f, stdin=DEVNULL, stderr=DEVNULL)
    with open(path) as f:
        assert f.read() == "to a file\n"
    result = pidns.run("echo $((6 * 7))", shell=True, capture_output=True)
    assert result.stdout == b"42\n"


def test_pipesize_sizes_each_pipe_as_subprocess_does() -> None:
    size = 2 * 65536  # twice the default, and below fs.pipe-max-size
    with pidns.Popen(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE, pipesize=size) as p:
        assert p.stdin is not None and p.stdout is not None and p.stderr is not None
        sizes = [fcntl.fcntl(f.fileno(), fcntl.F_GETPIPE_SZ) for f in (p.stdin, p.stdout, p.stderr)]
        out, _ = p.communicate(b"x" * size)  # a pipe that holds it all at once
    assert sizes == [size] * 3 and out == b"x" * size
    with pidns.Popen(["true"], stdout=PIPE) as q:
        assert q.stdout is not None
        assert fcntl.fcntl(q.stdout.fileno(), fcntl.F_GETPIPE_SZ) != size  # the default
        q.communicate()


def test_only_the_standard_fds_and_pass_fds_reach_the_command() -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # inheritable, but not passed: closed all the same
    try:
        listing = "ls /proc/self/fd"
        plain = pidns.run(["sh", "-c", listing], capture_output=True, text=True)
        passed = pidns.run(
            ["sh", "-c", f"{listing}; echo via-fd > /proc/self/fd/{write_end}"],
            capture_output=True,
            text=True,
            pass_fds=[write_end],
        )
    finally:
        os.close(write_end)
    assert sorted(plain.stdout.split()) == ["0", "1", "2", "3"]  # 3: ls's own directory
    assert str(write_end) in passed.stdout.split()
    assert os.read(read_end, 100) == b"via-fd\n"
    os.close(read_end)


def test_timeout_kills_the_whole_namespace() -> None:
    started = time.monotonic()
    with Marker() as marker, pytest.raises(subprocess.TimeoutExpired):
        command = ["sh", "-c", "setsid sleep 1000 & sleep 1000"]
        try:
            pidns.run(command, timeout=0.5, cwd=marker.path)
        finally:
            assert marker.processes() == []
    assert time.monotonic() - started < 5
    with pidns.Popen(["sleep", "1000"]) as process:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(0.2)
        with pytest.raises(subprocess.TimeoutExpired):
            process.communicate(timeout=0.2)


def test_kill_ends_every_process_of_the_namespace() -> None:
    with Marker() as marker:
        command = ["sh", "-c", "sleep 1000 & setsid sleep 1000 & wait"]
        process = pidns.Popen(command, cwd=marker.path)
        assert wait_for(lambda: len(marker.processes("sleep")) == 2)
        process.kill()
        assert process.wait(5) == -signal.SIGKILL
        assert marker.processes() == []  # the init is reaped only once its namespace is empty


def test_signals_reach_a_trapping_shell_through_the_init() -> None:
    script = 'trap "echo usr1" USR1; trap "echo term; exit 5" TERM; echo ready; '
    script += "while :; do sleep 0.02; done"
    with pidns.Popen(["sh", "-c", script], stdout=PIPE, text=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGUSR1)
        assert process.stdout.readline() == "usr1\n"
        process.terminate()
        assert process.stdout.readline() == "term\n"
        assert process.wait(5) == 5
        assert process.report()["signals_forwarded"]["init"] == ["USR1", "TERM"]
    process.send_signal(signal.SIGTERM)  # after the end: nothing to do, no error


def test_leaving_the_with_block_or_dropping_the_object_ends_the_namespace() -> None:
    marker = Marker()
    command = ["sh", "-c", "sleep 1000 & wait"]
    with pytest.raises(RuntimeError), pidns.Popen(command, cwd=marker.path):
        assert wait_for(lambda: len(marker.processes("sleep")) == 1)
        raise RuntimeError("the caller failed")
    assert marker.processes() == []
    process = pidns.Popen(command, cwd=marker.path)
    assert wait_for(lambda: len(marker.processes("sleep")) == 1)
    init_pid = process.init_pid
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del process
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert marker.processes() == []
    marker.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(init_pid, os.WNOHANG)  # reaped too, no zombie left


def test_as_pid_1_wait_all_and_forward_to_group() -> None:
    assert pidns.run(["sh", "-c", 'exit "$$"'], as_pid_1=True).returncode == 1
    result = pidns.run(
        ["sh", "-c", "(sleep 0.3; echo late) & echo early"], wait_all=True, capture_output=True
    )
    assert result.stdout == b"early\nlate\n"
    script = 'sleep 5 & trap "" TERM; echo ready; wait $!; echo "status=$?"'
    with pidns.Popen(["sh", "-c", script], stdout=PIPE, forward_to_group=True) as process:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.terminate()
        assert process.stdout.readline() == b"status=143\n"


def test_a_fresh_proc_and_the_hosts_proc_untouched() -> None:
    before = proc_mounts()
    result = pidns.run(["ls", "/proc"], capture_output=True, text=True)
    assert sorted(int(p) for p in result.stdout.split() if p.isdigit()) == [1, 2]
    assert proc_mounts() == before
    result = pidns.run(["ls", "/proc"], capture_output=True, text=True, mount_proc=False)
    assert str(os.getpid()) in result.stdout.split()


def test_a_caller_with_threads_gets_the_same_namespace() -> None:
    """A multi-threaded caller goes through a helper fork (glibc's fork is safe there)."""
    results: list[pidns.CompletedProcess] = []
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)
    busy.start()
    try:
        worker = threading.Thread(
            target=lambda: results.append(
                pidns.run(["sh", "-c", 'echo "$$"; exit 6'], capture_output=True)
            )
        )
        worker.start()
        worker.join(30)
    finally:
        stop.set()
        busy.join()
    (result,) = results
    assert (result.returncode, result.stdout) == (6, b"2\n")
    assert nspid(os.getpid()) == [os.getpid()]  # the caller itself never moved


def _killed_caller(threads: bool) -> tuple[int, list[int]]:
    """A child starts a namespace (with an extra thread: through the helper fork), then
    is SIGKILLed. Returns its wait status and what survives of the namespace."""
    with Marker() as marker:
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            try:
                if threads:
                    threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
                command = ["sh", "-c", "sleep 1000 & setsid sleep 1000 & wait"]
                process = pidns.Popen(command, cwd=marker.path)
                if wait_for(lambda: len(marker.processes("sleep")) == 2):
                    os.kill(os.getpid(), signal.SIGKILL)
                del process
            finally:
                os._exit(1)
        status = os.waitpid(pid, 0)[1]
        return os.waitstatus_to_exitcode(status), marker.survivors()


@pytest.mark.parametrize("threads", [False, True])
def test_a_killed_caller_takes_its_namespaces_with_it(threads: bool) -> None:
    """The API sets no parent-death signal: only the init's pidfd of the caller notices."""
    status, left = in_child(lambda: _killed_caller(threads), subreaper=True)
    assert status == -signal.SIGKILL  # the caller was killed with its namespace running
    assert left == []


def test_unprivileged_api() -> None:
    def scenario() -> tuple[int, bytes, int, bytes]:
        root = pidns.run(["sh", "-c", 'echo "$$ $(id -u)"'], capture_output=True)
        mine = pidns.run(["id", "-u"], capture_output=True, map_user="current")
        return root.returncode, root.stdout, mine.returncode, mine.stdout

    assert in_child(scenario, nobody=True) == (0, b"2 0\n", 0, b"65534\n")


def test_the_package_exports_lazily() -> None:
    code = "import sys, pidns; assert 'pidns.api' not in sys.modules; pidns.run; print('ok')"
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.stdout == "ok\n", result.stderr


def test_the_command_stays_in_the_callers_process_group() -> None:
    with pidns.Popen(["sleep", "5"]) as process:
        assert os.getpgid(process.pid) == os.getpgrp()  # ^C reaches it, as with subprocess
    with pidns.Popen(["sleep", "5"], forward_to_group=True) as process:
        assert os.getpgid(process.pid) == process.pid


def test_no_descriptor_or_child_is_left_behind_on_any_path() -> None:
    pidns.run(["true"])  # the namespace server runs: its socket and itself stay
    before = sorted(os.listdir("/proc/self/fd"))
    kids = children(os.getpid())
    for _ in range(5):
        with pytest.raises(PermissionError):
            pidns.run(["/etc/passwd"])
        with pytest.raises(FileNotFoundError):
            pidns.run(["true"], cwd="/nonexistent-pidns")
        pidns.run(["cat"], input=b"x", capture_output=True)
        with pytest.raises(subprocess.TimeoutExpired):
            pidns.run(["sleep", "5"], timeout=0.05)
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert children(os.getpid()) == kids  # every init was reaped, zombies included
