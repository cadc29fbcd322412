"""The real backend: runs a scenario on the running kernel, through puppet processes.

The runner (this module, in the calling process) makes the *world*: a fresh pid
namespace one level below its own, inside a fresh user namespace mapping the caller to
root when the caller lacks CAP_SYS_ADMIN. Its init is ``root`` (puppet.world_init, the
runner's child: pid 1 in the world, a session leader that reaps every zombie it gets)
and ``A`` is root's first child. Every named process is a puppet (pidns.scenario.puppet)
that performs the calls it is sent; fork and clone are the puppets' own.

After each step the runner *settles*: it reads every process of the world from /proc as
seen from outside (status, stat) and waits until nothing is in flight (see
``_World.unsettled``): every signal sent has been acted on, every dying process is a
zombie or an init that waits for its namespace to empty (PF_EXITING), root has reaped its
zombies, and every blocked wait that can return has returned. ``blocks`` is decided
without a timeout: a puppet reports it after WNOHANG found nothing and then really
blocks; a step sent to a stopped puppet blocks until it is continued.

When a run ends, on any path, nothing of it is left: ``close`` SIGKILLs root from the
runner's namespace, and the kernel kills every process of the world and of the
namespaces below it (kernel/pid_namespace.c:zap_pid_ns_processes) before root's own
death is reported; root dies by PR_SET_PDEATHSIG if the runner dies first.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import signal
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pidns.core import errnos, signals
from pidns.core import flags as cf
from pidns.linux import features, nsfs, proc, syscalls
from pidns.scenario import ast, puppet
from pidns.scenario.ast import Completion, Op, Outcome, ProcessSnapshot, Scenario, Snapshot, Step
from pidns.scenario.backend import BackendError, Trace, UnsupportedStep, run

CAP_SYS_ADMIN = 21
# What the runner and its puppets use (docs/kernels.md): without one, every scenario is
# reported unsupported on this kernel, naming it, instead of failing.
NEEDS = ("clone3", "pidfd_open", "waitid_pidfd", "nspid", "ns_get_parent")
SIGKILL_BIT = 1 << (signals.KILL - 1)
WAKE_BIT = 1 << (puppet.WAKE - 1)
_STATUS = re.compile(r"^(PPid|SigPnd|ShdPnd|SigBlk):\s*(.*)$", re.M)
# Calls that change nothing outside the caller that a snapshot shows or that can be in
# flight: once one returns in a settled world, the world is still settled.
_OWN_STATE_OPS = frozenset(
    {
        Op.GETPID,
        Op.GETPPID,
        Op.GETPGID,
        Op.GETSID,
        Op.SETSID,
        Op.CAUGHT,
        Op.SIGNAL,
        Op.SUBREAPER,
        Op.SETUID,
        Op.UNSHARE,
        Op.SETNS,
    }
)
# The state of an init asleep in zap_pid_ns_processes: S (TASK_INTERRUPTIBLE, 6.18),
# I (TASK_IDLE, as 6.1 shows it) or D (TASK_UNINTERRUPTIBLE, 3.8).
_ZAP = "SID"
_ESRCH = errnos.name(3)
_ECHILD = errnos.name(10)


def privileged() -> bool:
    """CAP_SYS_ADMIN in the effective set: the world needs no user namespace."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                return bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
    return False


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C back while the world's init is made or killed, so that no
    KeyboardInterrupt leaves it unrecorded or alive; it arrives right after."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _own_nspid() -> tuple[int, ...]:
    """The runner's NSpid, from /proc's level to its own (one entry per level)."""
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"NSpid:"):
                return tuple(int(x) for x in line.split()[1:])
    return (os.getpid(),)


@dataclass(slots=True)
class _Seen:
    """One process as the last sweep of /proc found it."""

    state: str  # the State letter of /proc/PID/stat: R S D T t Z X ...
    ppid: int  # the real parent's pid, in the runner's /proc
    pending: int  # SigPnd | ShdPnd
    blocked: int  # SigBlk
    exiting: bool  # PF_EXITING

    @property
    def dead(self) -> bool:
        return self.state in ("Z", "X") or self.exiting

    @property
    def stopped(self) -> bool:
        return self.state in ("T", "t")


@dataclass(slots=True)
class _Call:
    """A call that has not returned yet: awaited now, blocked in wait, or queued while stopped."""

    step: Step
    kind: str  # "reply" (the step's own, awaited), "wait" (blocked), "queued" (actor stopped)
    wait_for: int = -1  # wait: the host pid of the child waited for, -1 for any


@dataclass(slots=True)
class _Proc:
    """A process of the world: root or a puppet."""

    name: str
    host: int  # pid in the runner's /proc
    pidfd: int
    channel: socket.socket | None  # None for root
    nspid: tuple[int, ...]  # from the world's level inwards
    nschain: tuple[int, ...]  # pid namespace inode at each of those levels
    status_fd: int
    stat_fd: int
    seen: _Seen
    reaped: bool = False
    call: _Call | None = None
    discard: int = 0  # replies still to come for calls already resolved (see _resolve_silent_actor)

    @property
    def level(self) -> int:
        """Index of the active namespace in ``nspid``/``nschain``."""
        return len(self.nschain) - 1


@dataclass(slots=True)
class _Settle:
    """What one step waits for while it settles."""

    actor: _Proc | None
    result: str | None
    completions: list[Completion] = field(default_factory=list)


class RealBackend:
    """The Backend of pidns.scenario.backend on the running kernel.

    ``userns``: make the world inside a new user namespace (default: only when the caller
    lacks CAP_SYS_ADMIN). ``settle_timeout``: seconds after which a world that does not
    settle is a BackendError (a safety net: no result is ever decided by a timeout).
    The world lives as long as the thread that called ``start`` (PR_SET_PDEATHSIG).

    For a model of the same world: ``world_level`` is the world's kernel level (one below
    the runner's), ``mapped_uids`` the uids its user namespace maps (None: all of them).
    """

    name = "real"

    def __init__(self, userns: bool | None = None, settle_timeout: float = 10.0) -> None:
        self.userns = (not privileged()) if userns is None else userns
        self.settle_timeout = settle_timeout
        self.world: _World | None = None
        self.world_level = len(_own_nspid())
        self.mapped_uids: frozenset[int] | None = frozenset({0}) if self.userns else None

    def start(self, scenario: Scenario) -> None:
        self.close()
        lacking = features.first_missing(NEEDS)
        if lacking is not None:
            raise UnsupportedStep(features.unsupported(lacking, "the real backend"))
        self.world = _World(self.userns, self.settle_timeout)
        self.world.make()

    def step(self, step: Step) -> Outcome:
        assert self.world is not None, "start() first"
        return self.world.step(step)

    def snapshot(self) -> Snapshot:
        assert self.world is not None, "start() first"
        return self.world.snapshot()

    def close(self) -> None:
        world, self.world = self.world, None
        if world is not None:
            world.close()

    def host_pids(self) -> list[int]:
        """Every process of the world ever made, as host pids (root first): for tests."""
        return [] if self.world is None else [p.host for p in self.world.procs.values()]

    def __enter__(self) -> RealBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class _World:
    def __init__(self, userns: bool, settle_timeout: float) -> None:
        self.userns = userns
        self.settle_timeout = settle_timeout
        self.procs: dict[str, _Proc] = {}
        self.by_host: dict[int, _Proc] = {}  # processes not yet reaped
        self.root: _Proc | None = None
        self.root_pidfd = -1
        self.root_host = 0
        self.world_index = 0  # index of the world's level in /proc's NSpid lines
        self.world_ns = 0

    # ---- making and ending the world ----------------------------------------------------

    def make(self) -> None:
        kind = socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
        control, root_control = socket.socketpair(socket.AF_UNIX, kind)
        first, first_child = socket.socketpair(socket.AF_UNIX, kind)
        flags = cf.NEWPID | (cf.NEWUSER if self.userns else 0)
        with _uninterrupted():
            try:
                pid, pidfd = syscalls.clone(flags, want_pidfd=True)
            except OSError as exc:
                for sock in (control, root_control, first, first_child):
                    sock.close()
                how = "a user and pid namespace" if self.userns else "a pid namespace"
                raise BackendError(f"cannot make {how} for the world: {exc.strerror}") from None
            if pid == 0:
                control.close()
                first.close()
                puppet.world_init(root_control, first_child)
            self.root_pidfd = pidfd  # from here on, close() can end the world
        root_control.close()
        first_child.close()
        self.root = self._register("root", pidfd, None)
        self.root_host = self.root.host
        try:
            if self.userns:
                self._map_ids(self.root.host)
            puppet.send(control, "go")
            text, fds = self._receive(control, "root")
            if text != "A" or len(fds) != 1:
                raise BackendError(f"the world's init failed to start A ({text!r})")
            self._register("A", fds[0], first)
        finally:
            control.close()
        self._check_wchan()
        self.settle(_Settle(None, ast.OK))

    def _map_ids(self, host: int) -> None:
        try:
            for name, text in (
                ("setgroups", "deny"),
                ("uid_map", f"0 {os.geteuid()} 1"),
                ("gid_map", f"0 {os.getegid()} 1"),
            ):
                with open(f"/proc/{host}/{name}", "wb") as f:
                    f.write(text.encode())
        except OSError as exc:
            raise BackendError(f"cannot map the caller to root in the world: {exc}") from None

    def close(self) -> None:
        """SIGKILL root from outside: the kernel kills everything below it first."""
        pidfd = self.root_pidfd
        if pidfd >= 0:
            with _uninterrupted(), contextlib.suppress(ProcessLookupError):
                syscalls.pidfd_send_signal(pidfd, signals.KILL)
            select.select([pidfd], [], [], 30.0)  # the whole world is gone by then
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        for p in self.procs.values():
            self._forget(p)
        if self.root is None and pidfd >= 0:
            os.close(pidfd)  # root never got its record, which owns the descriptor
        self.root_pidfd = -1

    def _forget(self, p: _Proc) -> None:
        for fd in (p.pidfd, p.status_fd, p.stat_fd):
            if fd >= 0:
                os.close(fd)
        p.pidfd = p.status_fd = p.stat_fd = -1
        if p.channel is not None:
            p.channel.close()
            p.channel = None

    # ---- processes ----------------------------------------------------------------------

    def _register(self, name: str, pidfd: int, channel: socket.socket | None) -> _Proc:
        host, full = _pidfd_numbers(pidfd)
        status_fd = os.open(f"/proc/{host}/status", os.O_RDONLY | os.O_CLOEXEC)
        stat_fd = os.open(f"/proc/{host}/stat", os.O_RDONLY | os.O_CLOEXEC)
        if name == "root":
            self.world_index = len(full) - 1
            self.world_ns = os.stat(f"/proc/{host}/ns/pid").st_ino
        nspid = full[self.world_index :]
        p = _Proc(
            name, host, pidfd, channel, nspid, (), status_fd, stat_fd, _Seen("R", 0, 0, 0, False)
        )
        p.nschain = self._ns_chain(host, len(nspid))
        self.procs[name] = p
        self.by_host[host] = p
        seen = _read(p)
        if seen is not None:
            p.seen = seen
        return p

    def _ns_chain(self, host: int, depth: int) -> tuple[int, ...]:
        """The pid namespace of each level from the world's inwards (NS_GET_PARENT walk)."""
        fd = os.open(f"/proc/{host}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        chain = [os.fstat(fd).st_ino]
        try:
            while len(chain) < depth:
                parent = syscalls.ns_ioctl(fd, nsfs.NS_GET_PARENT)
                os.close(fd)
                fd = parent
                chain.append(os.fstat(fd).st_ino)
        finally:
            os.close(fd)
        chain.reverse()
        if chain[0] != self.world_ns:
            raise BackendError(f"process {host} is not in the world's namespace")
        return tuple(chain)

    def seen_by(self, actor: _Proc, target: _Proc) -> int:
        """TARGET's pid in ACTOR's active namespace; 0 when invisible or reaped."""
        level = actor.level
        if target.reaped or len(target.nschain) <= level:
            return 0
        return target.nspid[level] if target.nschain[level] == actor.nschain[level] else 0

    def name_of(self, actor: _Proc, pid: int) -> str:
        """The process that is ``pid`` in ACTOR's namespace (a child ACTOR just reaped)."""
        level, ns = actor.level, actor.nschain[-1]
        found = [
            p
            for p in self.procs.values()
            if p.name != "root"
            and len(p.nschain) > level
            and p.nschain[level] == ns
            and p.nspid[level] == pid
        ]
        if not found:
            raise BackendError(f"{actor.name} reaped pid {pid}, which is no named process")
        found.sort(key=lambda p: (p.seen.ppid == actor.host, not p.reaped))
        return found[-1].name

    # ---- steps --------------------------------------------------------------------------

    def step(self, step: Step) -> Outcome:
        actor = self.procs[step.actor]
        seen = None if actor.reaped else _read(actor)  # fresh: it may have been killed from outside
        if seen is None or seen.dead or seen.pending & SIGKILL_BIT:
            self.settle(_Settle(None, ast.SKIPPED))  # let the snapshot catch up with its death
            return Outcome(ast.SKIPPED)
        actor.seen = seen
        command = self._command(actor, step)
        if command.startswith("="):  # decided without a call
            return Outcome(command[1:])
        if actor.channel is None:
            raise BackendError(f"{actor.name} has no channel")
        puppet.send(actor.channel, command)
        settle = _Settle(actor, None)
        actor.call = _Call(step, "reply", self._wait_target(actor, step))
        if actor.seen.stopped:  # it will read the command once continued
            actor.call.kind = "queued"
            settle.result = ast.BLOCKS
        elif step.op in _OWN_STATE_OPS:
            for _ in range(4):  # the world was settled and the call touches no one else
                self._await_actor(settle)
                if settle.result is not None:
                    return Outcome(settle.result)
        self.settle(settle)
        assert settle.result is not None
        return Outcome(settle.result, settle.completions)

    def _target(self, step: Step) -> _Proc:
        assert step.args.target is not None
        return self.procs[step.args.target]

    def _wait_target(self, actor: _Proc, step: Step) -> int:
        if step.op is not Op.WAIT or step.args.target is None:
            return -1
        return self._target(step).host

    def _command(self, actor: _Proc, step: Step) -> str:
        """The message for ACTOR's puppet, or ``=VALUE`` for a result known without a call."""
        args, op = step.args, step.op
        if op is Op.FORK:
            return "fork"
        if op is Op.CLONE:
            return f"clone {args.flags} {','.join(map(str, args.set_tid)) or '-'}"
        if op is Op.UNSHARE:
            return f"unshare {args.flags}"
        if op is Op.SETNS:
            target = self._target(step)
            if target.reaped:
                return "=" + _ESRCH
            kind = "pid_for_children" if args.pid_for_children else "pid"
            return f"setns {target.host} {kind}"
        if op in (Op.GETPID, Op.GETPPID, Op.GETPGID, Op.GETSID, Op.SETSID, Op.CAUGHT):
            return op.value
        if op is Op.PIDOF:
            return "=" + ast.pid_value(self.seen_by(actor, self._target(step)))
        if op is Op.NSPID:
            target = self._target(step) if args.target else actor
            return "=" + (_ESRCH if target.reaped else ast.list_value(target.nspid))
        if op is Op.STATE:
            return "=" + _state(self._target(step))
        if op is Op.EXIT:
            return f"exit {args.number}"
        if op is Op.WAIT:
            pid = -1
            if args.target is not None:
                pid = self.seen_by(actor, self._target(step))
                if pid == 0:  # reaped or invisible: not a child, whatever number it had
                    return "=" + _ECHILD
            return f"wait {pid} {int(args.nohang)}"
        if op is Op.KILL:
            pid = (
                (args.number or 0)
                if args.target is None
                else self.seen_by(actor, self._target(step))
            )
            if pid == 0 and args.target is not None:
                return "=" + _ESRCH
            return f"kill {pid} {args.signal}"
        if op is Op.SIGNAL:
            assert args.disposition is not None
            return f"signal {args.signal} {args.disposition.value}"
        if op is Op.SUBREAPER:
            return f"subreaper {int(args.on)}"
        if op is Op.SETUID:
            return f"setuid {args.number}"
        raise AssertionError(op)  # pragma: no cover - every Op is handled

    # ---- replies ------------------------------------------------------------------------

    def _receive(self, sock: socket.socket, who: str) -> tuple[str, list[int]]:
        ready, _, _ = select.select([sock], [], [], self.settle_timeout)
        if not ready:
            raise BackendError(f"{who} did not answer within {self.settle_timeout} s")
        try:
            return puppet.receive(sock)
        except OSError as exc:
            raise BackendError(f"lost {who}: {exc}") from None

    def _take_message(self, p: _Proc, settle: _Settle) -> None:
        """Read one message of P's puppet and apply it to the call it answers."""
        assert p.channel is not None
        try:
            text, fds = puppet.receive(p.channel)
        except OSError:
            text, fds = "", []
        if not text:  # the puppet is gone; its death shows in /proc
            p.channel.close()
            p.channel = None
            return
        if p.discard:
            p.discard -= 1
            for fd in fds:
                os.close(fd)
            return
        call = p.call
        if call is None:
            raise BackendError(f"{p.name} sent {text!r} with no call pending")
        if text == "B":
            call.kind = "wait"
            if p is settle.actor and settle.result is None:
                settle.result = ast.BLOCKS
            return
        if text.startswith("D "):
            text = text[2:]
        result = self._decode(p, call.step, text, fds)
        p.call = None
        if call.kind == "reply":
            settle.result = result
        else:
            settle.completions.append(Completion(call.step.index, p.name, result))

    def _decode(self, p: _Proc, step: Step, text: str, fds: list[int]) -> str:
        kind, _, rest = text.partition(" ")
        words = rest.split()
        if kind == "I":
            if step.op in (Op.FORK, Op.CLONE):
                assert step.bind is not None and p.channel is not None
                if len(fds) != 2:
                    raise BackendError(f"{p.name}: fork reply without its descriptors")
                self._register(step.bind, fds[0], socket.socket(fileno=fds[1]))
            return ast.pid_value(int(words[0]))
        for fd in fds:
            os.close(fd)
        if kind == "E":
            return errnos.name(int(words[0]))
        if kind == "N":
            return ast.NONE
        if kind == "X":
            return ast.exited(self.name_of(p, int(words[0])), int(words[1]))
        if kind == "K":
            return ast.killed(self.name_of(p, int(words[0])), signals.name(int(words[1])))
        if kind == "C":
            items = [item.split(":") for item in rest.split(",") if item]
            return ast.caught_value([(signals.name(int(s)), int(pid)) for s, pid in items])
        if kind == "U":
            raise UnsupportedStep(f"line {step.line}: {rest}")
        raise BackendError(f"line {step.line}: puppet {p.name} failed: {rest}")

    # ---- settling -----------------------------------------------------------------------

    def settle(self, settle: _Settle) -> None:
        """Wait until nothing is in flight; resolve the actor's call and any completions.

        Only a sweep of /proc begun after the actor's call returned can show the world
        settled: one begun earlier may have read a process before the call touched it.
        """
        deadline = time.monotonic() + self.settle_timeout
        rounds = 0
        asked: set[int] = set()  # host pids told to take their caught signals
        while True:
            self._await_actor(settle)
            self._read_messages(settle, 0)
            returned = settle.result is not None
            self._sweep()
            self._resolve_silent_actor(settle)
            reasons = self.unsettled()
            if not returned:
                assert settle.actor is not None
                reasons.append(f"{settle.actor.name}'s call has not returned")
            if not reasons:
                # all else at rest: the puppets take their caught signals now, so that
                # signals of one number sent during the step merge as the kernel merges them
                reasons = self._take_caught_signals(asked)
                if not reasons:
                    return
            if time.monotonic() > deadline:
                raise BackendError("the world did not settle: " + "; ".join(reasons))
            if returned:
                rounds += 1
                self._read_messages(settle, 0 if rounds < 4 else 0.0002 if rounds < 20 else 0.002)

    def _await_actor(self, settle: _Settle) -> None:
        """Sleep until the actor answers or exits (its pidfd turns readable), briefly."""
        actor = settle.actor
        if actor is None or settle.result is not None or actor.channel is None:
            return
        channel = actor.channel.fileno()
        ready, _, _ = select.select([channel, actor.pidfd], [], [], 0.001)
        if channel in ready:
            self._take_message(actor, settle)

    def _read_messages(self, settle: _Settle, timeout: float) -> None:
        waiting = {
            p.channel.fileno(): p
            for p in self.by_host.values()
            if p.channel is not None and (p.call is not None or p.discard)
        }
        if not waiting and timeout <= 0:
            return
        if not waiting:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in ready:
            self._take_message(waiting[fd], settle)

    def _resolve_silent_actor(self, settle: _Settle) -> None:
        """The actor stopped or died without answering: only its own call can have done it."""
        actor = settle.actor
        if actor is None or settle.result is not None or actor.call is None:
            return
        op = actor.call.step.op
        if op is Op.EXIT and (actor.reaped or actor.seen.dead):
            settle.result = ast.OK
            actor.call = None
        elif actor.reaped or actor.seen.dead:
            if op is not Op.KILL:
                raise BackendError(f"{actor.name} died during its {op.value} step")
            settle.result = ast.OK  # kill(2) succeeded: the signal it sent itself killed it
            actor.call = None
        elif actor.seen.stopped and op is Op.KILL:
            settle.result = ast.OK  # it stopped itself; the reply comes once continued
            actor.call = None
            actor.discard += 1
        elif actor.seen.stopped:
            settle.result = ast.BLOCKS  # it reads the command once continued
            actor.call.kind = "queued"

    def _sweep(self) -> None:
        for p in list(self.by_host.values()):
            seen = _read(p)
            if seen is None:
                p.reaped = True
                del self.by_host[p.host]
                self._forget(p)
            else:
                p.seen = seen
            if (seen is None or seen.dead) and p.call is not None and p.call.kind != "reply":
                p.call = None  # a call pending in a dead process never completes

    def unsettled(self) -> list[str]:
        """Why the world is not settled yet (empty: settled).

        A process is at rest when it is a zombie nobody is about to reap, an init asleep in
        zap_pid_ns_processes waiting for the other pids of its namespace (``exiting``),
        stopped, or alive with no signal pending, no call of its own on the way and, if it
        is blocked in wait, asleep in do_wait. The kernel's own wait channel
        (/proc/PID/wchan) tells a sleeping waiter or exiting init from one that was just
        woken, so no step result ever depends on timing.
        """
        reasons: list[str] = []
        for p in self.by_host.values():
            seen = p.seen
            if seen.state == "X":
                reasons.append(f"{p.name} is being reaped")
            elif seen.state == "Z":
                if seen.ppid == self.root_host:
                    reasons.append(f"{p.name} is a zombie root will reap")
            elif seen.exiting:
                if not (self._members(p) and self._asleep_in(p, "zap_pid_ns_processes", _ZAP)):
                    reasons.append(f"{p.name} is exiting")
            elif seen.stopped:
                if seen.pending & SIGKILL_BIT:
                    reasons.append(f"{p.name} is stopped with SIGKILL pending")
            else:
                if seen.pending & ~seen.blocked:  # blocked ones: caught, taken at the end
                    reasons.append(f"{p.name} has signals pending")
                call = p.call
                if call is not None and call.kind == "queued":
                    reasons.append(f"{p.name} was continued: its queued call runs")
                elif call is not None and call.kind == "wait" and not self._asleep_in(p, "do_wait"):
                    reasons.append(f"{p.name}'s wait is returning")
        return reasons

    def _members(self, init: _Proc) -> bool:
        """Another process still has a pid in INIT's namespace. Without one, an init asleep
        in zap_pid_ns_processes is about to wake: a member's /proc entry goes before its
        pid is freed (kernel/exit.c:release_task, then free_pids)."""
        level, ns = init.level, init.nschain[-1]
        return any(
            p is not init and len(p.nschain) > level and p.nschain[level] == ns
            for p in self.by_host.values()
        )

    def _asleep_in(self, p: _Proc, function: str, states: str = "S") -> bool:
        return p.seen.state in states and _wchan(p.host) == function

    def _check_wchan(self) -> None:
        """Settling reads wait channels: make sure this kernel shows them (CONFIG_KALLSYMS);
        once per runner process."""
        global _wchan_checked
        assert self.root is not None
        deadline = time.monotonic() + 2.0
        while not _wchan_checked and time.monotonic() < deadline:
            # root sleeps between its reaps
            _wchan_checked = _wchan(self.root.host) not in ("", "0")
            time.sleep(0 if _wchan_checked else 0.0005)
        if not _wchan_checked:
            raise BackendError("/proc/PID/wchan shows no kernel symbols; the backend needs them")

    def _take_caught_signals(self, asked: set[int]) -> list[str]:
        """Tell every running puppet with caught signals pending to take them: an idle one
        by the ``drain`` command, one blocked in wait by WAKE. Returns who has not yet."""
        reasons: list[str] = []
        for p in self.by_host.values():
            seen = p.seen
            if seen.dead or seen.stopped or seen.exiting or not seen.pending & seen.blocked:
                continue
            reasons.append(f"{p.name} has caught signals to take")
            if p.host in asked:
                continue
            asked.add(p.host)
            call = p.call
            if call is None and p.channel is not None:
                puppet.send(p.channel, "drain")
            elif call is not None and call.kind == "wait" and not seen.pending & WAKE_BIT:
                with contextlib.suppress(ProcessLookupError):
                    syscalls.pidfd_send_signal(p.pidfd, puppet.WAKE)
        return reasons

    # ---- snapshots ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        snap: Snapshot = {}
        for name, p in self.procs.items():
            if p is self.root:
                continue
            if p.reaped:
                snap[name] = ProcessSnapshot(ast.State.REAPED.value, "-", ())
                continue
            parent = self.by_host.get(p.seen.ppid)
            snap[name] = ProcessSnapshot(_state(p), parent.name if parent else "?", p.nspid)
        return snap


def _state(p: _Proc) -> str:
    if p.reaped:
        return ast.State.REAPED.value
    if p.seen.state in ("Z", "X"):
        return ast.State.ZOMBIE.value
    if p.seen.exiting:
        return ast.State.EXITING.value
    return ast.State.RUNNING.value


def _read(p: _Proc) -> _Seen | None:
    """Read P from /proc (status, then stat); None once it has been reaped."""
    try:
        status = os.pread(p.status_fd, 4096, 0).decode()
        stat = os.pread(p.stat_fd, 1024, 0).decode()
    except ProcessLookupError:
        return None
    fields = dict(_STATUS.findall(status))
    parts = stat[stat.rindex(")") + 2 :].split()
    return _Seen(
        state=parts[0],
        ppid=int(fields["PPid"]),
        pending=int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16),
        blocked=int(fields["SigBlk"], 16),
        exiting=bool(int(parts[6]) & proc.PF_EXITING),
    )


_wchan_checked = False


def _wchan(host: int) -> str:
    """The kernel function a sleeping process waits in (``0`` while it runs)."""
    try:
        with open(f"/proc/{host}/wchan", "rb") as f:
            return f.read().decode()
    except OSError:
        return ""


def _pidfd_numbers(pidfd: int) -> tuple[int, tuple[int, ...]]:
    """``Pid`` and ``NSpid`` of a pidfd, in the runner's /proc (fs/pidfs.c:pidfd_show_fdinfo)."""
    fd = os.open(f"/proc/self/fdinfo/{pidfd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
    info = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    host = int(info["Pid"])
    if host <= 0:
        raise BackendError("a new process died before the runner could see it")
    return host, tuple(int(x) for x in info["NSpid"].split())


# ---- timing (benchmarks/check_bench.py) -------------------------------------------------


def time_steps(
    scenarios: Iterable[Scenario], backend: RealBackend | None = None
) -> tuple[int, float]:
    """Run each scenario on the real backend (world set-up and teardown included).

    Returns ``(steps, seconds)``; steps/s is their ratio. A scenario the backend fails on
    raises its BackendError.
    """
    backend = backend or RealBackend()
    steps = 0
    started = time.perf_counter()
    for scenario in scenarios:
        trace: Trace = run(scenario, backend)
        if trace.error is not None:
            raise BackendError(f"{scenario.path}: {trace.error}")
        steps += len(trace.records)
    return steps, time.perf_counter() - started


__all__ = ["RealBackend", "privileged", "time_steps"]
