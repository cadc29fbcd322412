"""The model backend: runs a scenario on ``pidns.model``.

The world is the model's root namespace, placed at the same kernel level as the real
backend's world (one below the runner's), so the nesting limit and pid_max rules match.
``root`` is the model's boot init: it reaps every zombie child it has after each step,
as the real world's init does. A ``wait`` that would sleep yields ``blocks``; the
backend retries it after every later step and reports its completion there.
"""

from __future__ import annotations

from dataclasses import dataclass

from pidns.core import errnos, signals
from pidns.core import flags as cf
from pidns.model import Disposition, Kernel, KernelError, Task, TaskState, Unmodeled, WouldBlock
from pidns.model.exit import WaitResult
from pidns.scenario import ast
from pidns.scenario.ast import Completion, Op, Outcome, ProcessSnapshot, Scenario, Snapshot, Step
from pidns.scenario.backend import UnsupportedStep

_DISPOSITIONS = {
    ast.Disposition.CATCH: Disposition.CATCH,
    ast.Disposition.IGNORE: Disposition.IGNORE,
    ast.Disposition.DEFAULT: Disposition.DEFAULT,
}


@dataclass(slots=True)
class _Pending:
    """A call that did not return: a sleeping wait, or any call by a stopped actor
    (``deferred``), which runs when the actor is continued."""

    step_index: int
    actor: Task
    actor_name: str
    waiting: Step | None  # the wait that sleeps (tried again once the actor is woken)
    deferred: Step | None = None
    wakeups: int = 0  # the actor's wakeups when it went to sleep


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
        self.tasks: dict[str, Task] = {}
        self.names: dict[Task, str] = {}
        self.pending: list[_Pending] = []
        self.shown: Snapshot = {}  # what ``changes`` last reported of each process
        self.fresh: list[str] = []  # named since the last ``changes``

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
        self._name("root", self.kernel.init)
        self._name("A", self.kernel.fork(self.kernel.init))

    def step(self, step: Step) -> Outcome:
        actor = self.tasks[step.actor]
        if actor.stopped:  # the call runs once the actor is continued
            self.pending.append(_Pending(step.index, actor, step.actor, None, deferred=step))
            return Outcome(ast.BLOCKS, self._settle())
        return Outcome(self._call(actor, step), self._settle())

    def can_act(self, name: str) -> bool:
        return self.tasks[name].state is TaskState.RUNNING

    def pid_seen_by(self, actor: str, target: str) -> int:
        return self.kernel.pid_seen_by(self.tasks[actor], self.tasks[target])

    def state_of(self, name: str) -> str:
        return str(self.tasks[name].state)

    def nspid_of(self, name: str) -> tuple[int, ...]:
        task = self.tasks[name]
        return () if task.state is TaskState.REAPED else self.kernel.nspid(task)

    def _call(self, actor: Task, step: Step) -> str:
        try:
            return self._perform(actor, step)
        except KernelError as err:
            return errnos.name(err.errno or 0)
        except Unmodeled as err:
            raise UnsupportedStep(f"line {step.line}: {err}") from None

    def changes(self) -> Snapshot:
        """The processes named since the last call, then those the kernel's journal says
        changed state or parent (a task's numbers never change), as they differ from what
        was last reported."""
        journal = self.kernel.journal
        assert journal is not None, "start() first"
        names = dict.fromkeys(self.fresh)
        names.update(dict.fromkeys(self.names[t] for t in journal if t in self.names))
        journal.clear()
        self.fresh = []
        names.pop("root", None)
        changed: Snapshot = {}
        for name in names:
            entry = self._entry(self.tasks[name])
            if self.shown.get(name) != entry:
                changed[name] = self.shown[name] = entry
        return changed

    def _entry(self, task: Task) -> ProcessSnapshot:
        parent = task.parent
        reaped = task.state is TaskState.REAPED
        return ProcessSnapshot(
            state=str(task.state),
            parent="-" if reaped or parent is None else self.names.get(parent, "?"),
            nspid=() if reaped else self.kernel.nspid(task),
        )

    def close(self) -> None:
        self.pending = []

    # ---- steps --------------------------------------------------------------------------

    def _name(self, name: str, task: Task) -> None:
        self.tasks[name] = task
        self.names[task] = name
        self.fresh.append(name)

    def _target(self, step: Step) -> Task:
        assert step.args.target is not None
        return self.tasks[step.args.target]

    def _perform(self, actor: Task, step: Step) -> str:
        k = self.kernel
        args = step.args
        op = step.op
        if op is Op.CLONE and args.flags & cf.THREAD:
            k.clone_thread(actor, args.flags)  # a thread: the language names processes
            raise UnsupportedStep(f"line {step.line}: clone makes a thread here")
        if op in (Op.FORK, Op.CLONE):
            if op is Op.CLONE:
                child = k.clone(actor, args.flags, args.set_tid, args.exit_signal)
            else:
                child = k.fork(actor)
            assert step.bind is not None
            self._name(step.bind, child)
            return ast.pid_value(k.pid_seen_by(actor, child))
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

    def _seen(self, actor: Task, name: str | None) -> int:
        """The named process's pid as the actor sees it (0: none given, or not visible)."""
        return 0 if name is None else self.kernel.pid_seen_by(actor, self.tasks[name])

    def _wait_pid(self, actor: Task, step: Step) -> int:
        """waitpid's pid argument: -1, 0 (pgrp), -PGID (pgrp TARGET) or TARGET's pid."""
        args = step.args
        seen = self._seen(actor, args.target)
        if args.pgrp:
            return -seen if args.target else 0
        return seen if args.target else -1

    def _attempt(self, actor: Task, step: Step) -> WaitResult | None:
        a = step.args
        pid = self._wait_pid(actor, step)
        return self.kernel.wait_pid(actor, pid, nohang=True, all=a.wall, nowait=a.nowait)

    def _wait(self, actor: Task, step: Step) -> str:
        try:
            result = self._attempt(actor, step)
        except KernelError as err:
            return errnos.name(err.errno or 0)
        if result is not None:
            return self._describe(result)
        if step.args.nohang or step.args.nowait:
            return ast.NONE
        sleeper = _Pending(step.index, actor, step.actor, step)
        sleeper.wakeups = actor.wakeups
        self.pending.append(sleeper)
        return ast.BLOCKS

    def _describe(self, result: WaitResult) -> str:
        name = self.names.get(result.child, "?")
        if result.exited:
            return ast.exited(name, result.value)
        return ast.killed(name, signals.name(result.value))

    def _settle(self) -> list[Completion]:
        """After a step: root reaps its zombies; blocked waits that can finish do; then
        every process takes its caught signals (as the real backend's puppets do)."""
        k = self.kernel
        init = k.init
        while init.zombies:
            try:
                k.wait(init, None, nohang=True, how=k.REAP_ALL)
            except (KernelError, WouldBlock):  # pragma: no cover - zombies mean a result
                break
        done: list[Completion] = []
        still: list[_Pending] = []
        ran_deferred = False
        current, self.pending = self.pending, []  # a deferred wait may add itself anew
        for pending in current:
            if pending.actor.state is not TaskState.RUNNING:
                continue  # a call pending in a dead process never completes
            if pending.actor.stopped:
                still.append(pending)
                continue
            if pending.deferred is not None:  # continued: the call runs now
                ran_deferred = True
                outcome = self._call(pending.actor, pending.deferred)
                if pending.deferred.op is Op.EXIT:
                    continue  # exit never returns: nothing completes
                if outcome != ast.BLOCKS:  # a wait that now sleeps has re-queued itself
                    done.append(Completion(pending.step_index, pending.actor_name, outcome))
                continue
            assert pending.waiting is not None
            if pending.actor.wakeups == pending.wakeups:
                still.append(pending)  # nothing woke it: it sleeps on, whatever changed
                continue
            pending.wakeups = pending.actor.wakeups
            try:
                result = self._attempt(pending.actor, pending.waiting)
            except KernelError as err:
                done.append(
                    Completion(pending.step_index, pending.actor_name, errnos.name(err.errno or 0))
                )
                continue
            if result is None:
                still.append(pending)
            else:
                done.append(
                    Completion(pending.step_index, pending.actor_name, self._describe(result))
                )
        self.pending = still + self.pending
        if ran_deferred:
            done += self._settle()  # what the deferred calls did settles in turn
        k.run_handlers()
        return done
