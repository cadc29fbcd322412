"""Helpers shared by the tests of ``pidns run``, ``pidns exec`` and the Python API.

No tests here. The tests run the real kernel: the CLI as a subprocess (root), or, for
uid 65534, in a forked child of pytest that drops its privileges (the interpreter lives
under /root, which uid 65534 cannot enter, so it cannot exec it: the child calls
``pidns.cli.main`` in-process, after importing everything it will need).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pty
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

# Imported now: a child that has become uid 65534 can no longer read /root's stdlib.
import pidns.api
import pidns.cli.exec
import pidns.cli.run
import pidns.core.signals
from pidns.cli import main as cli_main
from pidns.core import flags as cf
from pidns.linux import mounts, syscalls

assert pidns.api and pidns.cli.exec and pidns.cli.run and pidns.core.signals  # loaded

PIDNS = [sys.executable, "-m", "pidns"]
NOBODY = 65534
T = TypeVar("T")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the tests drop from root to 65534")
pytestmark = pytest.mark.real


def run_cli(*args: str, timeout: float = 30, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``pidns ARGS`` as a subprocess, output captured as text."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("start_new_session", True)  # no controlling terminal: no job control
    return subprocess.run([*PIDNS, *args], text=True, timeout=timeout, check=False, **kwargs)


# -- finding what a test started ----------------------------------------------------------


class Marker:
    """A fresh directory for a test's processes to run in, that names them: their
    /proc/PID/cwd. (Not their arguments: scanning /proc/*/cmdline reads the memory of
    each process, and doing it in a tight loop was seen, on 6.18, to hold back the exit of
    processes being killed: a test would then wait for what it itself prevents.)"""

    def __init__(self) -> None:
        self.path = tempfile.mkdtemp(prefix="pidns-test-")
        os.chmod(self.path, 0o755)

    def processes(self, comm: str | None = None) -> list[int]:
        """Live processes whose working directory is this one (zombies have none)."""
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{name}/cwd") != self.path:
                    continue
                if comm is not None:
                    with open(f"/proc/{name}/comm") as f:
                        if f.read().strip() != comm:
                            continue
            except OSError:
                continue
            found.append(int(name))
        return found

    def survivors(self, timeout: float = 10.0) -> list[int]:
        """What is still alive after waiting up to ``timeout`` for everything to go."""
        wait_for(lambda: not self.processes(), timeout)
        return self.processes()

    def close(self) -> None:
        kill_all(self.processes())
        wait_for(lambda: not self.processes(), 5)
        with contextlib.suppress(OSError):
            os.rmdir(self.path)

    def __enter__(self) -> Marker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (its pidfd polls readable), within ``timeout``."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found += [int(x) for x in f.read().split()]
    return found


def comm(pid: int) -> str:
    """The name of ``pid`` (/proc/PID/comm), "" once it is gone."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def nspid(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no NSpid for {pid}")


def proc_mounts() -> list[str]:
    """The host's mount table entries for /proc and below (to prove them untouched)."""
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4].startswith("/proc")]


def kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- running code in a forked child (as uid 65534, or as a subreaper) --------------------


def drop_privileges() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    # setuid without exec leaves the process non-dumpable, and its /proc files root's:
    # a real unprivileged user's process is dumpable (fs/exec.c:begin_new_exec).
    syscalls.prctl(syscalls.PR_SET_DUMPABLE, 1)


MS_MOVE = 8192


def expose_interpreter() -> None:
    """In a private mount namespace of the calling (root) process, make the interpreter
    reachable by every uid: it lies under /root (mode 0700) here, so a process that drops
    to 65534 could not execute it (nor pidns's namespace server). The blocked directory
    is covered with a tmpfs (0755) into which the interpreter's own subtree is moved back;
    nothing changes outside this process's mount namespace."""
    path = os.path.realpath(sys.executable)
    parts = path.split("/")
    for depth in range(2, len(parts)):
        blocked = "/".join(parts[:depth]) or "/"
        if not os.stat(blocked).st_mode & 0o001:
            break
    else:
        return  # every directory on the way is searchable by anyone
    inner = "/".join(parts[: depth + 1])
    assert os.path.realpath(sys.base_prefix).startswith(inner + "/"), "stdlib elsewhere"
    syscalls.unshare(0x00020000)  # CLONE_NEWNS
    mounts.make_private_recursive()
    staging = tempfile.mkdtemp(prefix="pidns-test-python-")
    try:
        syscalls.mount(inner, staging, None, syscalls.MS_BIND | syscalls.MS_REC)
        syscalls.mount("tmpfs", blocked, "tmpfs", 0, "mode=755,size=64k")
        os.mkdir(inner)
        syscalls.mount(staging, inner, None, MS_MOVE)
    finally:
        os.rmdir(staging)


def in_child(
    fn: Callable[[], T],
    *,
    nobody: bool = False,
    subreaper: bool = False,
    timeout: float = 60.0,
    started: Callable[[int], None] | None = None,
    interpreter: bool = False,
) -> T:
    """Run ``fn`` in a forked child and return its result (pickled back); an exception in
    the child fails the test with the child's traceback. ``subreaper``: the child reaps
    every orphan of what it started (so killed launchers leave no zombie behind).
    ``started(pid)`` is called in the parent once the child runs. ``interpreter``: the
    child can execute this interpreter even as uid 65534 (``expose_interpreter``)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.close(read_end)
        try:
            syscalls.set_parent_death_signal(signal.SIGKILL)
            if subreaper:
                syscalls.set_child_subreaper(True)
            if interpreter:
                expose_interpreter()
            if nobody:
                drop_privileges()
            payload = pickle.dumps(("ok", fn()))
        except BaseException:
            payload = pickle.dumps(("error", traceback.format_exc()))
        if subreaper:
            _reap_everything()
        with os.fdopen(write_end, "wb") as f:
            f.write(payload)
        os._exit(0)
    os.close(write_end)
    if started is not None:
        started(pid)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                raise AssertionError(f"the child did not finish within {timeout} s")
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if not data:
        raise AssertionError("the child died without a result")
    kind, value = pickle.loads(data)
    if kind == "error":
        raise AssertionError(f"in the child:\n{value}")
    result: T = value
    return result


def _reap_everything(timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.005)


def cli_captured(args: list[str]) -> tuple[int, str, str]:
    """``pidns ARGS`` in-process (in a child: the CLI blocks signals), with fds 1 and 2
    (the command's too) captured. Returns (status, stdout, stderr)."""
    # memfds, not files: a case may have /tmp read-only, or no writable filesystem at all
    out = os.fdopen(os.memfd_create("stdout"), "w+b")
    err = os.fdopen(os.memfd_create("stderr"), "w+b")
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(out.fileno(), 1)
    os.dup2(err.fileno(), 2)
    streams = sys.stdout, sys.stderr  # pytest's capture objects: write to the fds instead
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    try:
        status = cli_main(args)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    texts = []
    for f in (out, err):
        f.seek(0)
        texts.append(f.read().decode())
        f.close()
    return status, texts[0], texts[1]


def cli_as_nobody(*args: str, timeout: float = 60.0) -> tuple[int, str, str]:
    return in_child(lambda: cli_captured(list(args)), nobody=True, timeout=timeout)


# -- a terminal --------------------------------------------------------------------------


class Terminal:
    """An interactive bash on a pseudo-terminal (it is the session leader and does job
    control), driven like a user at the keyboard."""

    def __init__(self, cwd: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(PS1="READY$ ", TERM="dumb", HISTFILE="/dev/null")
        pid, fd = pty.fork()
        if pid == 0:  # pragma: no cover (the child)
            try:
                if cwd is not None:
                    os.chdir(cwd)
                os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.output = ""
        self.expect(r"READY\$ ")

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, pattern: str, timeout: float = 15.0) -> re.Match[str]:
        """Read until ``pattern`` appears in the output not yet consumed."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.output)
            if match:
                self.output = self.output[match.end() :]
                return match
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"no {pattern!r} in terminal output {self.output!r}")
            try:
                self.output += os.read(self.fd, 4096).decode(errors="replace")
            except OSError as exc:
                raise AssertionError(f"terminal closed: {self.output!r}") from exc

    def foreground_group(self) -> int:
        return os.tcgetpgrp(self.fd)

    def hang_up(self) -> None:
        """Close the master side: the kernel hangs the terminal up (SIGHUP to the shell)."""
        os.close(self.fd)
        self.fd = -1

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        if self.fd >= 0:
            os.close(self.fd)


def propagation_seen(mode: str, *, as_nobody: bool = False) -> list[str]:
    """The optional fields (shared:N, master:N ...) of a shared tmpfs of our own, as
    ``pidns run --propagation MODE`` shows it in its /proc/self/mountinfo. The mount is
    made in a private mount namespace of a child made for it (as uid 65534 after the
    mount with ``as_nobody``), so nothing of the host's changes."""
    directory = tempfile.mkdtemp(prefix="pidns-test-")
    os.chmod(directory, 0o755)

    def scenario() -> tuple[int, str, str]:
        syscalls.unshare(cf.NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("pidns-prop", directory, "tmpfs", 0, "size=64k")
        syscalls.mount(None, directory, None, syscalls.MS_SHARED)
        if as_nobody:
            drop_privileges()
        return cli_captured(
            ["run", "--propagation", mode, "--", "sh", "-c",
             f"grep ' {directory} ' /proc/self/mountinfo"]
        )  # fmt: skip

    try:
        status, out, err = in_child(scenario)
    finally:
        os.rmdir(directory)
    assert status == 0, err
    return out.split(" - ")[0].split()[6:]


def fork_cli(args: list[str], cwd: str | None = None) -> tuple[int, int]:
    """``pidns ARGS`` in a forked child (a launcher that can be signalled) with its stdout
    on a pipe: (pid, read end). For children that cannot exec the interpreter."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 125
        try:
            os.close(read_end)
            if cwd is not None:
                os.chdir(cwd)
            os.dup2(write_end, 1)
            status = cli_main(args)
            sys.stdout.flush()
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, read_end


def run_until_ready(options: list[str], script: str, cwd: str) -> subprocess.Popen[bytes]:
    """``pidns run OPTIONS -- sh -c SCRIPT`` in a session of its own, in ``cwd``, once
    SCRIPT has printed ``ready`` (its stdout is the pipe it printed it on)."""
    launcher = subprocess.Popen(
        [*PIDNS, "run", *options, "--", "sh", "-c", script],
        stdout=subprocess.PIPE,
        cwd=cwd,
        start_new_session=True,
    )
    assert launcher.stdout is not None
    assert read_line(launcher.stdout.fileno()) == "ready\n"
    return launcher


def read_line(fd: int, timeout: float = 10.0) -> str:
    """One line from a pipe, byte by byte (nothing past it is consumed)."""
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"no line within {timeout} s (got {data!r})")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode()


def exit_status(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
