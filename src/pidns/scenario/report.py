"""Rendering verdicts: a readable, step-by-step text diff, and JSON (docs/check.md)."""

from __future__ import annotations

from typing import Any

from pidns.scenario.ast import ProcessSnapshot, Snapshot, matches
from pidns.scenario.backend import Record, Trace, running_snapshots
from pidns.scenario.compare import StepDiff, Verdict, snapshot_diffs


def _proc(snap: ProcessSnapshot | None) -> str:
    if snap is None:
        return "(absent)"
    nspid = "[" + ", ".join(map(str, snap.nspid)) + "]"
    return f"{snap.state:8} parent {snap.parent:6} nspid {nspid}"


def _result(record: Record) -> str:
    text = record.result
    for done in record.completions:
        text += f"; {done.actor}: {done.result} (completed)"
    return text


def render_diff(diff: StepDiff, left: str, right: str) -> list[str]:
    width = max(len(left), len(right))
    step = diff.left.step
    lines = [f"  step {step.index + 1}, line {step.line}: {step.text}"]
    if diff.result_differs or diff.completions_differ:
        lines.append(f"    result   {left:>{width}}: {_result(diff.left)}")
        lines.append(f"             {right:>{width}}: {_result(diff.right)}")
    for name, (a, b) in diff.processes.items():
        lines.append(f"    {name:8} {left:>{width}}: {_proc(a)}")
        lines.append(f"    {'':8} {right:>{width}}: {_proc(b)}")
    return lines


def render_text(verdict: Verdict, verbose: bool = False) -> str:
    scenario = verdict.traces[0].scenario
    backends = " and ".join(t.backend for t in verdict.traces)
    steps = len(scenario.steps)
    if verdict.ok and verdict.unsupported:
        head = f"skip  {scenario.path} ({verdict.unsupported})"
        head += "".join(f"\n  note: {n}" for n in verdict.notes)
        return head
    if verdict.ok:
        head = f"ok    {scenario.path} ({steps} steps on {backends})"
        head += "".join(f"\n  note: {n}" for n in verdict.notes)
        if not verbose:
            return head
        return "\n".join([head, *render_trace(verdict.traces[0])])
    lines = [f"FAIL  {scenario.path} ({steps} steps on {backends})"]
    lines += [f"  error: {e}" for e in verdict.errors]
    lines += [f"  expectation not met: {f.describe()}" for f in verdict.failures]
    if verdict.diffs:
        left, right = (t.backend for t in verdict.traces)
        lines.append(f"  {len(verdict.diffs)} step(s) where {left} and {right} differ:")
        for diff in verdict.diffs:
            lines += render_diff(diff, left, right)
    return "\n".join(lines)


def render_trace(trace: Trace) -> list[str]:
    """The whole trace, one line per step, as ``pidns sim`` prints it."""
    width = max((len(r.step.text) for r in trace.records), default=10)
    lines = []
    for record in trace.records:
        mark = ""
        if record.step.expected is not None and not matches(record.result, record.step.expected):
            mark = f"   <-- expected {record.step.expected}"
        lines.append(f"  {record.step.text:<{width}}  -> {record.result}{mark}")
        for done in record.completions:
            lines.append(f"  {'':<{width}}     {done.actor}: {done.result} (completed)")
    return lines


def side_by_side(verdict: Verdict) -> str:
    """The step, its expectation and both backends' results in columns (``pidns demo``)."""
    left, right = verdict.traces
    calls = [r.step.text.partition("=>")[0].strip() for r in left.records]
    expected = [r.step.expected or "" for r in left.records]
    widths = [
        max([len(c) for c in calls] + [4]),
        max([len(e) for e in expected] + [8]),
        max([len(_result(r)) for r in left.records] + [len(left.backend)]),
    ]
    head = ("step", "expected", left.backend)
    lines = [
        "  "
        + "  ".join(f"{h:<{w}}" for h, w in zip(head, widths, strict=True))
        + "  "
        + right.backend
    ]
    rows = zip(calls, expected, left.records, right.records, strict=False)
    snapshots = snapshot_diffs(left.records, right.records)
    for (call, want, a, b), d in zip(rows, snapshots, strict=False):
        same = matches(_result(a), _result(b)) and not d
        cells = (call, want, _result(a))
        row = "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        lines.append(f"  {row}  {_result(b)}" + ("" if same else "   <-- differs"))
    return "\n".join(lines)


# ---- JSON --------------------------------------------------------------------------------


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    return {
        name: {"state": p.state, "parent": p.parent, "nspid": list(p.nspid)}
        for name, p in snapshot.items()
    }


def _record_json(record: Record, snapshot: Snapshot) -> dict[str, Any]:
    return {
        "result": record.result,
        "completions": [
            {"step": c.step_index + 1, "actor": c.actor, "result": c.result}
            for c in record.completions
        ],
        "snapshot": snapshot_json(snapshot),
    }


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    scenario = verdict.traces[0].scenario
    diff_steps = {d.index for d in verdict.diffs}
    failed = {(f.backend, f.record.step.index) for f in verdict.failures}
    steps = []
    snapshots = [running_snapshots(trace.records) for trace in verdict.traces]
    for index, step in enumerate(scenario.steps):
        entry: dict[str, Any] = {
            "step": index + 1,
            "line": step.line,
            "text": step.text,
            "expected": step.expected,
            "diverges": index in diff_steps,
        }
        for trace, snapshot in zip(verdict.traces, snapshots, strict=True):
            if index < len(trace.records):
                data = _record_json(trace.records[index], next(snapshot))
                data["meets_expectation"] = (trace.backend, index) not in failed
                entry[trace.backend] = data
        steps.append(entry)
    return {
        "path": scenario.path,
        "profile": scenario.profile,
        "ok": verdict.ok,
        "backends": [t.backend for t in verdict.traces],
        "errors": verdict.errors,
        "notes": verdict.notes,
        "unsupported": verdict.unsupported,
        "failed_expectations": [
            {"backend": f.backend, "step": f.record.step.index + 1, "line": f.record.step.line}
            for f in verdict.failures
        ],
        "diverging_steps": sorted(i + 1 for i in diff_steps),
        "steps": steps,
    }
