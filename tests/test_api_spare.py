"""Spare inits (pidns.linux.spare) on the real kernel: a request finds its namespace made
before it, yet gets the caller's state at request time (cwd, env, umask, rlimits, mounts,
signals), and a spare never outlives its caller or server (as root and as uid 65534)."""

from __future__ import annotations

import ctypes
import marshal
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import pidns
from pidns.linux import served, server, status_channel, syscalls
from test_run_support import children, comm, gone, in_child, needs_root, wait_for

pytestmark = [pytest.mark.real, needs_root]


def _spare() -> int:
    """The spare init this process's server holds ready (after a first run), once the
    server has announced it."""
    server = served.server_pid()
    conn = served._connection
    assert server is not None and conn is not None
    found: list[int] = []

    def ready() -> bool:
        found[:] = [pid for pid in children(server) if comm(pid) == "pidns-spare"]
        return len(found) == 1

    assert wait_for(ready), f"no spare under the server {server}: {children(server)}"
    assert conn.spares or select.select([conn.control], [], [], 10)[0]
    return found[0]


def _out(argv: list[str], **kwargs: object) -> str:
    result = pidns.run(argv, capture_output=True, text=True, check=True, **kwargs)  # type: ignore[arg-type]
    return str(result.stdout)


def test_the_next_request_is_served_by_the_spare_made_before_it() -> None:
    def body() -> tuple[list[int], int, str]:
        pidns.run(["true"])
        spare = _spare()
        with pidns.Popen(["sleep", "0.2"]) as process:
            init = process.init_pid
            process.wait()
        return [spare], init, _out(["sh", "-c", "echo $$; cat /proc/1/comm"])

    spares, init, text = in_child(body)
    assert init == spares[0]
    assert text.split() == ["2", "pidns-init"]


def test_a_spare_takes_the_callers_state_at_request_time(tmp_path: object) -> None:
    def body() -> list[str]:
        pidns.run(["true"])
        _spare()  # made now, with the state of now
        os.chdir(str(tmp_path))
        os.umask(0o027)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 200), hard))
        os.environ["PIDNS_SPARE_TEST"] = "later"
        script = "pwd; umask; ulimit -n; echo $PIDNS_SPARE_TEST; stat -L -c '%d %i' ."
        lines = _out(["sh", "-c", script]).split("\n")
        here = os.stat(".")
        return [*lines[:4], lines[4], f"{here.st_dev} {here.st_ino}"]

    pwd, umask, nofile, env, inside, outside = in_child(body)
    assert pwd == str(tmp_path)
    assert umask == "0027"
    assert nofile == "200"
    assert env == "later"
    assert inside == outside


def test_a_relative_path_from_the_cwd_meets_the_new_proc_not_the_hosts() -> None:
    """A cwd fd of the caller's mount namespace would make ``proc/1`` the host's pid 1."""

    def body() -> list[str]:
        pidns.run(["true"])
        _spare()
        return [_out(["cat", "proc/1/comm"], cwd="/").strip() for _ in range(3)]

    assert in_child(body) == ["pidns-init"] * 3


def test_a_cwd_a_spare_cannot_reach_is_served_by_the_server() -> None:
    """/proc/sys of the caller is not /proc/sys of the new namespace (a fresh proc over
    it): the spare declines, and the server makes the namespace with the caller's."""

    def body() -> tuple[str, str]:
        pidns.run(["true"])
        _spare()
        inside = _out(["stat", "-L", "-c", "%d %i", "."], cwd="/proc/sys").strip()
        here = os.stat("/proc/sys")
        return inside, f"{here.st_dev} {here.st_ino}"

    inside, outside = in_child(body)
    assert inside == outside


def test_a_mount_made_after_the_spare_is_seen(tmp_path: object) -> None:
    """In a private mount namespace of the test's own: a spare copied the mount table
    before the tmpfs existed, so it must not serve the next request."""

    def body() -> list[str]:
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.unshare(0x00020000) == 0  # CLONE_NEWNS, this child only
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        pidns.run(["true"])
        _spare()
        where = os.path.join(str(tmp_path), "mnt")
        os.mkdir(where)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "spare", where], check=True)
        with open(os.path.join(where, "made-later"), "w"):
            pass
        seen = [_out(["ls", where]).strip()]
        _spare()
        subprocess.run(["umount", where], check=True)
        seen.append(_out(["ls", where]).strip())
        return seen

    assert in_child(body) == ["made-later", ""]


def test_a_signal_to_a_waiting_spare_never_reaches_a_later_command() -> None:
    def body() -> int:
        pidns.run(["true"])
        os.kill(_spare(), signal.SIGTERM)  # as a kill of the caller's group would
        return pidns.run(["sleep", "0.3"]).returncode

    assert in_child(body) == 0


CALLER = """
import os, sys, time
import pidns
from pidns.linux import served
pidns.run(["true"])
server = served.server_pid()
while not open(f"/proc/{server}/task/{server}/children").read().split():
    time.sleep(0.01)
spare = int(open(f"/proc/{server}/task/{server}/children").read().split()[0])
print(server, spare, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("victim", ["caller", "server"])
def test_a_waiting_spare_dies_with_its_caller_or_its_server(victim: str) -> None:
    caller = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CALLER)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert caller.stdout is not None
        server, spare = (int(word) for word in caller.stdout.readline().split())
        os.kill(caller.pid if victim == "caller" else server, signal.SIGKILL)
        assert gone(spare)
        if victim == "caller":
            assert gone(server)
    finally:
        caller.kill()
        caller.wait()


def test_a_fork_holds_nothing_of_its_parents_spare() -> None:
    def body() -> list[str]:
        pidns.run(["true"])
        _spare()
        pidns.run(["true"])  # the announcement is read: the caller holds the spare's fds
        _spare()
        with served._lock:  # the caller takes the announcement of the spare made now
            assert served._connection is not None
            served._connection.take_spare(b"")
            assert served._connection.spares
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover (the child)
            links = []
            for fd in os.listdir("/proc/self/fd"):
                try:
                    links.append(os.readlink(f"/proc/self/fd/{fd}"))
                except OSError:
                    continue
            os.write(write_end, "\n".join(links).encode())
            os._exit(0)
        os.close(write_end)
        os.waitpid(pid, 0)
        return os.read(read_end, 65536).decode().split("\n")

    links = in_child(body)
    # the parent's announced spare: its pidfd and its channel would be listed here
    assert not [link for link in links if "pidfd" in link], links


def test_spares_as_nobody_map_the_same_ids_as_a_request_of_its_own() -> None:
    def body() -> list[str]:
        return [_out(["sh", "-c", "id -u; echo $$; cat /proc/1/comm"]) for _ in range(4)]

    outputs = in_child(body, nobody=True, interpreter=True)
    assert outputs == ["0\n2\npidns-init\n"] * 4


class _Captured(Exception):
    """A request as ``served`` would send it to the server, caught before it is sent."""

    def __init__(self, request: dict[str, object], shape: bytes) -> None:
        super().__init__("captured")
        self.request, self.shape = request, shape


def _captured_request(argv: list[str], **options: object) -> tuple[dict[str, object], bytes]:
    """The request (and its spare shape) that ``pidns.run(argv, **options)`` makes here."""

    def capture(_argv: object, request: dict[str, object], _fds: object, shape: bytes) -> None:
        raise _Captured({**request, "rlimits": []}, shape)

    real, served._send = served._send, capture  # type: ignore[assignment]
    try:
        pidns.run(argv, **options)  # type: ignore[arg-type]
    except _Captured as captured:
        return captured.request, captured.shape
    finally:
        served._send = real
    raise AssertionError("no request was made")


def _at_pid(pid: int) -> int:
    """A process that sleeps at ``pid`` (clone3's set_tid), just freed by a reap."""
    for _ in range(100):  # the freed number can be briefly unavailable (EEXIST)
        try:
            child, _ = syscalls.clone(set_tid=[pid])
        except FileExistsError:
            time.sleep(0.001)
            continue
        if child == 0:  # pragma: no cover (the child)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])  # the server blocked them
            time.sleep(30)
            os._exit(0)
        return child
    raise AssertionError(f"pid {pid} did not become free")


def test_a_spare_reaped_before_its_eof_was_read_is_not_killed_by_its_pid() -> None:
    """The server can reap a dead spare (its SIGCHLD) before it reads the spare's socket:
    the spare's pid is free from then on, and a process that gets it must survive the
    server's dropping that spare. The victim is made at the recycled pid right after the
    server's wait returned it, as another fork on the machine could be."""

    def body() -> int:
        request, shape = _captured_request(["true"])
        assert shape, "a plain run must be one a spare can serve"
        mine, the_server, spare = _server_with_a_ready_spare(shape, request)
        os.kill(spare.pid, signal.SIGKILL)
        os.waitid(os.P_PID, spare.pid, os.WEXITED | os.WNOWAIT)  # a zombie now
        victims: list[int] = []
        real_waitpid = os.waitpid

        def waitpid(pid: int, options: int) -> tuple[int, int]:
            found = real_waitpid(pid, options)
            if found[0] == spare.pid:
                victims.append(_at_pid(found[0]))
            return found

        os.waitpid = waitpid
        try:
            the_server._reap()  # as its loop does on SIGCHLD
        finally:
            os.waitpid = real_waitpid
        assert victims == [spare.pid]
        # a SIGKILL sent before is the one its wait status says (kernel/signal.c:
        # complete_signal sets the group exit code at once; later signals are dropped)
        os.kill(victims[0], signal.SIGTERM)
        _, status = os.waitpid(victims[0], 0)
        mine.close()
        return os.WTERMSIG(status)

    assert in_child(body) == signal.SIGTERM, "the process at the spare's pid was killed"


def _server_with_a_ready_spare(
    shape: bytes, request: dict[str, object]
) -> tuple[socket.socket, server.Server, server.Spare]:
    """A server (its caller's end of the socket) with one spare of SHAPE that has said
    ``r``: its namespace is made and it waits for a request."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    the_server = server.Server(theirs.detach(), os.pidfd_open(os.getpid()))
    the_server.poller = select.poll()
    the_server._make_spare(shape, request)
    spare = the_server.spare
    assert spare is not None
    while not spare.ready:
        assert select.select([spare.sock], [], [], 10)[0]
        the_server._spare_said(spare)
    return mine, the_server, spare


def _memfd(request: dict[str, object]) -> int:
    fd = os.memfd_create("pidns-request", os.MFD_CLOEXEC)
    os.write(fd, marshal.dumps(request))
    return fd


def test_a_spare_that_took_its_request_serves_it_though_the_server_drops_it() -> None:
    """A request of another shape makes the server drop its spare; if the caller handed
    that spare a request just before, and the spare's t has not reached the server yet,
    the spare still runs the command to its end (it used to be SIGKILLed: the caller saw
    t, then the channel's end, and returncode -9)."""

    def body() -> tuple[list[str], int | None]:
        request, shape = _captured_request(["sh", "-c", "exit 7"])
        other, other_shape = _captured_request(["true"], mount_proc=False)
        assert shape and other_shape and shape != other_shape
        mine, the_server, _spare = _server_with_a_ready_spare(shape, request)
        _announcement, (channel, pidfd, *rest), _flags, _addr = socket.recv_fds(mine, 4096, 8)
        for fd in rest:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDWR)
        # the caller's cwd, by its path: the server here moved this process to /
        cwd = os.open(str(request["cwd_path"]), os.O_PATH | os.O_DIRECTORY)
        carrier = socket.socket(fileno=channel)
        socket.send_fds(carrier, [b"N"], [_memfd(request), cwd, null, null, null])
        assert select.select([carrier], [], [], 10)[0]
        assert carrier.recv(16) == b"t"  # taken; the server has not read the spare's t
        # the other shape's request (its own fds: memfd, status channel, cwd, stdio)
        status, status_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [_memfd(other), status_theirs.detach(), os.dup(cwd), null, null, null]
        the_server._request(b"N" + other_shape, [os.dup(fd) for fd in fds])
        assert the_server.spare is None  # dropped
        said: list[str] = []  # the kinds of message on the caller's channel
        command_status = None
        while not said or said[-1] not in ("X", "EOF"):
            assert select.select([carrier], [], [], 10)[0]
            data = carrier.recv(65536)
            for line in data.decode().splitlines() if data else ["EOF"]:
                said.append(line[:1] if line != "EOF" else line)
                message = None if line == "EOF" else status_channel.decode(line)
                if isinstance(message, status_channel.Report):
                    command_status = message.wait_status
        assert select.select([pidfd], [], [], 10)[0]
        the_server._reap()
        status.close()
        mine.close()
        return said, command_status

    said, command_status = in_child(body)
    assert said[-1] == "X" and command_status == 7 << 8, said
