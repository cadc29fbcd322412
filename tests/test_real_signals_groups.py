"""The real backend's blocked signals, pid_max, process groups of others, wait variants
(pgrp, WNOWAIT, __WALL, exit signals) and nsfs ioctls, on the running kernel, as root
and as uid 65534, each compared with the model. Every world process is checked gone
after each run (tests/test_real_backend.py's helpers)."""

from __future__ import annotations

import pytest

from pidns.linux import features
from pidns.scenario.backend import run
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.real import RealBackend
from test_real_backend import as_nobody, check_expectations, run_real, trace_summary

pytestmark = pytest.mark.real

BLOCKED = """\
A: clone NEWPID -> I              => 3
I: block USR1                     => 0
I: block TERM                     => 0
A: kill I USR1                    => 0
A: kill I TERM                    => 0
I: pending                        => [USR1, TERM]
I: signal USR1 catch              => 0
I: caught                         => []
I: unblock USR1                   => 0
I: caught                         => [USR1 from 0]
I: unblock TERM                   => 0
I: pending                        => []
A: state I                        => running
I: fork -> M                      => 2
M: block TERM                     => 0
I: kill 2 TERM                    => 0
M: unblock TERM                   => 0
A: state M                        => zombie
"""

GROUPS = """\
A: clone NEWPID -> I              => 3
I: getpgid                        => 0
I: fork -> B                      => 2
I: getpgid B                      => 0
I: setpgid B B                    => 0
I: getpgid B                      => 2
A: getpgid B                      => 4
I: clone 0 exit_signal=0 -> C     => 3
C: setpgid C B                    => 0
C: exit 1                         => 0
I: wait C nohang                  => ECHILD
I: wait pgrp B nowait wall        => C exited 1
I: wait pgrp B wall               => C exited 1
I: wait pgrp nohang               => ECHILD
I: pid_max                        => 4194304
I: pid_max 300                    => EINVAL
I: pid_max 1000                   => 0
I: pid_max                        => 1000
A: nsparent I                     => 0
I: nsparent I                     => EPERM
A: ns_pid_in I B                  => 2
A: ns_pid_from I 2                => 4
I: ns_pid_from A 2                => ESRCH
"""


def model_results(text: str) -> list[str]:
    return [r.result for r in run(parse(text, "t.pidns"), ModelBackend()).records]


@pytest.mark.parametrize("text", [BLOCKED, GROUPS], ids=["blocked", "groups"])
def test_as_root_and_as_the_model_says(text: str) -> None:
    trace = run_real(text)
    check_expectations(trace)
    assert [r.result for r in trace.records] == model_results(text)


@pytest.mark.parametrize("text", [BLOCKED, GROUPS], ids=["blocked", "groups"])
def test_as_uid_65534(text: str) -> None:
    summary = as_nobody(lambda: trace_summary(text))
    assert isinstance(summary, dict) and summary["error"] is None
    assert summary["userns"] is True
    assert summary["results"] == [s.expected for s in parse(text).steps]


def test_a_caught_signal_the_scenario_blocked_stays_pending_until_unblocked() -> None:
    text = (
        "A: signal USR2 catch => 0\nA: block USR2 => 0\nA: fork -> B => 3\n"
        "B: kill 2 USR2 => 0\nA: pending => [USR2]\nA: caught => []\n"
        "A: unblock USR2 => 0\nA: caught => [USR2 from 3]\nA: pending => []\n"
        "B: block USR1 => 0\nB: pending => []\n"
    )
    trace = run_real(text)
    check_expectations(trace)
    assert [r.result for r in trace.records] == model_results(text)


def test_pid_max_writes_are_unsupported_where_pid_max_is_global(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PIDNS_FEATURES_MISSING", "per_ns_pid_max")
    features.forget()
    try:
        trace = run(parse("A: pid_max\nA: pid_max 400\n", "t.pidns"), RealBackend())
    finally:
        monkeypatch.delenv("PIDNS_FEATURES_MISSING")
        features.forget()
    assert trace.unsupported and trace.error is not None
    assert "needs a pid_max per pid namespace (Linux 6.14)" in trace.error
    assert [r.result for r in trace.records] == ["4194304"]  # reading is harmless


def test_a_second_name_whose_fork_failed_is_esrch_on_both_backends() -> None:
    text = (
        "A: unshare NEWPID\nA: fork -> B\nB: exit 0\nA: fork -> C => ENOMEM\n"
        "A: setpgid A C => ESRCH\nA: ns_pid_in A C => ESRCH\n"
    )
    trace = run_real(text)
    check_expectations(trace)
    assert [r.result for r in trace.records] == model_results(text)
