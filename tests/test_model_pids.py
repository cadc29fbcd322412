"""Pid numbers: cyclic allocation, wrap, exhaustion, set_tid (docs/rules.md C1, B5, B6)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, unprivileged
from pidns.core import flags as cf
from pidns.model import Kernel
from pidns.model.profiles import RESERVED_PIDS


def test_numbers_are_sequential_and_not_reused_before_wrapping() -> None:  # C1
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    kids = [k.fork(init) for _ in range(4)]
    assert [k.getpid(c) for c in kids] == [2, 3, 4, 5]
    k.exit(kids[0], 0)
    k.wait(init, kids[0])
    assert k.getpid(k.fork(init)) == 6  # 2 is free but the cursor moved on


@pytest.mark.parametrize("profile", ["6.18", "3.8"])
def test_wrap_goes_to_300(profile: str) -> None:  # C1, L7
    k = Kernel(profile=profile, pid_max=400)
    a = k.fork(k.init)
    k.root_ns.cursor = 399  # ns_last_pid = 398
    assert k.getpid(k.fork(a)) == 399
    assert k.getpid(k.fork(a)) == RESERVED_PIDS
    assert k.getpid(k.fork(a)) == 301


def test_low_numbers_are_reused_while_the_cursor_is_below_300_today_only() -> None:
    today = Kernel(pid_max=310)
    a = today.fork(today.init)
    for _ in range(307):
        today.fork(a)
    assert today.root_ns.last_pid == 309
    kids = [c for c in today.live_tasks() if today.getpid(c) in (5, 6)]
    for c in kids:
        today.exit(c, 0)
        today.wait(a, c)
    today.root_ns.cursor = 200  # ns_last_pid written back below 300 (C2)
    assert today.getpid(today.fork(a)) == 5  # wraps to 1, finds 5 free
    old = Kernel(profile="3.8", pid_max=310)
    b = old.fork(old.init)
    for _ in range(307):
        old.fork(b)
    for c in [c for c in old.live_tasks() if old.getpid(c) in (5, 6)]:
        old.exit(c, 0)
        old.wait(b, c)
    old.root_ns.cursor = 200
    assert errno_of(old.fork, b) == "ENOMEM"  # 3.8 wraps to 300 only: space is full


def test_a_full_pid_space_is_eagain_today_enomem_in_3_8() -> None:  # C1, L7
    k = Kernel(pid_max=301)
    a = k.fork(k.init)
    for _ in range(298):
        k.fork(a)
    assert errno_of(k.fork, a) == "EAGAIN"
    old = Kernel(profile="3.8", pid_max=301)
    b = old.fork(old.init)
    for _ in range(298):
        old.fork(b)
    assert errno_of(old.fork, b) == "ENOMEM"


def test_an_ancestor_level_limits_a_child_namespace() -> None:  # C3; selftest pid_max nested_limit
    k = Kernel(pid_max=310)
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    assert init.ns.pid_max == 4194304  # a new namespace's own limit is not inherited
    made = 0
    while True:
        try:
            k.fork(init)
        except OSError as err:
            assert err.errno is not None
            break
        made += 1
    assert made == 310 - 3 - 1  # numbers 4..309 at level 0 were the limit


def test_a_failed_fork_into_a_dead_namespace_still_uses_outer_numbers() -> None:  # B6
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    init = k.fork(a)  # 3 in the world
    k.exit(init, 0)
    k.wait(a, init)
    assert errno_of(k.fork, a) == "ENOMEM"
    k.setns(a, a)
    assert k.getpid(k.fork(a)) == 5  # 4 was taken and released by the failed fork


def test_a_failed_first_fork_leaves_pid_1_for_the_next() -> None:  # B6 (cursor reset)
    k = Kernel()
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.clone, a, 0, set_tid=[5]) == "EINVAL"  # no init yet
    assert k.getpid(k.fork(a)) == 1


def test_set_tid_rules() -> None:  # B5; selftest clone3_set_tid
    k = Kernel()
    a = k.fork(k.init)
    assert errno_of(k.clone, a, 0, set_tid=[1]) == "EEXIST"
    assert errno_of(k.clone, a, 0, set_tid=[0]) == "EINVAL"
    assert errno_of(k.clone, a, 0, set_tid=[-1]) == "EINVAL"
    assert errno_of(k.clone, a, 0, set_tid=[32768]) == "EINVAL"  # >= pid_max
    assert errno_of(k.clone, a, 0, set_tid=[5, 5]) == "EINVAL"  # more than level + 1
    assert errno_of(k.clone, a, cf.NEWPID, set_tid=[5]) == "EINVAL"  # new ns: only 1
    init = k.clone(a, cf.NEWPID, set_tid=[1])
    assert k.getpid(init) == 1
    chosen = k.clone(init, 0, set_tid=[43, 1000])
    assert k.nspid(chosen) == (1000, 43)
    assert k.getpid(k.clone(init, 0, set_tid=[2])) == 2
    deeper = k.clone(init, cf.NEWPID, set_tid=[1, 42, 1001])
    assert k.nspid(deeper) == (1001, 42, 1)
    assert errno_of(k.clone, init, cf.NEWPID, set_tid=[1, 44, 1002, 7]) == "EINVAL"


def test_set_tid_checks_validity_before_permission() -> None:  # B5 (nobody)
    k = Kernel()
    a = unprivileged(k, k.fork(k.init))
    assert errno_of(k.clone, a, 0, set_tid=[0]) == "EINVAL"
    assert errno_of(k.clone, a, 0, set_tid=[1]) == "EPERM"
    assert errno_of(k.clone, a, 0, set_tid=[900]) == "EPERM"
    own = k.clone(a, cf.NEWUSER | cf.NEWPID)  # inside its own user+pid namespace
    assert k.getpid(k.clone(own, 0, set_tid=[77])) == 77
    assert errno_of(k.clone, own, 0, set_tid=[78, 12345]) == "EPERM"  # host level


def test_set_tid_does_not_exist_in_3_8() -> None:
    k = Kernel(profile="3.8")
    assert errno_of(k.clone, k.init, 0, set_tid=[9]) == "ENOSYS"


def test_pgid_numbers_stay_taken_while_a_group_uses_them() -> None:  # C4
    k = Kernel(pid_max=305)
    a = k.fork(k.init)
    leader = k.fork(a)
    k.setsid(leader)
    member = k.fork(leader)
    k.exit(leader, 0)
    k.wait(a, leader)
    number = k.pid_in(leader, k.root_ns)
    assert k.root_ns.idr[number] is leader  # held as pgid and sid of the member
    assert k.find(k.root_ns, number) is None  # but no process has that pid
    assert errno_of(k.kill, a, number, 0) == "ESRCH"
    k.kill(a, -number, 0)  # the group still exists
    k.exit(member, 0)
    assert member.parent is k.init and number in k.root_ns.idr  # a zombie still uses it
    k.wait(k.init, member)
    assert number not in k.root_ns.idr  # the last user let it go
