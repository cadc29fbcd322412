"""The Python API's namespace server on the real kernel: threads, forks, a caller's death,
and the subprocess options (as root, and as uid 65534 where it matters)."""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import pidns
import pidns.linux
from pidns.core import flags as cf
from pidns.linux import mounts, served, syscalls
from test_run_support import (
    Marker,
    children,
    gone,
    in_child,
    needs_root,
    nspid,
    wait_for,
)

pytestmark = [pytest.mark.real, needs_root]


def _python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter with warnings as errors."""
    command = [sys.executable, "-W", "error", "-c", textwrap.dedent(code), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


# -- the server ---------------------------------------------------------------------------


def test_the_init_is_the_servers_child_and_the_server_a_fresh_interpreter() -> None:
    with pidns.Popen(["sleep", "5"]) as process:
        server = served.server_pid()
        assert server is not None and not served.server_is_forked()
        assert os.getppid() != server and process.init_pid in children(server)
        assert nspid(process.pid) == [process.pid, 2]
        with open(f"/proc/{server}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert argv[1:3] == [b"-I", b"-S"]  # its own lean interpreter, not a fork of ours
    assert served.server_pid() == server  # one server for every call


def test_eight_threads_of_fifty_runs_without_a_warning() -> None:
    result = _python("""
        import threading, pidns
        failures = []
        def worker():
            for _ in range(50):
                try:
                    r = pidns.run(["sh", "-c", 'echo "$$"'], capture_output=True)
                    if (r.returncode, r.stdout) != (0, b"2\\n"):
                        failures.append(repr(r))
                except BaseException as exc:
                    failures.append(repr(exc))
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(len(failures), failures[:3])
    """)
    assert (result.returncode, result.stdout, result.stderr) == (0, "0 []\n", "")


def test_popen_from_many_threads_at_once() -> None:
    """One thread waits, others poll, one kills: as subprocess allows."""
    with pidns.Popen(["sleep", "1000"]) as process:
        seen: list[int | None] = []
        waiters = [threading.Thread(target=lambda: seen.append(process.wait())) for _ in range(3)]
        for t in waiters:
            t.start()
        pollers = [threading.Thread(target=lambda: seen.append(process.poll())) for _ in range(3)]
        for t in pollers:
            t.start()
        for t in pollers:
            t.join()
        killer = threading.Thread(target=process.kill)
        killer.start()
        killer.join()
        for t in waiters:
            t.join(10)
        assert seen.count(-signal.SIGKILL) == 3
        assert process.returncode == -signal.SIGKILL


def test_a_fork_of_the_caller_gets_its_own_server() -> None:
    pidns.run(["true"])
    parents_server = served.server_pid()

    def in_the_fork() -> tuple[int | None, list[int], bytes]:
        result = pidns.run(["sh", "-c", 'echo "$$"'], capture_output=True)
        mine = served.server_pid()
        return mine, children(os.getpid()), result.stdout

    mine, kids, out = in_child(in_the_fork)
    assert out == b"2\n"
    assert mine is not None and mine != parents_server and mine in kids
    assert pidns.run(["true"]).returncode == 0 and served.server_pid() == parents_server


def _mp_worker(queue: multiprocessing.Queue[object]) -> None:
    result = pidns.run(["sh", "-c", 'echo "$$"'], capture_output=True)
    queue.put((result.stdout, served.server_pid(), os.getpid()))


def test_multiprocessing_children_get_their_own_server() -> None:
    pidns.run(["true"])
    context = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[object] = context.Queue()
    worker = context.Process(target=_mp_worker, args=(queue,))
    worker.start()
    got: tuple[bytes, int | None, int] = queue.get(timeout=60)  # type: ignore[assignment]
    out, server, pid = got
    worker.join(30)
    assert out == b"2\n" and server not in (None, served.server_pid()) and pid == worker.pid
    assert worker.exitcode == 0


def test_the_server_exits_when_the_caller_does() -> None:
    result = _python("""
        import pidns
        from pidns.linux import served
        pidns.run(["true"])
        print(served.server_pid(), flush=True)
    """)
    assert result.returncode == 0, result.stderr
    assert gone(int(result.stdout))


def test_a_dead_server_is_replaced() -> None:
    pidns.run(["true"])
    server = served.server_pid()
    assert server is not None
    os.kill(server, signal.SIGKILL)
    assert gone(server)
    assert pidns.run(["sh", "-c", "exit 4"]).returncode == 4
    assert served.server_pid() not in (None, server)


def test_a_sigchld_handler_that_reaps_everything_does_not_break_run() -> None:
    def scenario() -> list[int]:
        reaped: list[int] = []

        def reap_all(signum: int, frame: object) -> None:
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    return
                if pid == 0:
                    return
                reaped.append(pid)

        signal.signal(signal.SIGCHLD, reap_all)
        codes = [pidns.run(["sh", "-c", f"exit {i}"]).returncode for i in range(5)]
        server = served.server_pid()
        assert server is not None
        os.kill(server, signal.SIGKILL)  # the handler reaps the server itself
        assert wait_for(lambda: server in reaped)
        codes += [pidns.run(["sh", "-c", "exit 9"]).returncode]
        return codes

    assert in_child(scenario) == [0, 1, 2, 3, 4, 9]


# -- nothing survives a caller's death ---------------------------------------------------

CALLER = """
import os, sys
import pidns
os.chdir(sys.argv[1])
with pidns.Popen(["sh", "-c", "sleep 1000 & setsid sleep 1000 & wait"]) as process:
    os.write(1, b"running\\n")
    process.wait()
"""


def _kill_callers(tries: int, seed: int) -> list[str]:
    """Run a caller ``tries`` times and SIGKILL it at a random moment: before, during and
    after its server's start and its namespace's; returns what was left each time.

    In a subreaper (this process): every orphan (the server, the inits) comes here, so
    'nothing is left' means no child of ours and no process in the marker directory."""
    rng = random.Random(seed)
    left: list[str] = []
    for attempt in range(tries):
        with Marker() as marker:
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover (the caller)
                try:
                    os.close(read_end)
                    os.dup2(write_end, 1)
                    namespace: dict[str, object] = {"__name__": "caller"}
                    sys.argv = ["caller", marker.path]
                    exec(compile(CALLER, "caller", "exec"), namespace)
                finally:
                    os._exit(0)
            os.close(write_end)
            delay = rng.uniform(0, 0.12)
            if rng.random() < 0.5:  # half the time after the command runs, half anywhere
                select.select([read_end], [], [], 10)
            time.sleep(delay)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    while os.waitpid(-1, os.WNOHANG)[0] > 0:
                        pass
                except ChildProcessError:
                    break
                time.sleep(0.005)
            survivors = marker.processes()
            kids = children(os.getpid())
            if survivors or kids:
                left.append(f"try {attempt} (+{delay:.3f}s): {survivors} {kids}")
    return left


def test_a_caller_killed_at_random_moments_leaves_nothing() -> None:
    seed = 1101
    print(f"seed {seed}")
    assert in_child(lambda: _kill_callers(100, seed), subreaper=True, timeout=300) == []


def test_a_caller_killed_at_random_moments_leaves_nothing_as_nobody() -> None:
    seed = 1102
    print(f"seed {seed}")
    left = in_child(
        lambda: _kill_callers(100, seed),
        subreaper=True,
        nobody=True,
        interpreter=True,
        timeout=300,
    )
    assert left == []


# -- as uid 65534 --------------------------------------------------------------------------


def test_unprivileged_callers_get_a_fresh_interpreter_or_the_fork_fallback() -> None:
    def scenario() -> tuple[bool, int, bytes]:
        result = pidns.run(["sh", "-c", 'echo "$$ $(id -u)"'], capture_output=True)
        return served.server_is_forked(), result.returncode, result.stdout

    # the interpreter reachable: the server is a fresh interpreter, as for root
    assert in_child(scenario, nobody=True, interpreter=True) == (False, 0, b"2 0\n")
    # under /root, which 65534 cannot search: the fork fallback, with the same result
    assert in_child(scenario, nobody=True) == (True, 0, b"2 0\n")


def test_the_fork_fallback_survives_a_package_it_cannot_read() -> None:
    """A clone of the project under /tmp, and a case that mounts a tmpfs over /tmp: the
    interpreter cannot be executed (the fork fallback) and the package cannot be read. The
    server used to import the spare module only once a request had a shape, died of the
    ImportError, and its init with it (the parent-death signal: returncode -9 when the
    init had not reported yet). Now it serves on, without spares if it must."""

    def scenario() -> tuple[bool, int, bool, int, bool]:
        sys.modules.pop("pidns.linux.spare", None)  # as in a caller that never needed it
        vars(pidns.linux).pop("spare", None)
        syscalls.unshare(cf.NEWNS)
        mounts.make_private_recursive()
        for hidden in (os.path.dirname(served.__file__), os.path.dirname(sys.executable)):
            syscalls.mount("tmpfs", hidden, "tmpfs", syscalls.MS_RDONLY)
        first = pidns.run(["sh", "-c", "exit 3"]).returncode
        server = served.server_pid()
        assert server is not None
        alive = not gone(server, 0)
        second = pidns.run(["sh", "-c", "exit 4"]).returncode
        return served.server_is_forked(), first, alive, second, served.server_pid() == server

    assert in_child(scenario) == (True, 3, True, 4, True)


# -- subprocess's options ----------------------------------------------------------------


def test_sessions_groups_executable_umask_and_signals() -> None:
    with pidns.Popen(["sleep", "5"], start_new_session=True) as process:
        assert os.getsid(process.pid) == process.pid
    with pidns.Popen(["sleep", "5"], process_group=0) as process:
        assert os.getpgid(process.pid) == process.pid and os.getsid(process.pid) == os.getsid(0)
    with pytest.raises(ValueError, match="process_group"):
        pidns.Popen(["true"], process_group=os.getpgrp())
    result = pidns.run(
        ["name-of-my-own", "-c", 'echo "$0"'], executable="/bin/sh", capture_output=True
    )
    assert result.stdout == b"name-of-my-own\n"
    assert pidns.run(["sh", "-c", "umask"], umask=0o077, capture_output=True).stdout == b"0077\n"
    old = os.umask(0o027)
    try:
        assert pidns.run(["sh", "-c", "umask"], capture_output=True).stdout == b"0027\n"
    finally:
        os.umask(old)
    ignored = "grep SigIgn /proc/self/status"
    restored = pidns.run(["sh", "-c", ignored], capture_output=True, text=True).stdout.split()[1]
    kept = pidns.run(["sh", "-c", ignored], capture_output=True, text=True, restore_signals=False)
    sigpipe = 1 << (signal.SIGPIPE - 1)
    assert not int(restored, 16) & sigpipe and int(kept.stdout.split()[1], 16) & sigpipe


def test_what_cannot_apply_is_a_clear_value_error() -> None:
    for kwargs, words in (
        ({"close_fds": False}, "close_fds"),
        ({"preexec_fn": lambda: None}, "preexec_fn"),
        ({"extra_groups": [0]}, "extra_groups"),
    ):
        with pytest.raises(ValueError, match=words):
            pidns.Popen(["true"], **kwargs)
    assert pidns.run(["true"], close_fds=True).returncode == 0


def test_user_and_group_as_subprocess() -> None:
    ids = "echo $(id -u) $(id -g)"
    assert pidns.check_output(["sh", "-c", ids], user="nobody", group=65534) == b"65534 65534\n"
    assert pidns.check_output(["sh", "-c", ids], user=65534) == b"65534 0\n"
    with pytest.raises(KeyError):
        pidns.run(["true"], user="no-such-user-pidns")


def test_timeout_expired_carries_the_output_so_far() -> None:
    script = "echo out; echo err >&2; exec sleep 1000"
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        pidns.run(["sh", "-c", script], capture_output=True, timeout=0.5)
    assert (caught.value.stdout, caught.value.stderr) == (b"out\n", b"err\n")


def test_top_level_names_like_subprocess() -> None:
    assert (pidns.PIPE, pidns.DEVNULL, pidns.STDOUT) == (
        subprocess.PIPE,
        subprocess.DEVNULL,
        subprocess.STDOUT,
    )
    assert issubclass(pidns.SetupError, OSError)
    assert pidns.check_output(["sh", "-c", "echo $$"]) == b"2\n"
    assert pidns.check_output(["cat"], input="in", text=True) == "in"
    assert pidns.call(["sh", "-c", "exit 3"]) == 3
    with pytest.raises(pidns.CalledProcessError):
        pidns.check_output(["false"])
    with pytest.raises(pidns.TimeoutExpired):
        pidns.call(["sleep", "1000"], timeout=0.2)


def test_a_user_namespace_maps_the_callers_ids_not_the_servers_view() -> None:
    """The init builds its maps from the caller's ids: inside the new user namespace,
    before the maps exist, its own getuid() is the overflow uid."""
    result = pidns.run(["cat", "/proc/self/uid_map"], map_user="root", capture_output=True)
    assert result.stdout.split() == [b"0", b"0", b"1"]

    def as_nobody() -> list[bytes]:
        out = pidns.run(["cat", "/proc/self/uid_map"], map_user="root", capture_output=True)
        words: list[bytes] = out.stdout.split()
        return words

    assert in_child(as_nobody, nobody=True, interpreter=True) == [b"0", b"65534", b"1"]
