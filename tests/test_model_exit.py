"""Exit, reparenting, namespace death and wait (docs/rules.md sections G, I)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, state
from pidns.core import flags as cf
from pidns.model import Kernel, TaskState, Unmodeled, WouldBlock
from pidns.model.task import IllegalTransition


def test_orphans_inside_go_to_the_namespace_init() -> None:  # G2, I2
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    middle = k.fork(init)
    orphan = k.fork(middle)
    k.exit(middle, 0)
    k.wait(init, middle)
    assert orphan.parent is init and k.getppid(orphan) == 1
    k.exit(orphan, 3)
    result = k.wait(init)
    assert result is not None and (result.child, result.pid) == (orphan, 3)


def test_a_subreaper_inside_the_namespace_adopts() -> None:  # G2
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    sub = k.fork(init)
    k.set_subreaper(sub, True)
    middle = k.fork(sub)
    orphan = k.fork(middle)
    k.exit(middle, 0)
    assert orphan.parent is sub and k.getppid(orphan) == 2


def test_a_subreaper_outside_is_not_used_for_orphans_inside() -> None:  # G2
    k = Kernel()
    outside = k.fork(k.init)
    k.set_subreaper(outside, True)
    init = new_ns_init(k, outside)
    middle = k.fork(init)
    orphan = k.fork(middle)
    k.exit(middle, 0)
    assert orphan.parent is init


def test_when_the_creator_exits_init_and_oddballs_go_to_its_reaper() -> None:  # G2
    k = Kernel()
    sub = k.fork(k.init)
    k.set_subreaper(sub, True)
    creator = k.fork(sub)
    k.unshare(creator, cf.NEWPID)
    init = k.fork(creator)
    oddball = k.fork(creator)
    child_of_oddball = k.fork(oddball)
    k.exit(creator, 0)
    assert init.parent is sub and oddball.parent is sub
    assert k.getppid(init) == 0 and k.getppid(oddball) == 0
    k.exit(oddball, 0)  # G2: the oddball's own child goes to the ns init
    assert child_of_oddball.parent is init and k.getppid(child_of_oddball) == 1


def test_3_8_subreaper_walk_crosses_out_of_the_namespace() -> None:  # L13
    for profile, expected in (("6.18", "init"), ("3.8", "sub")):
        k = Kernel(profile=profile)
        sub = k.fork(k.init)
        k.set_subreaper(sub, True)
        creator = k.fork(sub)
        k.unshare(creator, cf.NEWPID)
        init = k.fork(creator)
        injected = k.fork(creator)  # lives inside, its parent outside
        child = k.fork(injected)
        k.exit(injected, 0)
        assert child.parent is {"init": init, "sub": sub}[expected], profile


def test_subreaper_marks_existing_descendants_only_today() -> None:
    for profile, adopted_by_sub in (("6.18", True), ("3.8", False)):
        k = Kernel(profile=profile)
        sub = k.fork(k.init)
        middle = k.fork(sub)
        orphan = k.fork(middle)
        k.set_subreaper(sub, True)  # after the fork: 3.8 did not propagate
        k.exit(middle, 0)
        assert (orphan.parent is sub) is adopted_by_sub, profile


def test_init_exit_kills_everything_below_and_waits_for_outside_zombies() -> None:  # G4
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    sibling = k.fork(init)
    nested = new_ns_init(k, init)
    nested_child = k.fork(nested)
    k.setns(a, init)
    injected = k.fork(a)  # an outside parent's child inside (setns + fork)
    k.exit(init, 7)
    assert state(init) is TaskState.EXITING  # [U10a]
    for task in (sibling, nested, nested_child):
        assert state(task) is TaskState.REAPED
    assert state(injected) is TaskState.ZOMBIE
    assert k.wait(a, init, nohang=True) is None
    with pytest.raises(WouldBlock):
        k.wait(a, init)  # the hazard: waiting for init first would deadlock
    k.wait(a, injected)
    result = k.wait(a, init)  # G5: init's own status, last of its namespace
    assert result is not None and result.describe() == "exited 7"
    assert errno_of(k.fork, a) == "ENOMEM"


def test_killing_the_outer_init_tears_down_nested_levels() -> None:  # LTP pidns05
    k = Kernel()
    t = k.fork(k.init)
    inits = []
    parent = t
    for _ in range(5):
        parent = new_ns_init(k, parent)
        inits.append(parent)
    k.exit(inits[-1], 0)  # the deepest exits and stays an unreaped zombie
    k.kill_task(t, inits[0], 9)
    result = k.wait(t, inits[0])
    assert result is not None and result.describe() == "killed KILL"
    assert [i.state for i in inits] == [TaskState.REAPED] * 5
    assert set(k.live_tasks()) == {k.init, t}


def test_wait_only_for_own_children() -> None:  # I1
    k = Kernel()
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    init = k.fork(a)
    oddball = k.fork(a)
    assert errno_of(k.wait, init) == "ECHILD"  # the init cannot wait for oddballs
    assert errno_of(k.wait, init, oddball) == "ECHILD"
    assert k.wait(a, nohang=True) is None
    k.kill_task(a, oddball, 15)
    result = k.wait(a)
    assert result is not None and result.describe() == "killed TERM"


def test_wait_any_takes_the_first_zombie_in_list_order() -> None:
    k = Kernel()
    a = k.fork(k.init)
    first, second = k.fork(a), k.fork(a)
    k.exit(second, 2)
    k.exit(first, 1)
    result = k.wait(a)
    assert result is not None and result.child is first


def test_ignoring_sigchld_reaps_children_at_once() -> None:
    k = Kernel()
    a = k.fork(k.init)
    k.sigaction(a, 17, k.init.disposition(17).IGNORE)
    child = k.fork(a)
    k.exit(child, 0)
    assert state(child) is TaskState.REAPED
    assert errno_of(k.wait, a) == "ECHILD"


def test_state_machine_refuses_impossible_edges() -> None:
    k = Kernel()
    a = k.fork(k.init)
    with pytest.raises(IllegalTransition):
        a.move_to(TaskState.ZOMBIE)  # running -> zombie skips exiting
    k.exit(a, 0)
    with pytest.raises(ValueError, match="cannot make system calls"):
        k.fork(a)
    b = k.fork(k.init)
    b.move_to(TaskState.EXITING)
    with pytest.raises(IllegalTransition):
        b.move_to(TaskState.REAPED)  # even an autoreaped task is a zombie first


def test_a_fatal_signal_left_queued_is_caught_at_the_next_call() -> None:
    """The invariant of Kernel._enter: no call returns with a fatal signal queued."""
    k = Kernel()
    a = k.fork(k.init)
    k.doomed.append((a, 9))  # as a call that forgot flush_fatal would leave it
    with pytest.raises(AssertionError, match="fatal signals left queued"):
        k.fork(a)


def test_the_boot_init_may_not_exit() -> None:
    k = Kernel()
    with pytest.raises(Unmodeled):
        k.exit(k.init, 0)
    assert k.init.state is TaskState.RUNNING
