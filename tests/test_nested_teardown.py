"""Nested teardown on the real backend (issue 10, item 12).

A dying outer init asleep in its zap's do_wait on a child init, which itself waits in
zap_pid_ns_processes for a zombie whose parent is outside both namespaces, is a world
at rest: it used to be reported "did not settle" after the 10 s timeout. And the init
waiting in the zap shows a different state letter per release (S on 6.18, I on 6.1, D
on 3.8): the settling accepts the running release's (profile row ``zap_wait_state``).
On the real kernel, as root and as uid 65534.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pidns.model import profiles
from pidns.scenario.backend import Trace, run
from pidns.scenario.parser import parse, parse_file
from pidns.scenario.real_settle import zap_wait_state
from test_real_backend import Watched, as_nobody, check_expectations, results, survivors
from test_run_support import needs_root

pytestmark = pytest.mark.real

EXAMPLE = Path(__file__).resolve().parent.parent / "examples"
NESTED = EXAMPLE / "50_nested_teardown_outside_zombie.pidns"


def _run(text: str | None = None) -> tuple[Trace, Watched]:
    backend = Watched()
    scenario = parse_file(str(NESTED)) if text is None else parse(text, "t.pidns")
    trace = run(scenario, backend)
    return trace, backend


def _summary() -> dict[str, Any]:
    trace, backend = _run()
    return {
        "error": trace.error,
        "results": results(trace),
        "left": survivors(backend.processes),
        "userns": backend.userns,
        "B": [trace.records[i].snapshot["B"].state for i in (8, 9, 10, 11)],
    }


def _assert_settles(seen: dict[str, Any]) -> None:
    assert seen["error"] is None  # not "the world did not settle: B is exiting"
    assert seen["results"][8:] == ["0", "exiting", "none", "D exited 0", "reaped", "B exited 0"]
    # B stays exiting while C waits for D; C goes once A reaps D, then B is a zombie
    assert seen["B"] == ["exiting", "exiting", "exiting", "zombie"]
    assert seen["left"] == []


@needs_root
def test_a_dying_init_waiting_on_a_nested_init_settles_as_root() -> None:
    trace, _backend = _run()
    check_expectations(trace)
    seen = _summary()
    assert seen["userns"] is False
    _assert_settles(seen)


@needs_root
def test_a_dying_init_waiting_on_a_nested_init_settles_as_nobody() -> None:
    seen = as_nobody(_summary)
    assert isinstance(seen, dict)
    assert seen["userns"] is True
    _assert_settles(seen)


@needs_root
def test_a_dying_init_whose_nested_init_still_runs_is_not_at_rest_for_long() -> None:
    """B's zap SIGKILLs C; C's own zap kills D: nothing waits outside, all are reaped."""
    trace, backend = _run(
        "A: clone NEWPID -> B\nB: clone NEWPID -> C\nC: fork -> D\nB: exit 0\n"
        "A: wait B                         => B exited 0\nA: state C => reaped\n"
        "A: state D => reaped\n"
    )
    assert trace.error is None, trace.error
    check_expectations(trace)
    assert survivors(backend.processes) == []


def test_the_zap_state_accepted_is_the_running_releases() -> None:
    assert zap_wait_state("3.8.13-pidns") == "D"
    assert zap_wait_state("4.9.337") == "D"
    assert zap_wait_state("5.10.0") == "S"
    assert zap_wait_state("6.1.192") == "I"  # Debian's 6.1.0-57
    assert zap_wait_state("6.1.176") == "S"  # Debian's 6.1.0-50: before the stable update
    assert zap_wait_state("6.18.44-fc-v857") == "S"
    assert zap_wait_state("2.6.32") == "SID"  # no profile: any of them
    assert profiles.V3_8.zap_wait_state == "D" and profiles.V6_18.zap_wait_state == "S"
