"""The model backend: runs a scenario on ``pidns.model``.

The world is the model's root namespace, placed at the same kernel level as the real
backend's world (one below the runner's), so the nesting limit and pid_max rules match.
``root`` is the model's boot init: it reaps every zombie child it has after each step,
as the real world's init does. A ``wait`` that would sleep yields ``blocks``; the
backend retries it after every later step and reports its completion there. A name is
a process (its leader thread), a thread, or a pidfd; a pidfd is held by descriptor
tables: its opener's, copied by every later fork (shared by CLONE_FILES). After an
``exec`` by a thread that is not its process's leader, the thread's name names the
process (its one thread), and the leader's name makes no more steps (``retired``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from pidns.core import errnos, signals
from pidns.core import flags as cf
from pidns.model import (
    PIDFD_THREAD,
    Disposition,
    Kernel,
    KernelError,
    Pidfd,
    Task,
    TaskState,
    Thread,
    Unmodeled,
    WouldBlock,
)
from pidns.model.exit import Sleeper, WaitFor, WaitResult
from pidns.scenario import ast
from pidns.scenario.ast import Completion, Op, Outcome, ProcessSnapshot, Scenario, Snapshot, Step
from pidns.scenario.backend import UnsupportedStep

_DISPOSITIONS = {
    ast.Disposition.CATCH: Disposition.CATCH,
    ast.Disposition.IGNORE: Disposition.IGNORE,
    ast.Disposition.DEFAULT: Disposition.DEFAULT,
}

Named = Task | Thread  # what a process or thread name stands for


def acts(entity: Named) -> bool:
    """The thread can make a call: it has not exited and its process runs."""
    if isinstance(entity, Thread):
        return entity.alive and entity.group.state is TaskState.RUNNING
    return entity.state is TaskState.RUNNING and not entity.leader_exited


@dataclass(slots=True)
class _Pending:
    """A call that did not return: a sleeping wait, or any call by a stopped actor
    (``deferred``), which runs when the actor is continued."""

    step_index: int
    actor: Named
    actor_name: str
    # a sleeping wait: how to make its call again (a caught signal restarts it), what it
    # waits for (as resolved when it began: a child's wake scans again for that) and its
    # place on its process's queue
    restart: Callable[[], WaitFor] | None
    deferred: Step | None = None
    wakeups: int = 0  # the process's signal wakeups when it went to sleep
    sleeper: Sleeper | None = None


class ModelBackend:
    """A world on the model kernel. ``world_level`` is the world's kernel level;
    ``profile`` (a release) overrides the scenario's own ``%profile``."""

    name = "model"

    def __init__(
        self,
        world_level: int = 1,
        mapped_uids: frozenset[int] | None = None,
        profile: str | None = None,
    ) -> None:
        self.world_level = world_level
        self.mapped_uids = mapped_uids
        self.profile = profile
        self.kernel = Kernel(root_level=world_level)
        self.tasks: dict[str, Named] = {}
        self.names: dict[Task, str] = {}
        self.pending: list[_Pending] = []
        self.shown: Snapshot = {}  # what ``changes`` last reported of each process
        self.fresh: list[str] = []  # named since the last ``changes``
        self.thread_names: list[str] = []  # threads: the journal has only processes
        # pidfd name -> (the open pidfd, the descriptor tables that hold it)
        self.pidfds: dict[str, tuple[Pidfd, set[int]]] = {}
        self.tables: dict[Task, int] = {}  # each process's descriptor table
        self._table_ids = itertools.count()
        # names of leader threads an exec by another thread of theirs ended: each still
        # names its process as a target, and makes no more steps
        self.retired: set[str] = set()

    # ---- Backend ------------------------------------------------------------------------

    def start(self, scenario: Scenario) -> None:
        self.kernel = Kernel(
            profile=self.profile or scenario.profile,
            root_level=self.world_level,
            mapped_uids=self.mapped_uids,
        )
        self.kernel.journal = []
        self.tasks = {}
        self.names = {}
        self.pending = []
        self.shown = {}
        self.fresh = []
        self.thread_names = []
        self.pidfds = {}
        self.tables = {}
        self.retired = set()
        self._name("root", self.kernel.init)
        self._name("A", self.kernel.fork(self.kernel.init))

    def step(self, step: Step) -> Outcome:
        actor = self.tasks[step.actor]
        if actor.group.stopped:  # the call runs once the actor is continued
            self.pending.append(_Pending(step.index, actor, step.actor, None, deferred=step))
            return Outcome(ast.BLOCKS, self._settle())
        return Outcome(self._call(actor, step), self._settle())

    def can_act(self, name: str) -> bool:
        return acts(self.tasks[name]) and name not in self.retired

    def pid_seen_by(self, actor: str, target: str) -> int:
        return self.kernel.pid_seen_by(self.tasks[actor], self.tasks[target])

    def state_of(self, name: str) -> str:
        return str(self.tasks[name].state)

    def nspid_of(self, name: str) -> tuple[int, ...]:
        task = self.tasks[name]
        return () if task.state is TaskState.REAPED else self.kernel.nspid(task)

    def holds(self, actor: str, pidfd: str) -> bool:
        return self._table(self.tasks[actor]) in self.pidfds[pidfd][1]

    def fdinfo(self, actor: str, pidfd: str) -> tuple[int, ...]:
        """Read through the procfs of the world's parent level, as the real runner reads it:
        the model's kernel has no level above its root, so the world's numbers are the
        whole NSpid there, and a task not visible in the world cannot be one of its own."""
        return self.kernel.pidfd_nspid(self.pidfds[pidfd][0])

    def _table(self, entity: Named) -> int:
        group = entity.group
        if group not in self.tables:
            self.tables[group] = next(self._table_ids)
        return self.tables[group]

    def _call(self, actor: Named, step: Step) -> str:
        try:
            return self._perform(actor, step)
        except KernelError as err:
            return errnos.name(err.errno or 0)
        except Unmodeled as err:
            raise UnsupportedStep(f"line {step.line}: {err}") from None

    def changes(self) -> Snapshot:
        """The processes named since the last call, then those the kernel's journal says
        changed state or parent (a task's numbers never change), and every thread (the
        journal has processes only), as they differ from what was last reported."""
        journal = self.kernel.journal
        assert journal is not None, "start() first"
        names = dict.fromkeys(self.fresh)
        names.update(dict.fromkeys(self.names[t] for t in journal if t in self.names))
        names.update(dict.fromkeys(self.thread_names))
        journal.clear()
        self.fresh = []
        names.pop("root", None)
        changed: Snapshot = {}
        for name in names:
            entry = self._entry(self.tasks[name])
            if self.shown.get(name) != entry:
                changed[name] = self.shown[name] = entry
        return changed

    def _entry(self, task: Named) -> ProcessSnapshot:
        parent = task.group.parent
        reaped = task.state is TaskState.REAPED
        return ProcessSnapshot(
            state=str(task.state),
            parent="-" if reaped or parent is None else self.names.get(parent, "?"),
            nspid=() if reaped else self.kernel.nspid(task),
        )

    def close(self) -> None:
        self.pending = []

    # ---- steps --------------------------------------------------------------------------

    def _name(self, name: str, entity: Named) -> None:
        self.tasks[name] = entity
        self.fresh.append(name)
        if isinstance(entity, Task):
            self.names[entity] = name
        else:
            self.thread_names.append(name)

    def _target(self, step: Step) -> Named:
        assert step.args.target is not None
        return self.tasks[step.args.target]

    def _perform(self, actor: Named, step: Step) -> str:
        k = self.kernel
        args = step.args
        op = step.op
        if op is Op.CLONE and args.flags & cf.THREAD:
            k.clone_thread(actor, args.flags)  # a thread: the language's op is ``thread``
            raise UnsupportedStep(f"line {step.line}: clone makes a thread here: use thread")
        if op in (Op.FORK, Op.CLONE, Op.THREAD):
            return self._make(actor, step)
        if op is Op.PIDFD:
            flags = PIDFD_THREAD if args.thread else 0
            fd = k.pidfd_open(actor, self._seen(actor, args.target), flags)
            assert step.bind is not None
            self.pidfds[step.bind] = (fd, {self._table(actor)})
            return ast.OK
        if args.pidfd is not None:
            return self._on_pidfd(actor, step, self.pidfds[args.pidfd][0])
        if op is Op.GETTID:
            return ast.pid_value(k.gettid(actor))
        if op is Op.EXIT_THREAD:
            k.exit_thread(actor, args.number or 0)
            return ast.OK
        if op is Op.EXEC:
            self._exec(actor, step)
            return ast.OK
        if op is Op.UNSHARE:
            k.unshare(actor, args.flags)
        elif op is Op.SETNS:
            k.setns(actor, self._target(step), args.pid_for_children)
        elif op is Op.GETPID:
            return ast.pid_value(k.getpid(actor))
        elif op is Op.GETPPID:
            return ast.pid_value(k.getppid(actor))
        elif op is Op.GETPGID:
            return ast.pid_value(k.getpgid(actor, self._seen(actor, args.target)))
        elif op is Op.GETSID:
            return ast.pid_value(k.getsid(actor, self._seen(actor, args.target)))
        elif op is Op.SETPGID:
            k.setpgid(actor, self._seen(actor, args.target), self._seen(actor, args.other))
        elif op is Op.BLOCK:
            k.sigprocmask(actor, block=[args.signal])
        elif op is Op.UNBLOCK:
            k.sigprocmask(actor, unblock=[args.signal])
        elif op is Op.PENDING:
            return ast.signals_value(signals.name(s) for s in k.pending(actor))
        elif op is Op.PID_MAX:
            if args.number is None:
                return ast.pid_value(k.read_pid_max(actor))
            k.write_pid_max(actor, args.number)
        elif op in (Op.NSPARENT, Op.NS_PID_IN, Op.NS_PID_FROM):
            ns = k.ns_of(actor, self._target(step))
            if op is Op.NSPARENT:
                k.ns_parent(actor, ns)
            elif op is Op.NS_PID_IN:
                return ast.pid_value(k.ns_pid_in(actor, ns, self._seen(actor, args.other)))
            else:
                return ast.pid_value(k.ns_pid_from(actor, ns, args.number or 0))
        elif op is Op.SETSID:
            return ast.pid_value(k.setsid(actor))
        elif op is Op.EXIT:
            k.exit(actor, args.number or 0)
        elif op is Op.WAIT:
            return self._wait(actor, step)
        elif op is Op.KILL:
            if args.target is not None:
                k.kill_task(actor, self._target(step), args.signal)
            else:
                k.kill(actor, args.number or 0, args.signal)
        elif op is Op.SIGNAL:
            assert args.disposition is not None
            k.sigaction(actor, args.signal, _DISPOSITIONS[args.disposition])
        elif op is Op.CAUGHT:
            caught = k.caught_candidates(actor)
            return ast.caught_value(
                [(signals.name(s), "|".join(map(str, pids))) for s, pids in caught]
            )
        elif op is Op.SUBREAPER:
            k.set_subreaper(actor, args.on)
        elif op is Op.SETUID:
            k.setuid(actor, args.number or 0)
        else:  # pidof, nspid, state: the runner answers them (ops.SPECS: no_call)
            raise AssertionError(f"{op.value} reached the backend")
        return ast.OK

    def _make(self, actor: Named, step: Step) -> str:
        """fork, clone (with CLONE_PIDFD when it binds a pidfd) and thread; a new process
        gets a copy of its creator's descriptor table (CLONE_FILES: the same table)."""
        k = self.kernel
        args = step.args
        child: Named
        fd: Pidfd | None = None
        if step.op is Op.THREAD:
            child = k.clone_thread(actor)
        elif step.op is Op.CLONE and args.keep_pidfd is not None:
            if args.exit_signal is not None:
                raise UnsupportedStep(f"line {step.line}: exit_signal= with pidfd= (unmodeled)")
            made, fd = k.clone_pidfd(actor, args.flags | cf.PIDFD, args.set_tid)
            assert isinstance(made, Task)
            child = made
        elif step.op is Op.CLONE:
            child = k.clone(actor, args.flags, args.set_tid, args.exit_signal)
        else:
            child = k.fork(actor)
        assert step.bind is not None
        self._name(step.bind, child)
        if isinstance(child, Task):
            table = self._table(actor)
            if args.flags & cf.FILES:
                self.tables[child] = table
            else:
                copy = self._table(child)
                for _fd, holders in self.pidfds.values():
                    if table in holders:
                        holders.add(copy)
        if fd is not None:
            assert args.keep_pidfd is not None
            self.pidfds[args.keep_pidfd] = (fd, {self._table(actor)})
        return ast.pid_value(k.pid_seen_by(actor, child))

    def _exec(self, actor: Named, step: Step) -> None:
        """execve(2) by the actor's thread (fs/exec.c:de_thread): a thread that is not
        the leader takes the process's pid, so its name now names the process, and the
        leader's thread is gone (its name a target only). The descriptor table is made
        the process's own (unshare_files) and loses every pidfd (all O_CLOEXEC)."""
        group = actor.group
        leader = self.names[group]
        self.kernel.execve(actor)
        if isinstance(actor, Thread):
            self.tasks[step.actor] = group
            self.retired.add(leader)
        self.tables[group] = next(self._table_ids)

    def _on_pidfd(self, actor: Named, step: Step, fd: Pidfd) -> str:
        k = self.kernel
        op = step.op
        if op is Op.PIDFD_SEND_SIGNAL:
            k.pidfd_send_signal(actor, fd, step.args.signal)
        elif op is Op.PIDFD_SETNS:
            k.setns_pidfd(actor, fd)
        elif op is Op.PIDFD_INFO:
            return ast.list_value(k.pidfd_info(actor, fd))
        elif op is Op.WAITID:
            return self._sleep_or(actor, step, lambda: k.waitid_pidfd_for(actor, fd))
        else:  # fdinfo: the runner answers it (ops.SPECS: no_call)
            raise AssertionError(f"{op.value} reached the backend")
        return ast.OK

    def _seen(self, actor: Named, name: str | None) -> int:
        """The named process's pid as the actor sees it (0: none given, or not visible)."""
        return 0 if name is None else self.kernel.pid_seen_by(actor, self.tasks[name])

    def _wait_pid(self, actor: Named, step: Step) -> int:
        """waitpid's pid argument: -1, 0 (pgrp), -PGID (pgrp TARGET) or TARGET's pid."""
        args = step.args
        seen = self._seen(actor, args.target)
        if args.pgrp:
            return -seen if args.target else 0
        return seen if args.target else -1

    def _wait(self, actor: Named, step: Step) -> str:
        a = step.args
        pid = self._wait_pid(actor, step)
        k = self.kernel
        return self._sleep_or(actor, step, lambda: k.wait_for(actor, pid, a.wall, a.nowait))

    def _sleep_or(self, actor: Named, step: Step, resolve: Callable[[], WaitFor]) -> str:
        """A wait's result now, ``none`` (nohang), or ``blocks``: it sleeps on its
        process's queue, to scan again when a child it waits for wakes it, and to be
        made anew (``resolve`` again) when a caught signal does."""
        try:
            how = resolve()
            result = self.kernel.wait_again(actor, how)
        except KernelError as err:
            return errnos.name(err.errno or 0)
        if result is not None:
            return self._describe(result)
        if step.args.nohang or step.args.nowait:
            return ast.NONE
        pending = _Pending(step.index, actor, step.actor, resolve)
        pending.wakeups = actor.group.wakeups
        pending.sleeper = self.kernel.sleep(actor, how)
        self.pending.append(pending)
        return ast.BLOCKS

    def _describe(self, result: WaitResult) -> str:
        name = self.names.get(result.child, "?")
        if result.exited:
            return ast.exited(name, result.value)
        return ast.killed(name, signals.name(result.value))

    def _woken(self, pending: _Pending) -> str | None:
        """A sleeping wait's result once something woke it, or None while it sleeps on."""
        k = self.kernel
        actor, sleeper = pending.actor, pending.sleeper
        assert pending.restart is not None and sleeper is not None
        by_signal = actor.group.wakeups != pending.wakeups
        if not (by_signal or sleeper.woken):
            return None  # nothing woke it: it sleeps on, whatever changed
        pending.wakeups = actor.group.wakeups
        sleeper.woken = False
        try:
            if by_signal:  # the call returns -ERESTARTSYS and is made again
                sleeper.how = pending.restart()
            result = k.wait_again(actor, sleeper.how)
        except KernelError as err:
            k.wake(actor, sleeper)
            return errnos.name(err.errno or 0)
        if result is None:
            return None
        k.wake(actor, sleeper)
        return self._describe(result)

    def _reap_at_root(self) -> None:
        k = self.kernel
        init = k.init
        while init.zombies:
            try:
                k.wait(init, None, nohang=True, how=k.REAP_ALL)
            except (KernelError, WouldBlock):  # pragma: no cover - zombies mean a result
                break

    def _settle(self) -> list[Completion]:
        """After a step: root reaps its zombies; blocked waits that can finish do (and
        root reaps again what they left it: an init whose last member they reaped); then
        every process takes its caught signals (as the real backend's puppets do)."""
        k = self.kernel
        self._reap_at_root()
        done: list[Completion] = []
        still: list[_Pending] = []
        ran_deferred = False
        current, self.pending = self.pending, []  # a deferred wait may add itself anew
        for pending in current:
            if not acts(pending.actor) or pending.actor_name in self.retired:
                if pending.sleeper is not None:
                    k.wake(pending.actor, pending.sleeper)
                continue  # a call pending in a dead thread never completes
            if pending.actor.group.stopped:
                still.append(pending)
                continue
            if pending.deferred is not None:  # continued: the call runs now
                ran_deferred = True
                outcome = self._call(pending.actor, pending.deferred)
                if pending.deferred.op in (Op.EXIT, Op.EXIT_THREAD):
                    continue  # exit never returns: nothing completes
                if outcome != ast.BLOCKS:  # a wait that now sleeps has re-queued itself
                    done.append(Completion(pending.step_index, pending.actor_name, outcome))
                continue
            result = self._woken(pending)
            if result is None:
                still.append(pending)
            else:
                done.append(Completion(pending.step_index, pending.actor_name, result))
        self.pending = still + self.pending
        if done:
            self._reap_at_root()
        if ran_deferred:
            done += self._settle()  # what the deferred calls did settles in turn
        k.run_handlers()
        return done
