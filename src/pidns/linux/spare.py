"""A spare init: made by the namespace server before any request, so that a request finds
its namespace ready and needs no round trip through the server.

For the shape of the caller's last request (its clone flags, id map, mount propagation
and /proc; ``served._shape`` says which requests can use one), the server clones a child
(``become_spare``) that does at once what an init does before it knows its command
(``init.prepare_namespace``: the user namespace's maps, the parent-death signal, mount
propagation, a fresh /proc), and announces it to the caller with its request channel.
The caller sends its next request of that shape straight to the spare (the fds a request
brings: memfd, cwd, stdio, pass_fds); the server makes the next spare once this one has
taken it.

What must be the caller's at request time is taken from the request, not from the
spare's making: argv, env, umask, rlimits, ignored signals and mask, the fds and the
working directory. The cwd is the subtle part: a mount namespace copied before the
request holds copies of the caller's mounts (fs/namespace.c:copy_mnt_ns), and the
caller's O_PATH fd names a mount of the caller's namespace, not of the copy; so the spare
looks the caller's cwd path up in its own namespace and serves only if that reaches the
same file (st_dev, st_ino), else declines. The caller never sends a request to a spare
whose mounts could differ from its own: a mountinfo fd the server opened before the copy
polls POLLPRI once anything has been mounted or unmounted since
(``served.Spare.stale``).

On the request channel the spare says ``d`` (declined, or it could not make its
namespace: nothing has been done, the caller asks the server instead) or ``t`` (taken),
then what any init says. To the server it says ``r`` (ready), ``f`` (its namespace could
not be made: that shape gets no spares, each request's own error is reported) or ``t``
with a copy of the request channel (for the server's ``W``).

The spare never outlives its caller or its server: it waits on the caller's pidfd and on
its socket to the server (EOF when the server goes, or lets it go: the server never
kills a spare, which may have taken a request it has not heard of yet) besides the
parent-death signal.
Signals sent to it before a request (the caller's process group, which it shares until
its command exists, as every init here does) are read and dropped: no init existed yet
to receive them.
"""

from __future__ import annotations

import _socket
import ctypes
import marshal
import os
import select
import time

from pidns.linux import init as init_module
from pidns.linux import server, status_channel, syscalls
from pidns.linux.init import (
    CATCHABLE,
    Init,
    Plan,
    _close_fds_except,
    become_init,
    prepare_namespace,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn

# its name for ps and /proc/PID/comm while it waits (kernel/sys.c:prctl PR_SET_NAME)
_NAME = ctypes.create_string_buffer(b"pidns-spare")
_NAME_ADDRESS = ctypes.addressof(_NAME)
CWD, STDIO = 1, 2  # a request's fds: memfd, cwd, stdin, stdout, stderr, pass_fds...
FIXED_FDS = 5


def become_spare(
    request: dict[str, Any], sock: int, channel: int, caller_pidfd: int, host_pidns: int
) -> NoReturn:
    """The child of the server's clone3: make the namespace, wait, serve one request."""
    try:
        _close_fds_except({0, 1, 2, sock, channel, caller_pidfd, host_pidns})
        plan, _, _ = server.plan_of(_shape_only(request), -1, [], [-1, -1, -1], [])
        prepare_namespace(plan, -1, ["setup"])
        _rehearse(request, plan)
        sfd = syscalls.signalfd(CATCHABLE)
        syscalls.prctl(syscalls.PR_SET_NAME, _NAME_ADDRESS)  # until it serves: pidns-init
        os.write(sock, b"r")
    except BaseException as exc:
        server._quietly(os.write, sock, b"f" + str(exc).encode(errors="replace")[:4000])
        _decline(channel)
    fds = _wait(sock, channel, caller_pidfd, sfd)
    os.close(sfd)
    try:
        request = marshal.loads(server._read_all(fds[0]))
        if not _enter_cwd(request, fds[CWD]):
            raise ValueError("the caller's cwd is not the same file in this namespace")
    except Exception:
        _decline(channel)
    for fd in fds[:STDIO]:
        os.close(fd)
    os.write(channel, b"t")
    carrier = _socket.socket(fileno=sock)
    payload = channel.to_bytes(4, "little")
    server._quietly(carrier.sendmsg, [b"t"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, payload)])
    carrier.close()
    stdio = fds[STDIO:FIXED_FDS]
    passed = list(zip(fds[FIXED_FDS:], request["pass_fds"], strict=True))
    try:
        plan, channel, (caller_pidfd, host_pidns) = server.plan_of(
            request, channel, [caller_pidfd, host_pidns], stdio, passed
        )
        plan.prepared = True
    except BaseException as exc:
        server.report_setup_failure(channel, exc)
    become_init(plan, channel, caller_pidfd, host_pidns)


def _rehearse(request: dict[str, Any], plan: Plan) -> None:
    """Run, before any request, the pure parts of serving one (decoding it, the spawn's
    arguments, the reports' encoding, the init's loop state): their first writes to the
    pages this process still shares with the server take the copy-on-write faults now
    (kernel/fork.c:copy_process copies page tables, not pages), not once a caller waits."""
    marshal.loads(marshal.dumps(request))
    syscalls.posix_spawn(
        request["path"] or "/",
        request["argv"],
        request["env"].items(),
        dup2=[(0, 0), (1, 1), (2, 2)],
        sigdefault=CATCHABLE,
        rehearse=True,
    )
    status_channel.encode(status_channel.Ready(2, 0, time.monotonic_ns()))
    status_channel.encode(status_channel.Report(0, 0, 0, 0, 0, 0, [], [], False))
    rehearsal = Init(plan, 2, -1, -1, -1)
    rehearsal.reap()  # ECHILD: no child yet
    rehearsal.command_exited(0)  # kill(-1): nobody else in this namespace yet
    init_module._refused.clear()  # (what a refused kill(2) noted is for the real run)


def _decline(channel: int) -> NoReturn:
    server._quietly(os.write, channel, b"d")
    os._exit(0)


def _shape_only(request: dict[str, Any]) -> dict[str, Any]:
    """The request that made this spare's shape, without its command's signals and
    rlimits (the spare keeps the server's until it has a request of its own)."""
    return {**request, "rlimits": (), "inherited": ((), ())}


def _wait(sock: int, channel: int, caller_pidfd: int, sfd: int) -> list[int]:
    """Wait for the request (its fds); exit if the caller or the server goes first."""
    carrier = _socket.socket(fileno=channel)
    poller = select.poll()
    for fd in (sock, channel, caller_pidfd, sfd):
        poller.register(fd, select.POLLIN)
    while True:
        ready = dict(poller.poll())
        if caller_pidfd in ready or sock in ready:
            os._exit(0)  # the caller is gone, or the server (EOF): nobody will ask
        if sfd in ready:
            syscalls.read_signals(sfd)  # no command yet to forward them to
        if channel in ready:
            try:
                data, fds = server.recv_fds(carrier)
            except OSError:
                data, fds = b"", []
            carrier.detach()
            if data != server.REQUEST or len(fds) < FIXED_FDS:
                os._exit(0)  # the caller let it go (EOF)
            return fds


def _enter_cwd(request: dict[str, Any], cwd: int) -> bool:
    """Go to the caller's working directory; whether it is the very file ``cwd`` names."""
    if not request["mount_ns"]:
        os.fchdir(cwd)  # the server's mount namespace, the caller's: the fd is exact
        return True
    path = request["cwd_path"]
    if path is None:
        return False
    os.chdir(path)
    here, there = os.stat("."), os.fstat(cwd)
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)
