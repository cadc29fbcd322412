"""The op registry (pidns.scenario.ops) is the one table every consumer reads: the
parser, the runner's no-call rules, the puppet, the generator and the docs."""

from __future__ import annotations

import pathlib
import random
import re

import pytest

from pidns.scenario import ops
from pidns.scenario.ast import Op
from pidns.scenario.backend import ScenarioError, run
from pidns.scenario.generate import generate
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.puppet import Puppet

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "scenario-language.md"


def op_table() -> dict[str, tuple[str, str]]:
    """op -> (arguments, result), from the docs' table under '## Operations'."""
    text = DOCS.read_text()
    section = text.split("## Operations", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or cells[0] in ("op", "---"):
            continue
        for name in re.findall(r"`([a-z_]+)`", cells[0]):
            rows[name] = (cells[1].replace("\\|", "|").strip("`"), cells[2].replace("\\|", "|"))
    return rows


def test_every_op_has_one_entry_and_the_docs_list_it_with_its_arguments() -> None:
    assert set(ops.SPECS) == set(Op)
    table = op_table()
    assert set(table) == {op.value for op in Op}, "docs/scenario-language.md's op table"
    for spec in ops.SPECS.values():
        assert table[spec.name] == (spec.doc_args, spec.summary), spec.name


def test_the_puppet_serves_exactly_the_registry_s_commands() -> None:
    assert set(Puppet.handlers) == set(ops.PUPPET_COMMANDS)
    for word, call in ops.PUPPET_COMMANDS.items():
        handler = Puppet.handlers[word]
        arity = handler.__code__.co_argcount - 1  # self
        assert arity == len(call.fields), word


def test_every_op_either_reaches_a_puppet_or_is_always_answered_by_the_runner() -> None:
    for spec in ops.SPECS.values():
        assert spec.puppet is not None or spec.no_call is not None, spec.name


@pytest.mark.parametrize("spec", list(ops.SPECS.values()), ids=lambda s: s.name)
def test_the_parser_reads_each_op_with_its_grammar(spec: ops.OpSpec) -> None:
    """A sampled step parses; one word more than the grammar takes is refused with the
    registry's usage."""
    target = "P" if spec.on_pidfd else "A"
    for number in range(20):
        line = spec.sample(random.Random(number), "A", target, "C") if spec.sample else ""
        step = parse(f"A: fork -> B\nA: pidfd B -> P\nA: {line}", "t.pidns").steps[-1]
        assert step.op is spec.op
    words = len(spec.params) + 1
    extra = " ".join(["nohang"] * words) if spec.op is Op.WAIT else " ".join(["0"] * words)
    if spec.op is Op.CLONE:
        extra = "0 set_tid=1 0"
    named = (Op.GETPGID, Op.GETSID, Op.SETPGID, Op.NSPARENT, Op.NS_PID_IN)
    if spec.op in (Op.PIDOF, Op.STATE, Op.NSPID, *named):
        extra = " ".join(["A"] * words)
    if spec.op in (Op.BLOCK, Op.UNBLOCK):
        extra = "USR1 USR1"
    if spec.op is Op.NS_PID_FROM:
        extra = "A 1 1"
    if spec.op is Op.SETNS:
        extra = "A pid A"
    if spec.op is Op.PIDFD:
        extra = "A thread A"
    if spec.on_pidfd:
        extra = " ".join(["P"] + ["nohang"] * words) if spec.op is Op.WAITID else "P 0 0"
    if spec.op in (Op.SIGNAL, Op.SUBREAPER):
        extra = {"signal": "USR1 catch x", "subreaper": "on off"}[spec.name]
    bind = " -> C" if spec.binds else ""
    with pytest.raises(ScenarioError) as err:
        parse(f"A: pidfd A -> P\nA: {spec.name} {extra}{bind}", "t.pidns")
    usage = spec.usage or "takes no arguments"
    assert err.value.message == f"unexpected argument: {spec.name} {usage}"


def test_the_generator_samples_every_op_it_weighs() -> None:
    seen: set[str] = set()
    for number in range(60):
        text = generate(random.Random(f"ops:{number}"), steps=20)
        seen |= {line.split(":", 1)[1].split()[0] for line in text.splitlines()[1:]}
    assert seen == {spec.name for spec in ops.SPECS.values() if spec.weight > 0}


def test_no_call_answers_reach_no_backend() -> None:
    """The lookups and the fixed answers are the runner's: a backend that refused every
    call would still give them."""

    class Refusing(ModelBackend):
        def step(self, step):  # type: ignore[no-untyped-def]
            raise AssertionError(f"{step.op.value} reached the backend")

    trace = run(
        parse(
            "A: pidof A => 2\nA: nspid => [2]\nA: state A => running\nA: pidof root => 1\n",
            "t.pidns",
        ),
        Refusing(),
    )
    assert [r.result for r in trace.records] == ["2", "[2]", "running", "1"]


def test_a_name_the_actor_cannot_see_is_answered_by_the_rules() -> None:
    text = (
        "A: unshare NEWPID\nA: fork -> B\nB: fork -> C\n"
        "C: kill A TERM => ESRCH\nC: wait A => ECHILD\nC: pidof A => 0\n"
        "B: exit 0\nA: wait B\nA: setns B => ESRCH\nA: nspid B => ESRCH\n"
    )
    trace = run(parse(text, "t.pidns"), ModelBackend())
    failed = [
        (r.step.text, r.result) for r in trace.records if r.step.expected not in (None, r.result)
    ]
    assert failed == []


@pytest.mark.parametrize(("release", "writes"), [("6.1", False), ("6.18", True)])
def test_random_scenarios_write_pid_max_only_where_each_namespace_has_its_own(
    release: str, writes: bool
) -> None:
    """Before 6.14 pid_max is the machine's: the real backend will not write it, so a
    scenario made for such a kernel must not try (it would only be reported unsupported)."""
    texts = [generate(random.Random(f"pid_max:{n}"), profile=release) for n in range(300)]
    written = [
        line for text in texts for line in text.splitlines() if re.search(r": pid_max \d", line)
    ]
    assert bool(written) == writes
