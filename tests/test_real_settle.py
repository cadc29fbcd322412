"""The real backend's settling rules on worlds read from /proc (pidns.scenario.real_settle),
for the states a sweep can catch only by chance: built here as the sweep would see them."""

from __future__ import annotations

import subprocess
import sys
import time
from types import SimpleNamespace

from pidns.scenario.real_proc import Seen, threads_where
from pidns.scenario.real_settle import Settle, Settler
from pidns.scenario.real_world import Proc


def proc(name: str, host: int, state: str, leader: Proc | None = None) -> Proc:
    seen = Seen(state=state, ppid=1, pending=0, blocked=0, exiting=False)
    return Proc(name, host, -1, None, (host,), (1,), -1, -1, seen, leader=leader)


def reasons(*procs: Proc) -> list[str]:
    leader = procs[0]
    world = SimpleNamespace(
        by_host={p.host: p for p in procs},
        threads_of={leader.name: list(procs[1:])},
        root_host=0,
    )
    return Settler(world).unsettled(Settle(None, "0"))  # type: ignore[arg-type]


def test_a_thread_still_running_beside_a_stopped_one_is_joining_the_group_stop() -> None:
    # A: kill B STOP, B a thread of A: B dequeued the stop and stopped; A, marked by it
    # (JOBCTL_STOP_PENDING), stops only on its way back to user space
    a = proc("A", 10, "R")
    b = proc("B", 11, "T", leader=a)
    assert reasons(a, b) == ["A has yet to join its group's stop"]
    a.seen.state = "S"
    assert reasons(a, b) == ["A has yet to join its group's stop"]


def test_a_group_stopped_or_running_as_a_whole_is_at_rest() -> None:
    a = proc("A", 10, "T")
    b = proc("B", 11, "T", leader=a)
    assert reasons(a, b) == []
    a.seen.state = b.seen.state = "S"
    assert reasons(a, b) == []


def test_a_world_that_does_not_settle_says_where_each_thread_sleeps() -> None:
    code = "import threading as t, time; t.Thread(target=time.sleep, args=(30,)).start()"
    code += "; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            where = threads_where(child.pid)
            if where.count(" S ") == 2:
                break
            time.sleep(0.01)
        head, _, threads = where.partition(": ")
        assert head == str(child.pid)
        first, second = threads.split(", ")
        assert first.startswith(f"{child.pid} S ") and " S " in f" {second}"
        assert "nr 230" in where  # clock_nanosleep, where each sleeps (x86-64)
    finally:
        child.kill()
        child.wait()
    assert threads_where(child.pid) == f"{child.pid}: gone"


def test_a_zombie_of_an_init_in_its_zap_is_on_its_way_to_being_reaped() -> None:
    # C, an init, exits: its zap SIGKILLs E, whose child F goes to C and dies; C's
    # kernel_wait4(-1, __WALL) reaps F next, so F's zombie is not at rest (seed 51013)
    root = proc("root", 1, "S")
    c = proc("C", 10, "S")
    c.seen.exiting = True
    f = proc("F", 12, "Z")
    f.seen.ppid = 10
    world = SimpleNamespace(by_host={1: root, 10: c, 12: f}, threads_of={}, root_host=1)
    found = Settler(world).unsettled(Settle(None, "0"))  # type: ignore[arg-type]
    assert "F is a zombie its dying init will reap" in found
    c.seen.exiting = False  # a live parent that has not waited: F is at rest
    found = Settler(world).unsettled(Settle(None, "0"))  # type: ignore[arg-type]
    assert found == []


def test_a_zombie_of_an_init_whose_leader_alone_left_is_at_rest() -> None:
    # examples/54: the init's leader exit(2)ed (a zombie thread, PF_EXITING) while T
    # runs; C, T's child, is a zombie nobody waits for yet: at rest
    root = proc("root", 1, "S")
    leader = proc("I", 10, "Z")
    leader.seen.exiting = True
    leader.seen.threads = 2
    c = proc("C", 12, "Z")
    c.seen.ppid = 10
    world = SimpleNamespace(
        by_host={1: root, 10: leader, 12: c},
        threads_of={},
        root_host=1,
        group_state=lambda _p: "running",  # T, the live thread, was found
    )
    found = Settler(world).unsettled(Settle(None, "0"))  # type: ignore[arg-type]
    assert not any("C is" in reason for reason in found)
