"""The real backend on the running kernel: every op, blocking, settling, and cleanup.

Scenarios run as root (privileged world) and, in forked children that drop to uid 65534,
inside a user namespace. After every run no process of the world may remain: the tests
remember each world process (host pid and start time) and check it is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator

import pytest

from pidns.scenario import ast
from pidns.scenario.ast import Outcome, Snapshot, Step
from pidns.scenario.backend import BackendError, Trace, run
from pidns.scenario.parser import parse
from pidns.scenario.real import RealBackend
from test_run_support import needs_root

pytestmark = pytest.mark.real

NOBODY = 65534
PR_SET_DUMPABLE = 4
_libc = ctypes.CDLL(None, use_errno=True)

SEED = """\
A: unshare NEWPID                 => 0
A: unshare NEWPID                 => EINVAL
A: getpid                         => 2
A: fork -> B                      => 3
B: getpid                         => 1
B: getppid                        => 0
A: fork -> C                      => 4
C: getpid                         => 2
C: getppid                        => 0
B: exit 0
A: state B                        => exiting
A: wait B nohang                  => none
A: wait C                         => C killed KILL
A: wait B                         => B exited 0
A: fork -> D                      => ENOMEM
"""


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2 :].split()[19])


def survivors(processes: dict[int, int]) -> list[int]:
    """The host pids of ``processes`` (pid -> start time) that still exist, zombies too."""
    return [pid for pid, start in processes.items() if _start_time(pid) == start]


def wait_gone(processes: dict[int, int], seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    left = survivors(processes)
    while left and time.monotonic() < deadline:
        time.sleep(0.01)
        left = survivors(processes)
    return left


class Watched(RealBackend):
    """A RealBackend that remembers every process of its world while it lives."""

    def __init__(self, userns: bool | None = None, settle_timeout: float = 10.0) -> None:
        super().__init__(userns=userns, settle_timeout=settle_timeout)
        self.processes: dict[int, int] = {}

    def remember(self) -> None:
        procs = [] if self.world is None else list(self.world.procs.values())
        for pid in (p.host for p in procs):
            start = _start_time(pid)
            if start is not None:
                self.processes.setdefault(pid, start)

    def changes(self) -> Snapshot:
        snap = super().changes()
        self.remember()
        return snap

    def close(self) -> None:
        self.remember()
        super().close()


def run_real(text: str, backend: Watched | None = None) -> Trace:
    """Run ``text`` on a watched backend; the run must end cleanly and leave nothing."""
    backend = backend or Watched()
    trace = run(parse(text, "t.pidns"), backend)
    assert trace.error is None, trace.error
    assert backend.processes, "the world was never seen"
    assert survivors(backend.processes) == [], "processes of the world survived the run"
    return trace


def check_expectations(trace: Trace) -> None:
    wrong = [
        f"line {r.step.line}: {r.step.text}: got {r.result}"
        for r in trace.records
        if r.step.expected is not None and r.result != r.step.expected
    ]
    assert wrong == []


def results(trace: Trace) -> list[str]:
    return [r.result for r in trace.records]


def completions(trace: Trace) -> list[tuple[int, int, str, str]]:
    """(step of completion, step that blocked, actor, result), steps 1-based."""
    return [
        (r.step.index + 1, c.step_index + 1, c.actor, c.result)
        for r in trace.records
        for c in r.completions
    ]


def as_nobody(work: Callable[[], object]) -> object:
    """Run ``work`` in a forked child as uid/gid 65534 (no capabilities); return its JSON."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self stays ours after setuid
            data = json.dumps(work()).encode()
            os.write(write_end, data)
            code = 0
        except BaseException as exc:
            os.write(write_end, json.dumps({"error": repr(exc)}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    answer = json.loads(b"".join(chunks))
    assert os.waitstatus_to_exitcode(status) == 0, answer
    return answer


def trace_summary(text: str) -> dict[str, object]:
    """Run ``text`` on the real backend as the caller; the parts a test compares (as JSON)."""
    backend = Watched()
    trace = run(parse(text, "t.pidns"), backend)
    last = trace.records[-1].snapshot if trace.records else {}
    return {
        "error": trace.error,
        "userns": backend.userns,
        "results": results(trace),
        "completions": completions(trace),
        "last": {k: [v.state, v.parent, list(v.nspid)] for k, v in last.items()},
        "processes": list(backend.processes.items()),
    }


# ---- the seed and every op --------------------------------------------------------------


def test_seed_login_flow_as_root() -> None:
    trace = run_real(SEED)
    check_expectations(trace)
    exit_step = trace.records[9]
    assert exit_step.step.text == "B: exit 0"
    assert exit_step.snapshot["B"] == ast.ProcessSnapshot("exiting", "A", (3, 1))
    assert exit_step.snapshot["C"] == ast.ProcessSnapshot("zombie", "A", (4, 2))
    final = trace.records[-1].snapshot
    assert final == {
        "A": ast.ProcessSnapshot("running", "root", (2,)),
        "B": ast.ProcessSnapshot("reaped", "-", ()),
        "C": ast.ProcessSnapshot("reaped", "-", ()),
    }  # D never existed


def test_seed_login_flow_unprivileged() -> None:
    summary = as_nobody(lambda: trace_summary(SEED))
    assert isinstance(summary, dict)
    assert summary["error"] is None
    assert summary["userns"] is True
    expected = [s.expected for s in parse(SEED).steps]
    got = summary["results"]
    assert isinstance(got, list) and len(got) == len(expected)
    assert all(e is None or e == r for e, r in zip(expected, got, strict=True)), got
    assert summary["last"] == {
        "A": ["running", "root", [2]],
        "B": ["reaped", "-", []],
        "C": ["reaped", "-", []],
    }
    processes = {int(pid): int(start) for pid, start in summary["processes"]}
    assert len(processes) >= 4 and survivors(processes) == []


def test_fork_and_clone_make_real_children() -> None:
    trace = run_real(
        "A: clone PARENT -> B             => 3\n"
        "B: getppid                       => 1\n"
        "A: wait B                        => ECHILD\n"
        "A: clone NEWPID|PARENT -> C      => 4\n"
        "C: getpid                        => 1\n"
        "C: clone PARENT -> X             => EINVAL\n"
        "C: clone NEWUSER|NEWPID -> D     => 2\n"
        "D: nspid                         => [5, 2, 1]\n"
        "A: clone 0 set_tid=50 -> E       => 50\n"
        "A: clone NEWPID set_tid=1,60 -> F => 60\n"
        "F: clone 0 set_tid=7 -> G        => 7\n"
        "A: clone 0 set_tid=50 -> H       => EEXIST\n"
        "A: clone FILES -> I              => 7\n"  # set_tid leaves the cursor alone
        "I: getpid                        => 7\n"
        "A: getpid                        => 2\n"
        "I: exit 0\n"
        "A: wait I                        => I exited 0\n"
        "A: fork -> J                     => 8\n"
        "J: getppid                       => 2\n"
    )
    check_expectations(trace)
    snap = trace.records[-1].snapshot
    assert snap["B"].parent == "root" and snap["C"].parent == "root"
    assert snap["D"] == ast.ProcessSnapshot("running", "C", (5, 2, 1))
    assert snap["G"] == ast.ProcessSnapshot("running", "F", (6, 7))
    assert "X" not in snap and "H" not in snap


def test_clone_flags_a_python_puppet_cannot_take_end_the_run_cleanly() -> None:
    backend = Watched()
    trace = run(parse("A: fork -> B\nA: clone VM -> C\nA: getpid\n"), backend)
    assert trace.error is not None and "share memory" in trace.error
    assert results(trace) == ["3"]
    assert survivors(backend.processes) == []
    # ...while combinations the kernel refuses anyway are passed to it
    check_expectations(
        run_real("A: clone THREAD -> C => EINVAL\nA: clone SIGHAND -> D => EINVAL\n")
    )


def test_unshare_and_setns() -> None:
    trace = run_real(
        "A: fork -> B\n"
        "B: setns A pid_for_children      => 0\n"
        "A: unshare NEWPID                => 0\n"
        "A: setns A pid_for_children      => ENOENT\n"
        "A: fork -> C                     => 4\n"
        "C: getpid                        => 1\n"
        "A: setns A pid_for_children      => 0\n"
        "A: setns A                       => 0\n"
        "A: unshare NEWPID                => 0\n"
        "C: setns A                       => EINVAL\n"
        "C: fork -> D                     => 2\n"
        "A: setns D                       => 0\n"
        "A: fork -> E                     => 6\n"
        "E: getppid                       => 0\n"
        "E: nspid                         => [6, 3]\n"
        "D: exit 0\n"
        "C: wait D                        => D exited 0\n"
        "A: setns D                       => ESRCH\n"
        "A: setns root                    => 0\n"
    )
    check_expectations(trace)


def test_getpid_family_and_sessions() -> None:
    check_expectations(
        run_real(
            "A: getpid                        => 2\n"
            "A: getppid                       => 1\n"
            "A: getpgid                       => 1\n"
            "A: getsid                        => 1\n"
            "A: setsid                        => 2\n"
            "A: setsid                        => EPERM\n"
            "A: clone NEWPID -> B             => 3\n"
            "B: getsid                        => 0\n"
            "B: getpgid                       => 0\n"
            "B: setsid                        => 1\n"
            "B: getpgid                       => 1\n"
        )
    )


def test_pidof_nspid_state_are_read_from_outside() -> None:
    trace = run_real(
        "A: unshare NEWPID\n"
        "A: fork -> B\n"
        "B: fork -> C\n"
        "A: pidof C                       => 4\n"
        "B: pidof C                       => 2\n"
        "C: pidof A                       => 0\n"
        "B: pidof root                    => 0\n"
        "A: pidof root                    => 1\n"
        "A: nspid C                       => [4, 2]\n"
        "C: nspid                         => [4, 2]\n"
        "A: state root                    => running\n"
        "C: exit 1\n"
        "A: state C                       => zombie\n"
        "B: wait                          => C exited 1\n"
        "A: state C                       => reaped\n"
        "A: pidof C                       => 0\n"
        "A: nspid C                       => ESRCH\n"
    )
    check_expectations(trace)


def test_wait_blocks_for_real_and_completes_at_the_step_that_ends_it() -> None:
    trace = run_real(
        "A: fork -> B\n"
        "A: fork -> C\n"
        "A: wait nohang                   => none\n"
        "A: wait C                        => blocks\n"
        "B: exit 3\n"
        "C: getpid                        => 4\n"
        "C: exit 4\n"
        "A: wait any                      => B exited 3\n"
        "A: wait                          => ECHILD\n"
        "A: wait root                     => ECHILD\n"
        "A: fork -> D\n"
        "D: fork -> E\n"
        "A: wait                          => blocks\n"
        "E: kill D KILL\n"
        "E: getppid                       => 1\n"
    )
    check_expectations(trace)
    assert completions(trace) == [(7, 4, "A", "C exited 4"), (14, 13, "A", "D killed KILL")]
    assert trace.records[4].snapshot["B"].state == "zombie"  # A waits for C only


def test_blocked_wait_dies_with_its_process() -> None:
    trace = run_real(
        "A: fork -> B\nB: fork -> C\nB: wait => blocks\n"
        "A: kill B KILL\nA: wait B => B killed KILL\n"
    )
    check_expectations(trace)
    assert completions(trace) == []
    assert trace.records[-1].snapshot["C"].parent == "root"


def test_kill_resolves_names_and_passes_numbers_as_they_are() -> None:
    trace = run_real(
        "A: clone NEWPID -> B\n"
        "B: kill A TERM                   => ESRCH\n"  # A is invisible from B: no call made
        "B: kill 2 TERM                   => ESRCH\n"
        "B: kill -1 KILL                  => ESRCH\n"  # a lone init has nobody to kill
        "B: kill 1 KILL                   => 0\n"  # its own SIGKILL is dropped: SIG_DFL
        "B: kill 0 0                      => 0\n"
        "A: state B                       => running\n"
        "A: kill B TERM                   => 0\n"  # from an ancestor: only KILL/STOP forced
        "A: state B                       => running\n"
        "B: fork -> C\n"
        "C: kill 1 TERM                   => 0\n"
        "A: kill C 0                      => 0\n"
        # A's group is root's (pid 1's): root, A, B and C; it never leaves the world
        "A: kill 0 USR2                   => 0\n"
        "B: wait                          => C killed USR2\n"
        "B: state A                       => reaped\n"
        "B: getpid                        => 1\n"  # an init drops SIG_DFL signals
    )
    check_expectations(trace)


def test_init_protection_and_signals_from_an_ancestor() -> None:
    trace = run_real(
        "A: clone NEWPID -> B\n"
        "B: fork -> C\n"
        "C: kill 1 KILL                   => 0\n"
        "A: state B                       => running\n"
        "A: kill B STOP                   => 0\n"
        "B: getpid                        => blocks\n"
        "A: kill B CONT                   => 0\n"
        "A: kill B KILL                   => 0\n"
        "A: wait B                        => B killed KILL\n"
        "A: state C                       => reaped\n"
    )
    check_expectations(trace)
    assert completions(trace) == [(7, 6, "B", "1")]


def test_caught_signals_report_si_pid_as_the_receiver_sees_it() -> None:
    trace = run_real(
        "A: clone NEWPID -> B\n"
        "B: signal USR1 catch             => 0\n"
        "A: kill B USR1                   => 0\n"
        "B: kill 1 USR1                   => 0\n"
        "B: caught                        => [USR1 from 0, USR1 from 1]\n"
        "B: caught                        => []\n"
        "B: fork -> C\n"
        "C: kill 1 USR1                   => 0\n"
        "B: caught                        => [USR1 from 2]\n"
        "A: kill C USR1                   => 0\n"  # C inherited the handler
        "C: caught                        => [USR1 from 0]\n"
        "C: signal USR1 default           => 0\n"
        "C: kill 1 USR1                   => 0\n"  # B's signalfd is its own
        "B: caught                        => [USR1 from 2]\n"
        "A: kill C USR1\n"
        "B: wait                          => C killed USR1\n"
        "B: signal KILL catch             => EINVAL\n"
        "B: signal TERM ignore            => 0\n"
        "A: kill B TERM                   => 0\n"
        "A: state B                       => running\n"
    )
    check_expectations(trace)


def test_signals_caught_during_a_blocking_wait_are_each_recorded() -> None:
    trace = run_real(
        "A: signal USR1 catch\n"
        "A: fork -> B\n"
        "A: wait                          => blocks\n"
        "B: kill A USR1                   => 0\n"
        "B: kill A USR1                   => 0\n"
        "B: exit 7\n"
        "A: caught                        => [USR1 from 3, USR1 from 3]\n"
    )
    check_expectations(trace)
    assert completions(trace) == [(6, 3, "A", "B exited 7")]


def test_ignored_sigchld_reaps_children_and_wait_gets_echild() -> None:
    trace = run_real(
        "A: signal CHLD ignore\n"
        "A: fork -> B\n"
        "A: fork -> C\n"
        "A: wait                          => blocks\n"
        "B: exit 0\n"
        "C: state B                       => reaped\n"
        "C: exit 0\n"
    )
    check_expectations(trace)
    assert completions(trace) == [(7, 4, "A", "ECHILD")]


def test_subreaper_and_orphans() -> None:
    trace = run_real(
        "A: subreaper on                  => 0\n"
        "A: fork -> B\n"
        "B: fork -> C\n"
        "B: exit 0\n"
        "C: getppid                       => 2\n"
        "A: subreaper off                 => 0\n"
        "C: fork -> D\n"
        "C: exit 0\n"
        "D: getppid                       => 1\n"
        "A: unshare NEWPID\n"
        "A: fork -> I\n"
        "I: fork -> J\n"
        "J: fork -> K\n"
        "J: exit 0\n"
        "K: getppid                       => 1\n"
    )
    check_expectations(trace)
    snap = trace.records[-1].snapshot
    assert (snap["B"].state, snap["B"].parent) == ("zombie", "A")
    assert (snap["C"].state, snap["C"].parent) == ("zombie", "A")  # reparented, then exited
    assert snap["D"].parent == "root" and snap["K"].parent == "I"
    assert (snap["J"].state, snap["J"].parent) == ("zombie", "I")


@needs_root
def test_setuid_drops_privilege_in_a_privileged_world() -> None:
    check_expectations(
        run_real(
            "A: fork -> B\n"
            "B: setuid 65534                  => 0\n"
            "B: kill A TERM                   => EPERM\n"
            "B: unshare NEWPID                => EPERM\n"
            "B: unshare NEWUSER|NEWPID        => 0\n"
            "B: setuid 0                      => EINVAL\n"
        )
    )


def test_namespaces_signals_and_blocking_in_an_unprivileged_world() -> None:
    text = (
        "A: clone NEWPID -> B             => 3\n"
        "B: signal USR1 catch             => 0\n"
        "A: kill B USR1                   => 0\n"
        "B: fork -> C                     => 2\n"
        "C: kill 1 USR1                   => 0\n"
        "B: caught                        => [USR1 from 0, USR1 from 2]\n"
        "B: wait                          => blocks\n"
        "A: setns B                       => 0\n"
        "A: fork -> D                     => 5\n"
        "D: getppid                       => 0\n"
        "C: exit 6\n"
        "B: clone NEWUSER|NEWPID set_tid=1 -> E => 4\n"
        "A: kill B KILL                   => 0\n"
        "A: state B                       => exiting\n"  # until its oddball D is reaped
        "A: wait D                        => D killed KILL\n"
        "A: wait B                        => B killed KILL\n"
    )
    summary = as_nobody(lambda: trace_summary(text))
    assert isinstance(summary, dict)
    assert summary["error"] is None and summary["userns"] is True
    expected = [s.expected for s in parse(text).steps]
    got = summary["results"]
    assert isinstance(got, list)
    assert all(e is None or e == r for e, r in zip(expected, got, strict=True)), got
    assert summary["completions"] == [[11, 7, "B", "C exited 6"]]
    processes = {int(pid): int(start) for pid, start in summary["processes"]}
    assert len(processes) == 6 and survivors(processes) == []  # root, A..E


def test_setuid_in_an_unprivileged_world_maps_only_root() -> None:
    summary = as_nobody(
        lambda: trace_summary("A: setuid 65534\nA: setuid 0\nA: unshare NEWPID\nA: fork -> B\n")
    )
    assert isinstance(summary, dict)
    assert summary["error"] is None
    assert summary["results"] == ["EINVAL", "0", "0", "3"]


def test_a_stopped_actor_blocks_until_continued() -> None:
    trace = run_real(
        "A: fork -> B\n"
        "A: kill B STOP                   => 0\n"
        "B: fork -> C                     => blocks\n"
        "A: state B                       => running\n"
        "A: kill B CONT                   => 0\n"
        "C: getppid                       => 3\n"
        "B: kill B STOP                   => 0\n"  # it stopped itself: kill returned 0
        "A: kill B CONT\n"
        "B: getpid                        => 3\n"
        "B: setsid                        => 3\n"
        "B: fork -> D\n"
        "D: kill 0 STOP                   => 0\n"  # stops B and D (B's session)
        "B: exit 5                        => blocks\n"
        "A: kill B CONT\n"
        "A: wait B                        => B exited 5\n"
    )
    check_expectations(trace)
    assert completions(trace) == [(5, 3, "B", "4")]


def test_a_process_killing_itself_returns_zero() -> None:
    check_expectations(
        run_real(
            "A: fork -> B\nB: kill B KILL => 0\nB: getpid => skipped\nA: wait => B killed KILL\n"
        )
    )


# ---- nothing is left, on any path -------------------------------------------------------


def test_nothing_is_left_after_a_normal_run_with_nested_namespaces() -> None:
    backend = Watched()
    run_real(
        "A: clone NEWPID -> B\nB: clone NEWPID -> C\nC: clone NEWUSER|NEWPID -> D\n"
        "D: setsid\nD: fork -> E\nE: subreaper on\nA: setsid\n",
        backend,
    )
    assert len(backend.processes) == 6  # root, A..E


class Failing(Watched):
    def __init__(self, at: int, why: BaseException) -> None:
        super().__init__()
        self.at = at
        self.why = why

    def step(self, step: Step) -> Outcome:
        if step.index == self.at:
            raise self.why
        return super().step(step)


@pytest.mark.parametrize("why", [RuntimeError("boom"), KeyboardInterrupt()])
def test_nothing_is_left_after_an_exception_in_the_middle(why: BaseException) -> None:
    backend = Failing(3, why)
    with pytest.raises(type(why)):
        run(parse("A: fork -> B\nB: clone NEWPID -> C\nC: fork -> D\nA: getpid\n"), backend)
    assert len(backend.processes) == 5
    assert survivors(backend.processes) == []


def test_nothing_is_left_after_a_settle_timeout() -> None:
    backend = Watched(settle_timeout=0.0)  # every wait for the world times out at once
    trace = run(parse("A: fork -> B\nA: wait B\n"), backend)
    assert trace.error is not None and "did not" in trace.error
    assert backend.processes and survivors(backend.processes) == []


class Crashing(Watched):
    """SIGKILLs a puppet from outside the world just before step ``at``."""

    def __init__(self, at: int, victim: str) -> None:
        super().__init__()
        self.at, self.victim = at, victim
        self.steps_done = 0

    def changes(self) -> Snapshot:
        self.steps_done += 1  # the runner asks for changes once after each step
        return super().changes()

    def can_act(self, name: str) -> bool:  # the runner's first question about a step
        if self.steps_done == self.at and self.world is not None:
            os.kill(self.world.procs[self.victim].host, signal.SIGKILL)
            self.at = -1
        return super().can_act(name)


def test_a_puppet_killed_from_outside_is_a_dead_process_and_nothing_is_left() -> None:
    backend = Crashing(2, "B")
    trace = run(parse("A: fork -> B\nB: fork -> C\nB: getpid\nA: wait B\nC: getppid\n"), backend)
    assert trace.error is None
    assert results(trace) == ["3", "4", "skipped", "B killed KILL", "1"]
    assert survivors(backend.processes) == []


def drop_to_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # /proc/self stays ours after setuid


class Reporting(Watched):
    """Writes its pid and its world's processes to ``fd`` at the last step, then sleeps
    there (unless ``finish``) until a signal ends the runner."""

    def __init__(self, fd: int, last: int, finish: bool) -> None:
        super().__init__()
        self.fd, self.last, self.finish = fd, last, finish

    def step(self, step: Step) -> Outcome:
        outcome = super().step(step)
        if step.index == self.last:
            self.remember()
            report = [os.getpid(), list(self.processes.items())]
            os.write(self.fd, json.dumps(report).encode() + b"\n")
            while not self.finish:
                time.sleep(1)
        return outcome


@contextlib.contextmanager
def forked_runner(text: str, finish: bool, nobody: bool = False) -> Iterator[Runner]:
    """Fork a subreaper that forks a runner (as uid 65534 if ``nobody``); the runner runs
    ``text`` with ``run()``, reports its world at the last step and sleeps there unless
    ``finish``. When ``run()`` ends (or a KeyboardInterrupt ends it), the runner reports
    which processes of its world it still sees, and exits."""
    read_end, write_end = os.pipe()
    reaper = os.fork()
    if reaper == 0:  # pragma: no cover - runs in the child
        try:
            os.close(read_end)
            _libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: the world's root comes here
            if os.fork() == 0:
                try:
                    if nobody:
                        drop_to_nobody()
                    scenario = parse(text)
                    backend = Reporting(write_end, len(scenario.steps) - 1, finish)
                    with contextlib.suppress(KeyboardInterrupt):
                        run(scenario, backend)
                    os.write(write_end, json.dumps(survivors(backend.processes)).encode() + b"\n")
                finally:
                    os._exit(0)
            os.close(write_end)
            while True:  # reap the runner and whatever is reparented to us
                try:
                    os.wait()
                except ChildProcessError:
                    break
        finally:
            os._exit(0)
    os.close(write_end)
    runner = Runner(read_end)
    try:
        pid, processes = json.loads(runner.line())
        runner.pid = pid
        runner.processes = {int(p): int(start) for p, start in processes}
        yield runner
    finally:
        os.close(read_end)
        if runner.pid:  # whatever the test did: the reaper then collects the runner and root
            with contextlib.suppress(ProcessLookupError):
                os.kill(runner.pid, signal.SIGKILL)
        os.waitpid(reaper, 0)


class Runner:
    """A forked runner: its pid, its world's processes, and the lines it writes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pid = 0
        self.processes: dict[int, int] = {}
        self.pending = b""

    def line(self) -> str:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.fd], [], [], 30)
            assert ready, "the runner did not report"
            chunk = os.read(self.fd, 65536)
            assert chunk, "the runner died without reporting"
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line.decode()


WORLD = (
    "A: clone NEWPID -> B\nB: setsid\nB: fork -> C\nC: clone NEWUSER|NEWPID -> D\nA: fork -> E\n"
)


@pytest.mark.parametrize("nobody", [False, True], ids=["root", "uid-65534"])
def test_nothing_is_left_when_the_runner_is_sigkilled(nobody: bool) -> None:
    with forked_runner(WORLD, finish=False, nobody=nobody) as runner:
        processes = runner.processes
        assert len(processes) == 6 and survivors(processes) == list(processes)
        os.kill(runner.pid, signal.SIGKILL)
        assert wait_gone(processes) == []  # the world's root died by PR_SET_PDEATHSIG


def test_ctrl_c_in_the_runner_closes_the_world_before_run_returns() -> None:
    with forked_runner(WORLD, finish=False) as runner:
        os.kill(runner.pid, signal.SIGINT)  # a KeyboardInterrupt in the middle of a step
        assert json.loads(runner.line()) == []  # seen by the runner itself, still alive
        assert wait_gone(runner.processes) == []


def test_a_finished_run_leaves_nothing_as_uid_65534() -> None:
    with forked_runner(WORLD, finish=True, nobody=True) as runner:
        assert len(runner.processes) == 6
        assert json.loads(runner.line()) == []
        assert survivors(runner.processes) == []


def test_a_world_that_cannot_be_made_is_a_backend_error() -> None:
    def unshared_userns_is_refused() -> object:
        # uid 65534 without CAP_SYS_ADMIN asking for a world without a user namespace
        try:
            RealBackend(userns=False).start(parse("A: getpid"))
        except BackendError as err:
            return str(err)
        return "made"

    assert str(as_nobody(unshared_userns_is_refused)).startswith(
        "cannot make the world: creating a pid namespace needs CAP_SYS_ADMIN"
    )
