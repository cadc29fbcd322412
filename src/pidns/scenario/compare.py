"""Comparing traces: expectations met or not, and where two backends diverge."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pidns.scenario.ast import ProcessSnapshot, Snapshot, matches
from pidns.scenario.backend import Record, Trace


@dataclass(frozen=True, slots=True)
class Failure:
    """A step whose result differs from its ``=> EXPECTED``."""

    backend: str
    record: Record

    def describe(self) -> str:
        step = self.record.step
        return (
            f"line {step.line}: {step.text}: "
            f"{self.backend} gave {self.record.result}, expected {step.expected}"
        )


@dataclass(slots=True)
class StepDiff:
    """One step where the two traces disagree."""

    index: int
    left: Record
    right: Record
    result_differs: bool
    completions_differ: bool
    processes: dict[str, tuple[ProcessSnapshot | None, ProcessSnapshot | None]] = field(
        default_factory=dict
    )


def expectation_failures(trace: Trace) -> list[Failure]:
    return [
        Failure(trace.backend, record)
        for record in trace.records
        if record.step.expected is not None and not matches(record.result, record.step.expected)
    ]


def _completions_match(a: Record, b: Record) -> bool:
    left = sorted((c.actor, c.result) for c in a.completions)
    right = sorted((c.actor, c.result) for c in b.completions)
    return len(left) == len(right) and all(
        x[0] == y[0] and (matches(x[1], y[1]) or matches(y[1], x[1]))
        for x, y in zip(left, right, strict=True)
    )


ProcessDiff = dict[str, tuple[ProcessSnapshot | None, ProcessSnapshot | None]]


def snapshot_diffs(left: list[Record], right: list[Record]) -> Iterator[ProcessDiff]:
    """For each step both lists hold, the processes whose snapshots differ there, by name.

    Both snapshots are followed through each record's changes, and only the names that
    changed on either side are compared again: the cost is in the changes (and in the
    differences reported), not in steps times processes."""
    whole: tuple[Snapshot, Snapshot] = ({}, {})
    differ: set[str] = set()
    for a, b in zip(left, right, strict=False):
        whole[0].update(a.changes)
        whole[1].update(b.changes)
        for name in a.changes.keys() | b.changes.keys():
            if whole[0].get(name) != whole[1].get(name):
                differ.add(name)
            else:
                differ.discard(name)
        yield {name: (whole[0].get(name), whole[1].get(name)) for name in sorted(differ)}


def diverging_steps(left: Trace, right: Trace) -> list[StepDiff]:
    """Every step whose result, completions or snapshot differ between the traces."""
    diffs: list[StepDiff] = []
    diffs_by_step = snapshot_diffs(left.records, right.records)
    pairs = zip(left.records, right.records, diffs_by_step, strict=False)
    for index, (a, b, processes) in enumerate(pairs):
        result_differs = not (matches(a.result, b.result) or matches(b.result, a.result))
        completions_differ = not _completions_match(a, b)
        if result_differs or completions_differ or processes:
            diffs.append(StepDiff(index, a, b, result_differs, completions_differ, processes))
    return diffs


@dataclass(slots=True)
class Verdict:
    """The outcome of one scenario on one or two backends."""

    traces: list[Trace]
    failures: list[Failure] = field(default_factory=list)
    diffs: list[StepDiff] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # a backend could not run it
    notes: list[str] = field(default_factory=list)  # e.g. why only one backend ran
    # a backend stopped at a step it cannot perform here (e.g. a feature the kernel
    # lacks): why. Not a failure; the steps before it are still compared.
    unsupported: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.failures or self.diffs or self.errors)


def judge(traces: list[Trace]) -> Verdict:
    verdict = Verdict(traces)
    for trace in traces:
        if trace.error and trace.unsupported:
            verdict.unsupported = trace.error
        elif trace.error:
            verdict.errors.append(f"{trace.backend}: {trace.error}")
        verdict.failures += expectation_failures(trace)
    if len(traces) == 2:
        left, right = traces
        verdict.diffs = diverging_steps(left, right)
        if verdict.unsupported:  # the shorter trace ends at the step it could not perform
            verdict.diffs = [d for d in verdict.diffs if d.index < min_records(traces) - 1]
        elif len(left.records) != len(right.records) and not verdict.errors:
            verdict.errors.append(
                f"{left.backend} ran {len(left.records)} steps, {right.backend} "
                f"{len(right.records)}"
            )
    return verdict


def min_records(traces: list[Trace]) -> int:
    return min(len(t.records) for t in traces)


def judge_release(own: Trace, model: Trace, real: Trace, release: str) -> Verdict:
    """A scenario written for one profile (``own``: the model of its ``%profile``), run on a
    kernel of another release (``model``: the model of that release; ``real``: the
    kernel). The kernel is judged against the model of its release, step by step; the
    file's expectations hold where the two profiles agree, and are checked on ``own``
    everywhere. A step where the releases differ gets a note instead."""
    verdict = judge([model, real])
    differ: set[int] = set()
    same_snapshots = [not d for d in snapshot_diffs(own.records, model.records)]
    for index, step in enumerate(own.scenario.steps):
        a = own.records[index] if index < len(own.records) else None
        b = model.records[index] if index < len(model.records) else None
        if a is None or b is None or not (matches(a.result, b.result) and same_snapshots[index]):
            differ.add(index)
            if step.expected is not None and a is not None and b is not None:
                verdict.notes.append(
                    f"line {step.line}: {step.text}: Linux {release} gives {b.result} "
                    f"(profile {own.scenario.profile}: {a.result})"
                )
    verdict.failures = [f for f in verdict.failures if f.record.step.index not in differ]
    verdict.failures = expectation_failures(own) + verdict.failures
    if own.error:
        verdict.errors.insert(0, f"{own.backend}: {own.error}")
    return verdict
