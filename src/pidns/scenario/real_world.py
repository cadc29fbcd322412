"""The real backend's world: its processes (root and the puppets) and their threads, the
pidfds they hold, the steps sent to them, their replies, and snapshots. Settling is
pidns.scenario.real_settle, reading /proc pidns.scenario.real_proc; pidns.scenario.real
is the Backend over all of it.

A thread is a ``Proc`` too (its ``leader`` set): it has a channel of its own, its
/proc/TID files and a PIDFD_THREAD pidfd. A pidfd name is a descriptor number in the
tables that hold it (its opener's, copied by every later fork, shared with CLONE_FILES).

After an ``exec`` by a thread that is not its process's leader, the thread's name
names the leader's ``Proc`` (whose pid, and so whose open /proc files and pidfds, the
exec'ing thread took: fs/exec.c:de_thread, exchange_tids), which takes the thread's
channel; the leader's name stays a target and makes no more steps (``retired``).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass

from pidns.core import errnos, signals
from pidns.core import flags as cf
from pidns.core.abi import WALL
from pidns.linux import features, nsfs, syscalls
from pidns.scenario import ast, ops, puppet
from pidns.scenario import puppet_protocol as wire
from pidns.scenario.ast import Completion, Op, Outcome, ProcessSnapshot, Snapshot, Step
from pidns.scenario.backend import BackendError, UnsupportedStep, WorldError, writes_global_pid_max
from pidns.scenario.real_call import Call, CallState
from pidns.scenario.real_proc import SIGKILL_BIT, Seen, pidfd_numbers, read
from pidns.scenario.real_settle import ZAP, Settle, Settler, asleep_in, check_wchan


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Hold Ctrl-C back while the world's init is made or killed, so that no
    KeyboardInterrupt leaves it unrecorded or alive; it arrives right after."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


@dataclass(slots=True, eq=False)
class Proc:
    """A process of the world: root or a puppet (equal only to itself)."""

    name: str
    host: int  # pid in the runner's /proc
    pidfd: int
    channel: socket.socket | None  # None for root
    nspid: tuple[int, ...]  # from the world's level inwards
    nschain: tuple[int, ...]  # pid namespace inode at each of those levels
    status_fd: int
    stat_fd: int
    seen: Seen
    reaped: bool = False
    call: Call | None = None
    discard: int = 0  # replies still to come for calls already resolved (see _resolve_silent_actor)
    user_blocked: int = 0  # signals this thread blocked (``block``), bit sig - 1; inherited
    # The namespace chain its children get (pid_for_children), tracked from its own steps
    # where the kernel shows neither NSpid nor namespace parents; ends in 0 after an
    # unshare(CLONE_NEWPID) until the new namespace's first member is born.
    for_children: tuple[int, ...] = ()
    leader: Proc | None = None  # a thread's group leader; None for a process
    wake_fd: int = -1  # a process's PIDFD_THREAD pidfd: WAKE must reach this very thread

    @property
    def waker(self) -> int:
        """The pidfd that signals this thread alone (a thread's own pidfd is one)."""
        return self.wake_fd if self.wake_fd >= 0 else self.pidfd

    @property
    def group(self) -> Proc:
        return self.leader or self

    @property
    def level(self) -> int:
        """Index of the active namespace in ``nspid``/``nschain``."""
        return len(self.nschain) - 1


class World:
    def __init__(self, userns: bool, settle_timeout: float) -> None:
        self.userns = userns
        self.settle_timeout = settle_timeout
        self.procs: dict[str, Proc] = {}
        self.by_host: dict[int, Proc] = {}  # processes not yet reaped
        self.root: Proc | None = None
        self.root_pidfd = -1
        self.root_host = 0
        self.world_index = 0  # index of the world's level in /proc's NSpid lines
        self.world_ns = 0
        self.settler = Settler(self)
        # processes read from /proc (or made) since the last ``changes``, in the order
        # they were made; and what ``changes`` last reported of each
        self.dirty: dict[Proc, None] = {}
        self.shown: Snapshot = {}
        self._fork_return = 0  # the pid the last fork returned, for _born
        self.threads_of: dict[str, list[Proc]] = {}  # process name -> its other threads
        self.tables: dict[str, int] = {}  # process name -> its descriptor table
        # pidfd name -> (the tables that hold it, its descriptor number there)
        self.pidfd_names: dict[str, tuple[set[int], int]] = {}
        self._table_ids = 0  # how many descriptor tables were ever made
        # after an exec by a non-leader thread: its name, which names its process now
        # (the leader's Proc -> such names), and the leader names that make no steps
        self.aliases: dict[Proc, list[str]] = {}
        self.retired: set[str] = set()

    # ---- making and ending the world ----------------------------------------------------

    def make(self) -> None:
        kind = socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC
        control, root_control = socket.socketpair(socket.AF_UNIX, kind)
        first, first_child = socket.socketpair(socket.AF_UNIX, kind)
        flags = cf.NEWPID | (cf.NEWUSER if self.userns else 0)
        with uninterrupted():
            try:
                pid, pidfd = syscalls.clone(flags, want_pidfd=True)
            except OSError as exc:
                for sock in (control, root_control, first, first_child):
                    sock.close()
                from pidns.linux import diagnose  # noqa: PLC0415 (only on failure)

                why = diagnose.refusal("clone", exc.errno or 0, user=self.userns)
                if why.fix.startswith("try --"):  # a pidns run option: not for a world
                    why = why._replace(fix="")
                raise WorldError(f"cannot make the world: {why}") from None
            if pid == 0:
                control.close()
                first.close()
                puppet.world_init(root_control, first_child)
            self.root_pidfd = pidfd  # from here on, close() can end the world
            self.root_host = pid
        root_control.close()
        first_child.close()
        world = None if pidfd >= 0 else (pid, (1,), (os.stat(f"/proc/{pid}/ns/pid").st_ino,))
        self.root = self._register("root", pidfd, None, world)
        self.root_host = self.root.host
        try:
            if self.userns:
                self._map_ids(self.root.host)
            wire.send(control, wire.GO)
            text, fds = self._receive(control, "root")
            if text != wire.FIRST_CHILD or len(fds) != (1 if self.pidfds else 0):
                raise WorldError(f"the world's init failed to start A ({text!r})")
            if self.pidfds:
                self._register("A", fds[0], first)
            else:
                self._register("A", -1, first, self._born(first, "A", None, None))
        finally:
            control.close()
        check_wchan(self.root)
        self.settle(Settle(None, ast.OK))

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
            raise WorldError(f"cannot map the caller to root in the world: {exc}") from None

    def close(self) -> None:
        """SIGKILL root from outside: the kernel kills everything below it first."""
        pidfd = self.root_pidfd
        if pidfd < 0 and self.root_host > 0:  # no pidfds (before 5.3): root is our child
            with uninterrupted(), contextlib.suppress(ProcessLookupError):
                os.kill(self.root_host, signals.KILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.root_host, WALL)
            self.root_host = 0
        if pidfd >= 0:
            with uninterrupted(), contextlib.suppress(ProcessLookupError):
                syscalls.pidfd_send_signal(pidfd, signals.KILL)
            select.select([pidfd], [], [], 30.0)  # the whole world is gone by then
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        for p in self.procs.values():
            self.forget(p)
        if self.root is None and pidfd >= 0:
            os.close(pidfd)  # root never got its record, which owns the descriptor
        self.root_pidfd = -1

    def forget(self, p: Proc) -> None:
        for fd in (p.pidfd, p.status_fd, p.stat_fd, p.wake_fd):
            if fd >= 0:
                os.close(fd)
        p.pidfd = p.status_fd = p.stat_fd = p.wake_fd = -1
        if p.channel is not None:
            p.channel.close()
            p.channel = None

    # ---- processes ----------------------------------------------------------------------

    def _born(
        self, channel: socket.socket, name: str, parent: Proc | None, step: Step | None
    ) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """A new puppet's host pid, NSpid and namespace chain without pidfds or NSpid
        (before 4.1/5.3): it says its host pid and getpid(); the fork's return is its pid
        in the parent's namespace; the chain follows the parent's unshare/setns steps.
        Its pid in the world's namespace comes through root's procfs of the world; a level
        known none of these ways is unsupported (NSpid, 4.1)."""
        text, _fds = self._receive(channel, name)
        words = text.split()
        if len(words) != 4 or words[0] != wire.BORN:
            raise BackendError(f"{name} did not say its pids ({text!r})")
        host, inner, world = (int(w) for w in words[1:])
        ns = os.stat(f"/proc/{host}/ns/pid").st_ino
        if parent is None or step is None:  # A, or root's: in the world's namespace
            return host, (inner,), (ns,)
        base = parent.for_children or parent.nschain
        if step.op is Op.CLONE and step.args.flags & cf.NEWPID:
            chain = (*base, ns)
        elif base[-1] == 0:  # the first member of the namespace its unshare made
            chain = (*base[:-1], ns)
            parent.for_children = chain
        else:
            chain = base
        if chain[-1] != ns:
            raise BackendError(f"{name} was born in a namespace its parent's steps do not explain")
        nspid = [0] * len(chain)
        nspid[0] = world  # levels: the world's, the parent's (fork's return), its own
        nspid[parent.level] = self._fork_return
        nspid[-1] = inner
        if all(nspid):
            return host, tuple(nspid), chain
        row = features.feature("nspid")
        raise UnsupportedStep(
            f"line {step.line}: " + features.unsupported(row, "a pid at a middle level")
        )

    @property
    def pidfds(self) -> bool:
        return features.has("pidfd_open")

    def _register(
        self,
        name: str,
        pidfd: int,
        channel: socket.socket | None,
        born: tuple[int, tuple[int, ...], tuple[int, ...]] | None = None,
        thread: bool = False,
    ) -> Proc:
        """Record a new process (or thread: ``_made`` sets its leader)."""
        if born is None and pidfd >= 0:
            host, full = pidfd_numbers(pidfd)
        else:
            assert born is not None
            host, full, _chain = born
        status_fd = os.open(f"/proc/{host}/status", os.O_RDONLY | os.O_CLOEXEC)
        stat_fd = os.open(f"/proc/{host}/stat", os.O_RDONLY | os.O_CLOEXEC)
        if name == "root":
            self.world_index = len(full) - 1
            self.world_ns = os.stat(f"/proc/{host}/ns/pid").st_ino
        nspid = full[self.world_index :] if born is None else full
        p = Proc(
            name, host, pidfd, channel, nspid, (), status_fd, stat_fd, Seen("R", 0, 0, 0, False)
        )
        p.nschain = self._ns_chain(host, len(nspid)) if born is None else born[2]
        if not thread:
            self.tables.setdefault(name, self._new_table())
        if channel is not None and not thread:
            with contextlib.suppress(OSError):  # PIDFD_THREAD: 6.9
                p.wake_fd = syscalls.pidfd_open(host, syscalls.PIDFD_THREAD)
        self.procs[name] = p
        self.by_host[host] = p
        self.dirty[p] = None
        seen = read(p.status_fd, p.stat_fd)
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

    def _made(self, step: Step, maker: Proc, fds: list[int], kept: int | None) -> None:
        """A fork, clone or thread of MAKER's succeeded: register what it made. It starts
        with MAKER's signal mask; a new process with a copy of MAKER's descriptor table
        (CLONE_FILES: the same table), a thread in its group's."""
        assert step.bind is not None and maker.channel is not None
        if len(fds) != (2 if self.pidfds else 1):
            raise BackendError(f"{maker.name}: fork reply without its descriptors")
        thread = step.op is Op.THREAD
        table = self.tables[maker.group.name]
        if not thread:
            shares = step.op is Op.CLONE and bool(step.args.flags & cf.FILES)
            self.tables[step.bind] = table if shares else self._new_table()
            for holders, _fd in self.pidfd_names.values():
                if table in holders:
                    holders.add(self.tables[step.bind])
        if self.pidfds:
            channel = socket.socket(fileno=fds[1])
            child = self._register(step.bind, fds[0], channel, thread=thread)
        else:  # before 5.3 (no threads: they need PIDFD_THREAD, 6.9)
            channel = socket.socket(fileno=fds[0])
            born = self._born(channel, step.bind, maker, step)
            child = self._register(step.bind, -1, channel, born)
        child.user_blocked = maker.user_blocked
        if thread:
            child.leader = maker.group
            self.threads_of.setdefault(maker.group.name, []).append(child)
        if kept is not None:
            assert step.args.keep_pidfd is not None
            self.pidfd_names[step.args.keep_pidfd] = ({table}, kept)

    def _new_table(self) -> int:
        self._table_ids += 1
        return self._table_ids

    def _execed(self, p: Proc) -> None:
        """P's exec succeeded (its new image replied): every other thread of its process
        ended with the old image (fs/exec.c:de_thread; the sweep finds them gone), its
        table is its own and holds no pidfd (unshare_files, then every O_CLOEXEC
        descriptor closed), and a non-leader P took the process's pid: its name names
        the leader's Proc from here on, which takes its channel and what it tracked."""
        group = p.group
        self.tables[group.name] = self._new_table()
        others = self.threads_of.get(group.name, [])
        for q in others:
            if q is not p:
                q.call = None  # a call pending in an ended thread never completes
        if p.leader is None:
            return
        others.remove(p)
        if group.channel is not None:
            group.channel.close()
        group.channel, p.channel = p.channel, None
        group.call, group.discard = None, 0
        group.user_blocked = p.user_blocked
        group.for_children = p.for_children
        self.procs[p.name] = group
        self.aliases.setdefault(group, []).append(p.name)
        self.retired.add(group.name)
        p.reaped = True  # its own tid went with the old leader's release
        self.by_host.pop(p.host, None)
        self.dirty.pop(p, None)
        self.forget(p)

    def seen_by(self, actor: Proc, target: Proc) -> int:
        """TARGET's pid in ACTOR's active namespace; 0 when invisible or reaped."""
        level = actor.level
        if target.reaped or len(target.nschain) <= level:
            return 0
        return target.nspid[level] if target.nschain[level] == actor.nschain[level] else 0

    def name_of(self, actor: Proc, pid: int) -> str:
        """The process that is ``pid`` in ACTOR's namespace (a child ACTOR just reaped)."""
        level, ns = actor.level, actor.nschain[-1]
        found = [
            p
            for p in self.procs.values()
            if p.name != "root"
            and p.leader is None  # a wait reports processes, never threads
            and len(p.nschain) > level
            and p.nschain[level] == ns
            and p.nspid[level] == pid
        ]
        if not found:
            raise BackendError(f"{actor.name} reaped pid {pid}, which is no named process")
        found.sort(key=lambda p: (p.seen.ppid == actor.host, not p.reaped))
        return found[-1].name

    # ---- the runner's observations (pidns.scenario.ops.Observer, CallContext) ----------

    def pid_seen_by(self, actor: str, target: str) -> int:
        return self.seen_by(self.procs[actor], self.procs[target])

    def host_pid(self, name: str) -> int:
        return self.procs[name].host

    def holds(self, actor: str, pidfd: str) -> bool:
        return self.tables[self.procs[actor].group.name] in self.pidfd_names[pidfd][0]

    def pidfd_number(self, actor: str, pidfd: str) -> int:
        return self.pidfd_names[pidfd][1]

    def fdinfo(self, actor: str, pidfd: str) -> tuple[int, ...]:
        """The NSpid of ACTOR's descriptor, through the runner's /proc (one level above the
        world), from the world's level inwards; (-1,) once its task is gone."""
        p = self.procs[actor]
        fd = self.pidfd_names[pidfd][1]
        try:
            with open(f"/proc/{p.host}/fdinfo/{fd}", "rb") as f:
                text = f.read().decode()
        except OSError as exc:
            raise BackendError(f"cannot read the fdinfo of {actor}'s pidfd: {exc}") from None
        for line in text.splitlines():
            if line.startswith("NSpid:"):
                numbers = tuple(int(x) for x in line.split()[1:])
                return numbers[:1] if numbers[0] <= 0 else numbers[self.world_index :]
        raise BackendError("a pidfd's fdinfo has no NSpid line")

    def can_act(self, name: str) -> bool:
        """Read fresh: the actor may have been killed from outside the world."""
        if name in self.retired:
            return False  # its thread ended in another's exec
        actor = self.procs[name]
        seen = None if actor.reaped else read(actor.status_fd, actor.stat_fd)
        if seen is None or seen.dead or seen.pending & SIGKILL_BIT:
            self.settle(Settle(None, ast.SKIPPED))  # let the snapshot catch up with its death
            return False
        actor.seen = seen
        self.dirty[actor] = None
        return True

    # ---- steps --------------------------------------------------------------------------

    def step(self, step: Step) -> Outcome:
        """Send the step's command to its actor's puppet (the runner has checked the actor
        can act, and answered what needs no call); settle."""
        actor = self.procs[step.actor]
        spec = ops.SPECS[step.op]
        why = unsupported(step)
        if why is None and step.op is Op.EXEC and actor.seen.stopped:
            # its exec would run during a later step, whose sweeps would take the thread's
            # tid going for its death
            why = "exec by a stopped actor"
        if why is not None:
            raise UnsupportedStep(f"line {step.line}: {why}")
        if spec.puppet is None:
            raise BackendError(f"line {step.line}: {step.op.value} has no puppet command")
        if actor.channel is None:
            raise BackendError(f"{actor.name} has no channel")
        command = wire.encode_command(spec.puppet.word, spec.puppet.args(step, self))
        wire.send(actor.channel, command)
        # a call that touches no one but its caller (and the child it makes) is settled
        # on those alone: the rest of the world was at rest and stays so
        settle = Settle(actor, None, scope=[actor] if spec.quiet or spec.local else None)
        actor.call = Call(step)
        if actor.seen.stopped:  # it will read the command once continued
            actor.call.move_to(CallState.QUEUED)
            settle.result = ast.BLOCKS
        elif step.op in (Op.UNSHARE, Op.EXEC):
            # Nothing may read /proc until the actor has answered. unshare: on 3.8 such a
            # read takes a reference on its mm, and unshare(CLONE_NEWPID) (which implies
            # CLONE_THREAD there) is EINVAL while mm_users > 1 (kernel/fork.c:
            # check_unshare_flags, 3.8). exec: the exec'ing thread's tid goes during the
            # call (de_thread), which a sweep would take for its death; the new image
            # replies. Neither blocks.
            ready, _, _ = select.select([actor.channel], [], [], self.settle_timeout)
            if ready:
                self.take_message(actor, settle)
        elif spec.quiet:
            for _ in range(4):  # the world was settled and the call touches no one else
                self.settler.await_actor(settle)
                if settle.result is not None:
                    return Outcome(settle.result)
        self.settle(settle)
        assert settle.result is not None
        return Outcome(settle.result, settle.completions)

    # ---- replies ------------------------------------------------------------------------

    def _receive(self, sock: socket.socket, who: str) -> tuple[str, list[int]]:
        ready, _, _ = select.select([sock], [], [], self.settle_timeout)
        if not ready:
            raise BackendError(f"{who} did not answer within {self.settle_timeout} s")
        try:
            return wire.receive(sock)
        except OSError as exc:
            raise BackendError(f"lost {who}: {exc}") from None

    def take_message(self, p: Proc, settle: Settle) -> None:
        """Read one message of P's puppet and apply it to the call it answers."""
        assert p.channel is not None
        try:
            text, fds = wire.receive(p.channel)
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
        try:
            reply = wire.decode_reply(text)
        except wire.ProtocolError as err:
            raise BackendError(f"line {call.step.line}: puppet {p.name}: {err}") from None
        if isinstance(reply, wire.Blocks):
            call.move_to(CallState.BLOCKED)
            if p is settle.actor and settle.result is None:
                settle.result = ast.BLOCKS
            return
        if isinstance(reply, wire.Done):
            reply = reply.reply
        made = len(self.procs)
        result = self._result(p, call.step, reply, fds)
        if settle.scope is not None and len(self.procs) > made:
            settle.scope.append(self.procs[call.step.bind or ""])  # the child it made
        p.call = None
        if call.state is CallState.AWAITED:
            settle.result = result
        else:
            settle.completions.append(Completion(call.step.index, call.step.actor, result))

    def _result(self, p: Proc, step: Step, reply: wire.Reply, fds: list[int]) -> str:
        """The step's canonical result for a puppet's reply."""
        spec = ops.SPECS[step.op]
        if isinstance(reply, wire.Numbers) and spec.binds:  # clone ... pidfd=NAME
            pid, kept = reply.values
            self._made(step, p, fds, kept)
            return ast.pid_value(pid)
        if isinstance(reply, wire.Numbers):
            return ast.list_value(reply.values)
        if isinstance(reply, wire.Number):
            if step.op is Op.PIDFD:
                assert step.bind is not None
                self.pidfd_names[step.bind] = ({self.tables[p.group.name]}, reply.value)
                return ast.OK
            if spec.binds:
                self._fork_return = reply.value
                self._made(step, p, fds, None)
            if step.op is Op.PENDING:
                return ast.signals_value(
                    signals.name(n + 1) for n in range(64) if reply.value >> n & 1
                )
            if step.op is Op.UNSHARE and step.args.flags & cf.NEWPID:
                p.for_children = (*(p.for_children or p.nschain), 0)
            if step.op is Op.SETNS and step.args.target is not None:
                p.for_children = self.procs[step.args.target].nschain
            if step.op is Op.EXEC and reply.value == 0:
                self._execed(p)
            if step.op in (Op.BLOCK, Op.UNBLOCK):
                bit = 1 << (step.args.signal - 1)
                p.user_blocked = (
                    p.user_blocked | bit if step.op is Op.BLOCK else p.user_blocked & ~bit
                )
            return ast.pid_value(reply.value)
        for fd in fds:
            os.close(fd)
        if isinstance(reply, wire.Errno):
            return errnos.name(reply.errno)
        if isinstance(reply, wire.NothingToCollect):
            return ast.NONE
        if isinstance(reply, wire.Exited):
            return ast.exited(self.name_of(p, reply.pid), reply.code)
        if isinstance(reply, wire.Killed):
            return ast.killed(self.name_of(p, reply.pid), signals.name(reply.signal))
        if isinstance(reply, wire.Caught):
            return ast.caught_value([(signals.name(sig), pid) for sig, pid in reply.items])
        if isinstance(reply, wire.Unsupported):
            raise UnsupportedStep(f"line {step.line}: {reply.why}")
        why = reply.why if isinstance(reply, wire.Broken) else repr(reply)
        raise BackendError(f"line {step.line}: puppet {p.name} failed: {why}")

    def settle(self, settle: Settle) -> None:
        self.settler.settle(settle)

    # ---- snapshots ----------------------------------------------------------------------

    def changes(self) -> Snapshot:
        """What changed of the processes read since the last call (a process's entry
        changes only when it is read again, or made, or reaped: pidns.scenario.real_settle
        reads every process whose parent was reaped)."""
        changed: Snapshot = {}
        for p in list(self.dirty):  # a process's state is its threads' together
            for q in (p.group, *self.threads_of.get(p.group.name, ())):
                self.dirty.setdefault(q, None)
        for p in self.dirty:
            if p is self.root or self.procs.get(p.name) is not p:
                continue
            entry = self._entry(p)
            for name in (p.name, *self.aliases.get(p, ())):
                if self.shown.get(name) != entry:
                    changed[name] = self.shown[name] = entry
        self.dirty.clear()
        return changed

    def _entry(self, p: Proc) -> ProcessSnapshot:
        if p.reaped:
            return ProcessSnapshot(ast.State.REAPED.value, "-", ())
        state = self.state(p)
        if state == ast.State.REAPED.value:  # a thread that died with its group
            return ProcessSnapshot(state, "-", ())
        parent = self.by_host.get(p.seen.ppid)
        return ProcessSnapshot(state, parent.name if parent else "?", p.nspid)

    def state(self, p: Proc) -> str:
        """What ``state`` reports for P (and the snapshot shows). A thread is running or,
        once it or its group dies, reaped (which thread of a dying group does the zap is
        the kernel's race; the group's leader shows it). A process whose leader exit(2)ed
        is its other threads' state."""
        if p.leader is not None:
            leader = p.leader
            group_dead = leader.reaped or (leader.seen.dead and not leader.seen.leader_gone)
            alive = not p.reaped and not p.seen.dead and not group_dead
            return ast.State.RUNNING.value if alive else ast.State.REAPED.value
        if not p.reaped and p.seen.leader_gone:
            return self.group_state(p) or ast.State.RUNNING.value
        return state_of(p)

    def group_state(self, leader: Proc) -> str | None:
        """A process whose leader exit(2)ed: running while a thread of it runs, exiting
        while its last thread sleeps in zap_pid_ns_processes; None when the last sweep saw
        no such thread (they are on their way out: sweep again)."""
        threads = [q for q in self.by_host.values() if q.leader is leader]
        if any(not q.seen.dead for q in threads):
            return ast.State.RUNNING.value
        if any(q.seen.exiting and asleep_in(q, "zap_pid_ns_processes", ZAP) for q in threads):
            return ast.State.EXITING.value
        return None


def unsupported(step: Step) -> str | None:
    """Why this kernel cannot run the step faithfully (a feature its call needs is
    missing, or it would write the machine's one pid_max), or None."""
    lacking = features.first_missing(ops.SPECS[step.op].needs(step))
    if lacking is not None and (lacking.name not in _ANSWERED or features.forced(lacking.name)):
        return features.unsupported(lacking, step.op.value)
    if writes_global_pid_max(step, features.has("per_ns_pid_max")):
        return features.unsupported(features.feature("per_ns_pid_max"), "pid_max N")
    return None


# Features whose absence the kernel reports itself when the step's call is made: clone3
# is ENOSYS before 5.3, the pid_for_children link ENOENT before 4.12, an nsfs ioctl
# ENOTTY before 4.9/6.11, as the model of that release gives (docs/profiles.md). Such a
# step is made for real, and compared, unless PIDNS_FEATURES_MISSING only pretends.
_ANSWERED = frozenset(("set_tid", "pid_for_children", "ns_get_parent", "ns_get_pid"))


def state_of(p: Proc) -> str:
    """The state /proc shows for P alone (a process's leader thread)."""
    if p.reaped:
        return ast.State.REAPED.value
    if p.seen.state in ("Z", "X"):
        return ast.State.ZOMBIE.value
    if p.seen.exiting:
        return ast.State.EXITING.value
    return ast.State.RUNNING.value
