"""The check's cost grows with the work done, not with the world's size (issue 10, item 11).

A scenario of N forks used to cost O(N^2): after every step the real backend read every
process of the world from /proc, and both backends rebuilt and compared every process's
snapshot. These tests count the work instead of timing it (benchmarks/check_cost.py
times it): a fork step reads /proc for its caller and its child only, whatever N; each
record holds only what changed; a step that can reach everyone (an exit) still reads
everyone. On the real kernel, as root and as uid 65534 (in a user namespace).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pidns.model import Task, Thread
from pidns.scenario import real_proc, real_settle, real_world
from pidns.scenario.ast import Outcome, ProcessSnapshot, Snapshot, Step
from pidns.scenario.backend import run
from pidns.scenario.compare import judge
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.real_proc import Seen
from test_real_backend import Watched, as_nobody, survivors
from test_run_support import needs_root

pytestmark = pytest.mark.real


def forks_then_exit(n: int) -> str:
    """A makes N children, then exits: every child is reparented to root."""
    return "".join(f"A: fork -> Child{i}\n" for i in range(n)) + "A: exit 0\n"


class Counting(Watched):
    """Records, for every step, which processes of the world were read from /proc."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[int] = []  # status descriptors read, in order
        self.per_step: list[set[str]] = []

    def step(self, step: Step) -> Outcome:
        before = len(self.reads)
        outcome = super().step(step)
        assert self.world is not None
        by_fd = {p.status_fd: p.name for p in self.world.procs.values()}
        # a reaped process's descriptor is closed (and may be reused): "reaped"
        self.per_step.append({by_fd.get(fd, "reaped") for fd in self.reads[before:]})
        return outcome


@pytest.fixture
def counted_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every /proc read of the real backend's world, by status descriptor."""
    reads: list[int] = []
    original = real_proc.read

    def counting(status_fd: int, stat_fd: int) -> Seen | None:
        reads.append(status_fd)
        return original(status_fd, stat_fd)

    monkeypatch.setattr(real_settle, "read", counting)
    monkeypatch.setattr(real_world, "read", counting)
    yield reads


def _reads_per_step(n: int, reads: list[int]) -> dict[str, Any]:
    backend = Counting()
    backend.reads = reads
    trace = run(parse(forks_then_exit(n), "forks.pidns"), backend)
    assert trace.error is None, trace.error
    assert survivors(backend.processes) == []
    return {
        "forks": [sorted(names) for names in backend.per_step[:n]],
        "exit": sorted(backend.per_step[n]),
        "changes": [sorted(r.changes) for r in trace.records],
        "last": {k: [v.state, v.parent] for k, v in trace.records[-1].snapshot.items()},
        "userns": backend.userns,
    }


def _assert_linear(n: int, seen: dict[str, Any]) -> None:
    # each fork step read A and the child it made, nothing else
    assert seen["forks"] == [sorted({"A", f"Child{i}"}) for i in range(n)]
    # the exit reaches everyone: every process of the world is read again
    assert set(seen["exit"]) >= {"root", *(f"Child{i}" for i in range(n))}
    # each record holds what changed: the new child; then A and all N reparented children
    assert seen["changes"][:n] == [[f"Child{i}"] if i else ["A", "Child0"] for i in range(n)]
    assert sorted(seen["changes"][n]) == sorted(["A", *(f"Child{i}" for i in range(n))])
    assert seen["last"]["A"] == ["reaped", "-"]  # root reaped it
    assert all(seen["last"][f"Child{i}"] == ["running", "root"] for i in range(n))


@needs_root
@pytest.mark.parametrize("n", [5, 40])
def test_a_fork_step_reads_its_caller_and_child_only_as_root(
    n: int, counted_reads: list[int]
) -> None:
    seen = _reads_per_step(n, counted_reads)
    assert seen["userns"] is False
    _assert_linear(n, seen)


@needs_root
def test_a_fork_step_reads_its_caller_and_child_only_as_nobody(counted_reads: list[int]) -> None:
    n = 25
    seen = as_nobody(lambda: _reads_per_step(n, counted_reads))
    assert isinstance(seen, dict)
    assert seen["userns"] is True
    _assert_linear(n, seen)


class Journaled(ModelBackend):
    """Counts the model's snapshot entries built after each step."""

    def __init__(self) -> None:
        super().__init__()
        self.built: list[int] = []
        self.counted = 0

    def _entry(self, task: Task | Thread) -> ProcessSnapshot:
        self.counted += 1
        return super()._entry(task)

    def changes(self) -> Snapshot:
        self.counted = 0
        changed = super().changes()
        self.built.append(self.counted)
        return changed


def test_the_model_builds_snapshot_entries_only_for_what_changed() -> None:
    for n in (5, 60):
        backend = Journaled()
        trace = run(parse(forks_then_exit(n), "forks.pidns"), backend)
        assert trace.error is None
        assert backend.built[:n] == [2] + [1] * (n - 1)  # A and Child0, then each new child
        assert backend.built[n] == n + 1  # the exit: A and its n reparented children
        assert {p.parent for name, p in trace.records[-1].snapshot.items() if name != "A"} == {
            "root"
        }


def test_snapshots_rebuilt_from_changes_compare_as_whole_ones_did() -> None:
    """A divergence that lasts is reported at every step it lasts, from changes alone."""
    scenario = parse("A: fork -> B\nA: fork -> C\nB: getpid\nC: exit 0\nA: getpid\n", "t.pidns")
    left = run(scenario, ModelBackend())
    right = run(scenario, ModelBackend())
    assert judge([left, right]).diffs == []
    # make B differ on the right from step 2 on, as a backend that disagreed would
    snap = right.records[1].changes["C"]
    right.records[1].changes["B"] = snap
    diffs = judge([left, right]).diffs
    assert [d.index for d in diffs] == [1, 2, 3, 4]
    assert all(set(d.processes) == {"B"} for d in diffs)
    assert right.records[4].snapshot["B"] == snap
