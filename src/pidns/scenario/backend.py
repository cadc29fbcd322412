"""The one interface both backends implement, and the runner that drives it.

The runner owns the language rules that need no kernel call: a process whose fork or
clone failed never exists (its steps are ``skipped``, naming it as a target yields
``ESRCH``), a busy actor is a scenario error, a dead actor's steps are ``skipped``, and
the op registry's *answered without a call* rules (pidns.scenario.ops: lookups, and a
kill, wait or setns naming a process the actor cannot see or that was reaped) are
applied here, through the backend's observations, before any backend sees the step. A
backend owns everything else: it performs the call, settles, reports completions of
calls that blocked earlier, and snapshots every named process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pidns.core import errnos
from pidns.scenario import ops
from pidns.scenario.ast import BLOCKS, SKIPPED, Completion, Op, Outcome, Scenario, Snapshot, Step


class ScenarioError(Exception):
    """A scenario that cannot run as written; reported as ``FILE:LINE:COLUMN: message``."""

    def __init__(self, path: str, line: int, column: int, message: str, source: str = "") -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = path
        self.line = line
        self.column = column
        self.message = message
        self.source = source

    def render(self) -> str:
        text = str(self)
        if self.source:
            text += f"\n    {self.source}\n    {' ' * (self.column - 1)}^"
        return text


class BackendError(Exception):
    """A backend failed to run a step (not a divergence): the world could not be made, did
    not settle in time, or a puppet broke. The backend is still closed by ``run``."""


class WorldError(BackendError):
    """The world itself could not be made (no namespaces here, no /proc): a setup failure
    of the machine, never a divergence; ``run`` lets it through instead of a trace."""


class UnsupportedStep(BackendError):
    """A valid step that this backend cannot perform faithfully (the real backend: clone
    flags that would share a Python puppet's memory or threads, or profile 3.8)."""


class Backend(Protocol):
    """A world in which named processes perform steps."""

    name: str

    def start(self, scenario: Scenario) -> None:
        """Make the world: ``root`` (its init) and ``A`` (root's first child)."""

    def step(self, step: Step) -> Outcome:
        """Perform the call of one step by a live, idle actor whose names all exist, and
        that no rule answers without a call; settle."""

    def changes(self) -> Snapshot:
        """The named processes whose snapshot (state, parent name, NSpid) changed since the
        last call, every one on the first call after ``start``; new ones in the order they
        were made. The cost is in what changed, not in how many processes exist."""

    def can_act(self, name: str) -> bool:
        """NAME is alive and can make a call (not dead, dying or killed)."""

    # Observations (pidns.scenario.ops.Observer), for the no-call rules:

    def pid_seen_by(self, actor: str, target: str) -> int:
        """TARGET's pid in ACTOR's active pid namespace; 0 if invisible or reaped."""

    def state_of(self, name: str) -> str:
        """A ``State`` value (root: ``running``)."""

    def nspid_of(self, name: str) -> tuple[int, ...]:
        """NAME's pid at each level from the world's inwards (``()`` once reaped)."""

    def holds(self, actor: str, pidfd: str) -> bool:
        """ACTOR's process has the pidfd in its descriptor table."""

    def fdinfo(self, actor: str, pidfd: str) -> tuple[int, ...]:
        """The pidfd's fdinfo NSpid from the world's level inwards; ``(-1,)`` once gone."""

    def close(self) -> None:
        """End the world; afterwards no process of it is left (on every path)."""


@dataclass(slots=True)
class Record:
    """One step as a backend ran it. The snapshot after it is kept as what changed since
    the previous record's, so that a trace of N steps over N processes costs O(N), not
    O(N^2); ``snapshot`` rebuilds it whole (``running_snapshots`` for every step)."""

    step: Step
    result: str
    completions: list[Completion] = field(default_factory=list)
    changes: Snapshot = field(default_factory=dict)
    previous: Record | None = None

    @property
    def snapshot(self) -> Snapshot:
        """Every named process after this step."""
        chain: list[Snapshot] = []
        record: Record | None = self
        while record is not None:
            chain.append(record.changes)
            record = record.previous
        whole: Snapshot = {}
        for changes in reversed(chain):
            whole.update(changes)
        return whole


def running_snapshots(records: list[Record]) -> Iterator[Snapshot]:
    """The snapshot after each record, in order: one dict updated in place by each
    record's changes (copy what you keep)."""
    whole: Snapshot = {}
    for record in records:
        whole.update(record.changes)
        yield whole


@dataclass(slots=True)
class Trace:
    backend: str
    scenario: Scenario
    records: list[Record] = field(default_factory=list)
    error: str | None = None  # the backend failed (not a divergence): why
    unsupported: bool = False  # the error is an UnsupportedStep: the kernel lacks a feature


BUSY = "busy"  # the result of a step whose actor was still blocked (non-strict runs only)


class Runner:
    """Runs the steps of one scenario on one backend, one at a time (``run`` runs them
    all; the random generator grows a scenario step by step)."""

    def __init__(self, scenario: Scenario, backend: Backend, strict: bool = True) -> None:
        self.scenario = scenario
        self.backend = backend
        self.strict = strict
        self.missing: set[str] = set()  # names whose fork/clone/thread/pidfd failed
        self.busy: dict[str, int] = {}  # actor -> index of its pending step
        self.unborn: dict[int, list[str]] = {}  # index of a blocked fork/clone -> its names
        self.states: dict[str, str] = {}  # every named process's state after the last step
        self.last: Record | None = None

    def start(self) -> None:
        self.backend.start(self.scenario)

    def outcome(self, step: Step) -> Outcome:
        """What the step yields: the language's own answer where it has one, else the
        backend's call."""
        if step.actor in self.busy and self.strict:
            raise ScenarioError(
                self.scenario.path,
                step.line,
                1,
                f"{step.actor} is still blocked in the call at step {self.busy[step.actor] + 1}",
                step.text,
            )
        if step.actor in self.busy:
            return Outcome(BUSY)
        if step.actor in self.missing:
            return Outcome(SKIPPED)
        if step.args.pidfd in self.missing:
            return Outcome(errnos.name(9))  # EBADF: the pidfd was never opened
        if {step.args.target, step.args.other} & self.missing:
            return Outcome(errnos.name(3))  # ESRCH: no such process
        if not self.backend.can_act(step.actor):
            return Outcome(SKIPPED)
        answer = ops.answer_without_call(step, self.backend)
        if answer is not None:
            return Outcome(answer)
        return self.backend.step(step)

    def step(self, step: Step) -> Record:
        outcome = self.outcome(step)
        made = [name for name in (step.bind, step.args.keep_pidfd) if name]
        if made and (errnos.is_name(outcome.result) or outcome.result in (SKIPPED, BUSY)):
            self.missing.update(made)
        if outcome.result == BLOCKS:
            self.busy[step.actor] = step.index
            if made:  # a fork by a stopped actor: no child until it completes
                self.missing.update(made)
                self.unborn[step.index] = made
        for done in outcome.completions:
            self.busy.pop(done.actor, None)
            born = self.unborn.pop(done.step_index, [])
            if not errnos.is_name(done.result):
                self.missing.difference_update(born)
        changes = self.backend.changes()
        for name, process in changes.items():
            self.states[name] = process.state
        for actor in list(self.busy):  # a call pending in a dead process never completes
            if self.states.get(actor) in ("exiting", "zombie", "reaped"):
                del self.busy[actor]
            elif step.op is Op.EXEC and not self.backend.can_act(actor):
                del self.busy[actor]  # nor one of a thread an exec ended (fs/exec.c:de_thread)
        self.last = Record(step, outcome.result, outcome.completions, changes, self.last)
        return self.last


def run(scenario: Scenario, backend: Backend, strict: bool = True) -> Trace:
    """Run every step of ``scenario`` on ``backend``; always closes the backend.

    ``strict``: a step by a blocked actor is a ScenarioError (the language's rule, for
    scenarios as written). Otherwise it is recorded as ``busy`` and the run goes on: a
    scenario checked on a second backend after the first accepted it can only be busy
    there because the backends disagree, and that disagreement is what ``check`` reports.
    A BackendError ends the trace early with ``trace.error`` set.
    """
    trace = Trace(backend.name, scenario)
    runner = Runner(scenario, backend, strict)
    try:
        runner.start()
        for step in scenario.steps:
            trace.records.append(runner.step(step))
    except WorldError:
        raise
    except BackendError as err:
        trace.error = str(err) or type(err).__name__
        trace.unsupported = isinstance(err, UnsupportedStep)
    finally:
        backend.close()
    return trace


def writes_global_pid_max(step: Step, per_ns_pid_max: bool) -> bool:
    """Whether ``step`` writes pid_max on a kernel that has one global value (before 6.14):
    the real backend will not change the machine's, so it reports the step unsupported,
    and random scenarios for such a release never make it."""
    return step.op is Op.PID_MAX and step.args.number is not None and not per_ns_pid_max
