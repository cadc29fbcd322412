"""pidns sim / check (model side), the model backend, traces, reports, random scenarios."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidns.cli import main
from pidns.cli.check import SEED_LOGIN_FLOW
from pidns.scenario.ast import Step, matches
from pidns.scenario.backend import Runner, ScenarioError, run
from pidns.scenario.compare import judge
from pidns.scenario.generate import (
    _children_die_together,
    _names_a_thread_of_a_zap,
    _queues_beside_a_sibling,
    _replay,
    _sleeping_waiters,
    _wakes_a_sibling_pgrp_wait,
    generate,
    shrink,
)
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.pidns"))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_at_least_30_examples_and_the_seed_first() -> None:
    assert len(EXAMPLES) >= 30
    assert "seed" in EXAMPLES[0].name
    first = EXAMPLES[0].read_text()
    assert "unshare NEWPID" in first and "ENOMEM" in first


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_meets_its_expectations_on_the_model(path: Path) -> None:
    scenario = parse(path.read_text(), str(path))
    expected = [s for s in scenario.steps if s.expected is not None]
    assert expected, "an example without expectations proves nothing"
    verdict = judge([run(scenario, ModelBackend())])
    assert verdict.ok, [f.describe() for f in verdict.failures]


def test_sim_prints_the_trace_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "seed.pidns", SEED_LOGIN_FLOW)
    assert main(["sim", path]) == 0
    out = capsys.readouterr().out
    assert "A: wait C" in out and "-> C killed KILL" in out
    assert "1 of 1 scenario(s) passed" in out


def test_sim_exits_1_on_a_failed_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "wrong.pidns", "A: getpid => 7\n")
    assert main(["sim", path]) == 1
    out = capsys.readouterr().out
    assert "model gave 2, expected 7" in out and "FAIL" in out


def test_a_bad_file_is_reported_with_its_position_and_nothing_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write(tmp_path, "good.pidns", "A: getpid => 2\n")
    bad = write(tmp_path, "bad.pidns", "A: fork -> B\nB: frobnicate\n")
    assert main(["sim", good, bad]) == 2
    captured = capsys.readouterr()
    assert f"{bad}:2:4: unknown op" in captured.err
    assert "B: frobnicate" in captured.err
    assert captured.out == ""  # the good file did not run either


def test_a_busy_actor_is_a_scenario_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "busy.pidns", "A: fork -> B\nA: wait B\nA: getpid\n")
    assert main(["sim", path]) == 2
    assert f"{path}:3:1: A is still blocked in the call at step 2" in capsys.readouterr().err


def test_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "/nonexistent/x.pidns"]) == 2
    assert "/nonexistent/x.pidns:1:1: cannot read" in capsys.readouterr().err


def test_sim_json_is_one_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "seed.pidns", SEED_LOGIN_FLOW)
    assert main(["sim", "--json", path]) == 0
    document = json.loads(capsys.readouterr().out)
    scenario = document["scenarios"][0]
    assert scenario["ok"] and scenario["backends"] == ["model"]
    step = scenario["steps"][3]
    assert step["text"].startswith("A: fork -> B")
    assert step["model"]["result"] == "3"
    assert step["model"]["snapshot"]["B"] == {"state": "running", "parent": "A", "nspid": [3, 1]}


def test_blocked_wait_completes_at_the_step_that_ends_the_child() -> None:
    trace = run(parse("A: fork -> B\nA: wait B\nB: exit 4\n", "w"), ModelBackend())
    assert [r.result for r in trace.records] == ["3", "blocks", "0"]
    done = trace.records[2].completions
    assert [(c.step_index, c.actor, c.result) for c in done] == [(1, "A", "B exited 4")]


def test_steps_of_a_process_that_never_existed_are_skipped() -> None:
    text = "A: clone THREAD -> B\nB: getpid\nA: kill B KILL\n"
    trace = run(parse(text, "s"), ModelBackend())
    assert [r.result for r in trace.records] == ["EINVAL", "skipped", "ESRCH"]


def test_the_world_sits_at_the_given_level() -> None:
    deep = "".join(f"{p}: clone NEWPID -> {n}\n" for p, n in zip("ABCD", "BCDE", strict=True))
    trace = run(parse(deep + "E: nspid\n", "d"), ModelBackend(world_level=29))
    assert trace.records[-2].result == "ENOSPC"  # level 33
    assert trace.records[-1].result == "skipped"


def test_random_scenarios_are_valid_and_reproducible() -> None:
    for seed in range(40):
        text = generate(random.Random(seed))
        assert text == generate(random.Random(seed))
        run(parse(text, f"random-{seed}"), ModelBackend())  # strict: no busy actor


def test_shrink_keeps_what_makes_it_fail_and_the_names_it_needs() -> None:
    text = "%profile 6.18\nA: getpid\nA: fork -> B\nA: getppid\nB: setsid\nB: getpid\nA: getsid\n"

    def fails(candidate: str) -> bool:
        try:
            scenario = parse(candidate, "c")
        except ScenarioError:
            return False
        return any(s.actor == "B" and s.op.value == "setsid" for s in scenario.steps)

    assert shrink(text, fails) == "%profile 6.18\nA: fork -> B\nB: setsid\n"


def test_sim_draws_the_model(tmp_path: Path) -> None:
    pytest.importorskip("shutil").which("dot") or pytest.skip("graphviz is not installed")
    path = write(tmp_path, "seed.pidns", SEED_LOGIN_FLOW.split("B: exit")[0])
    out = tmp_path / "seed.svg"
    assert main(["sim", "--svg", str(out), path]) == 0
    svg = out.read_text()
    assert "<svg" in svg and "pid namespace" in svg and ">B<" in svg


def test_a_stopped_actor_blocks_until_continued() -> None:
    text = "A: fork -> B\nA: kill B STOP\nB: getpid\nA: kill B CONT\nB: exit 0\n"
    trace = run(parse(text, "s"), ModelBackend())
    assert [r.result for r in trace.records] == ["3", "0", "blocks", "0", "0"]
    assert [(c.actor, c.result) for c in trace.records[3].completions] == [("B", "3")]


def test_an_exit_deferred_by_a_stop_never_completes() -> None:
    text = "A: fork -> B\nA: kill B STOP\nB: exit 3\nA: kill B CONT\nA: wait B\n"
    trace = run(parse(text, "s"), ModelBackend())
    assert trace.records[3].completions == []
    assert trace.records[4].result == "B exited 3"


def test_a_stopped_actor_still_gets_answers_that_need_no_call() -> None:
    text = (
        "A: clone NEWPID -> C\nC: fork -> D\nA: kill D STOP\n"
        "D: kill A TERM\nD: wait A\nD: nspid\nD: state A\nD: getpid\n"
    )
    trace = run(parse(text, "s"), ModelBackend())
    # A is invisible from D: the runner answers kill and wait without D making a call
    assert [r.result for r in trace.records[3:]] == [
        "ESRCH",
        "ECHILD",
        "[4, 2]",
        "running",
        "blocks",
    ]


def test_racing_senders_give_alternatives_that_match_either() -> None:
    text = (
        "A: unshare NEWPID\nA: fork -> B\nA: signal CHLD catch\nA: fork -> C\n"
        "A: fork -> D\nB: exit 1\nA: caught\n"
    )
    trace = run(parse(text, "s"), ModelBackend())
    assert trace.records[-1].result == "[CHLD from 4|5]"  # C and D die at once
    assert matches("[CHLD from 4|5]", "[CHLD from 5]")
    assert not matches("[CHLD from 4|5]", "[CHLD from 6]")
    assert not matches("[CHLD from 4]", "[CHLD from 4, CHLD from 5]")


def test_demo_runs_the_seed_on_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "step" in out and "expected" in out and "model" in out and "real" in out
    row = next(line for line in out.splitlines() if "A: fork -> D" in line)
    assert row.split()[-3:] == ["ENOMEM", "ENOMEM", "ENOMEM"]
    assert "differs" not in out


def test_check_reports_model_and_kernel_step_by_step_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "seed.pidns", SEED_LOGIN_FLOW)
    assert main(["check", "--json", path]) == 0
    document = json.loads(capsys.readouterr().out)
    step = document["scenarios"][0]["steps"][10]  # A: state B => exiting
    assert step["model"]["result"] == step["real"]["result"] == "exiting"
    assert step["real"]["snapshot"]["B"]["nspid"] == [3, 1]


@contextlib.contextmanager
def _before_the_last(lines: list[str]) -> Iterator[tuple[ModelBackend, Runner, Step]]:
    """A model world that ran every line but the last, its runner, and the last line's
    step, not yet run: what the generator holds when it weighs a step."""
    backend, runner = _replay(lines[:-1], "6.18", 1, None)
    try:
        yield backend, runner, parse("".join(f"{line}\n" for line in lines), "t.pidns").steps[-1]
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("lines", "race"),
    [
        # C's kill of its group ends C and D, both children of B asleep in wait: which
        # one B reaps is the scheduler's (found by check --random as uid 65534)
        (["A: clone NEWPID|PARENT -> B", "B: fork -> C", "B: wait any",
          "C: clone PARENT -> D", "C: kill 0 KILL"], True),
        # an init and a member of its namespace: the init waits in its zap for D, so D
        # is the zombie A's wait finds first
        (["A: clone NEWPID -> I", "A: setns I pid_for_children", "A: fork -> D",
          "A: wait any", "I: exit 0"], False),
        # one child ends
        (["A: fork -> B", "A: fork -> C", "A: wait any", "B: exit 1"], False),
    ],
    ids=["group-kill", "init-and-member", "one-child"],
)  # fmt: skip
def test_the_generator_never_ends_two_children_of_a_sleeping_waiter_together(
    lines: list[str], race: bool
) -> None:
    with _before_the_last(lines) as (backend, runner, step):
        sleepers = _sleeping_waiters(backend, runner, {s.index: s for s in runner.scenario.steps})
        runner.step(step)
        assert _children_die_together(sleepers) is race


@pytest.mark.parametrize(
    ("lines", "race"),
    [
        # A and C, threads of one stopped process, both with a call queued: on SIGCONT
        # A's fork and C's exit_group run at once (found by check --random, seed 52008)
        (["A: thread -> C", "A: fork -> D", "D: kill C STOP", "C: exit 3",
          "A: fork -> E"], True),
        # one call queued in a stopped process
        (["A: thread -> C", "A: fork -> D", "D: kill C STOP", "C: exit 3"], False),
        # a sibling busy in a process that runs: its wait sleeps, the fork is no race
        (["A: thread -> C", "A: fork -> D", "C: wait D", "A: fork -> E"], False),
    ],
    ids=["two-queued", "one-queued", "running"],
)  # fmt: skip
def test_the_generator_never_queues_two_calls_in_one_stopped_process(
    lines: list[str], race: bool
) -> None:
    with _before_the_last(lines) as (backend, runner, step):
        assert _queues_beside_a_sibling(step, backend, runner) is race


@pytest.mark.parametrize(
    ("lines", "race"),
    [
        # B, an init with a thread D and a member C, exits: which of B and D makes the
        # zap (and stays visible in it) is the scheduler's (found by random, seed 61009)
        (["A: unshare NEWPID", "A: fork -> B", "A: fork -> C", "B: thread -> D",
          "B: exit 0", "A: getpgid D"], True),
        # no other member: the namespace dies at once, D is gone for good
        (["A: unshare NEWPID", "A: fork -> B", "B: thread -> D", "B: exit 0",
          "A: getpgid D"], False),
        # not an init
        (["A: fork -> B", "B: thread -> D", "B: exit 0", "A: getpgid D"], False),
    ],
    ids=["init-in-its-zap", "init-alone", "no-init"],
)  # fmt: skip
def test_the_generator_never_names_a_thread_of_an_init_in_its_zap(
    lines: list[str], race: bool
) -> None:
    with _before_the_last(lines) as (backend, _runner, step):
        assert _names_a_thread_of_a_zap(step, backend) is race


@pytest.mark.parametrize(
    ("lines", "race"),
    [
        # C sleeps in a wait for A's group, which B left: the puppet's wake of C for the
        # new signal mask would make C's wait anew, ECHILD (found as 65534, seed 72005)
        (["A: fork -> B", "A: thread -> C", "C: wait pgrp wall", "B: setsid",
          "A: signal USR2 catch"], True),
        # a wait for one child is made again alike
        (["A: fork -> B", "A: thread -> C", "C: wait B", "A: signal USR2 catch"], False),
        # no sibling asleep
        (["A: fork -> B", "A: thread -> C", "A: signal USR2 catch"], False),
    ],
    ids=["pgrp-wait", "pid-wait", "none"],
)  # fmt: skip
def test_the_generator_never_wakes_a_siblings_group_wait(lines: list[str], race: bool) -> None:
    with _before_the_last(lines) as (backend, runner, step):
        made = {s.index: s for s in runner.scenario.steps}
        assert _wakes_a_sibling_pgrp_wait(step, backend, runner, made) is race
