"""Per-namespace pid_max, signals an init blocks, process groups of others, the wait
variants and the nsfs ioctls, in the model.

Each rule was checked on the running 6.18 kernel first (docs/threads-and-pidfds.md)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, state
from pidns.core import flags as cf
from pidns.core import signals
from pidns.model import Disposition, Kernel, KernelError, TaskState, WaitFor, WouldBlock

TERM = signals.number("TERM")
USR1 = signals.number("USR1")
USR2 = signals.number("USR2")


def test_pid_max_is_per_namespace_and_keyed_on_the_writers_namespace() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    k.write_pid_max(a, 5000)
    init = new_ns_init(k, a)
    assert (k.read_pid_max(a), k.read_pid_max(init)) == (5000, 4194304)
    for bad in (300, 4194305, 0, -1):
        assert errno_of(k.write_pid_max, init, bad) == "EINVAL"
    k.write_pid_max(init, 301)
    assert k.read_pid_max(a) == 5000
    k.setuid(a, 65534)
    assert errno_of(k.write_pid_max, a, 400) == "EACCES"


def test_an_unprivileged_user_writes_the_pid_max_of_its_own_user_and_pid_namespace() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    k.setuid(a, 65534)
    init = k.clone(a, cf.NEWUSER | cf.NEWPID)
    k.write_pid_max(init, 40000)
    assert k.read_pid_max(init) == 40000


def test_numbers_wrap_at_pid_max_to_300() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    k.write_pid_max(init, 400)
    init.ns.cursor = 399  # ns_last_pid = 398
    assert [k.getpid(k.fork(init)) for _ in range(3)] == [399, 300, 301]


def test_a_full_outer_level_fails_the_fork_though_the_inner_limit_is_larger() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    k.write_pid_max(a, 310)
    k.unshare(a, cf.NEWPID)
    made = 0
    with pytest.raises(KernelError) as err:
        while made < 400:
            k.fork(a)
            made += 1
    assert err.value.errno == 11 and made == 307  # EAGAIN: 3..309 at the outer level


def test_3_8_has_one_global_pid_max_only_the_initial_root_writes() -> None:
    k = Kernel(profile="3.8")
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    k.write_pid_max(a, 1000)
    assert k.read_pid_max(init) == 1000 and init.ns.pid_max == 1000


def test_an_init_keeps_a_blocked_default_signal_from_outside_pending() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    k.sigprocmask(init, block=[TERM, USR1])
    k.kill_task(a, init, TERM)
    k.kill_task(a, init, USR1)
    k.kill_task(a, init, USR1)
    assert k.pending(init) == [USR1, TERM]
    k.sigaction(init, USR1, Disposition.CATCH)
    k.sigprocmask(init, unblock=[USR1, TERM])
    assert k.caught(init) == [(USR1, 0)]  # once, si_pid 0
    assert state(init) is TaskState.RUNNING and k.pending(init) == []  # TERM dropped


def test_blocked_signals_from_inside_are_kept_too_and_a_member_dies_on_unblock() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    member = k.fork(init)
    k.sigprocmask(init, block=[TERM])
    k.kill(member, 1, TERM)
    assert k.pending(init) == [TERM]
    k.sigprocmask(member, block=[TERM])
    k.kill(init, 2, TERM)
    assert state(member) is TaskState.RUNNING
    k.sigprocmask(member, unblock=[TERM])
    assert state(member) is TaskState.ZOMBIE


def test_a_signal_blocked_by_the_leader_goes_to_a_thread_that_does_not_block_it() -> None:
    k = Kernel()
    a = k.fork(k.init)
    k.sigaction(a, USR1, Disposition.CATCH)
    k.sigprocmask(a, block=[USR1])
    t = k.clone_thread(a)  # inherits the mask
    k.sigprocmask(t, unblock=[USR1])
    k.kill_task(k.init, a, USR1)
    assert k.caught(a) == [(USR1, 1)] and k.pending(a) == []


def test_ignoring_a_pending_signal_discards_it() -> None:
    k = Kernel()
    a = k.fork(k.init)
    k.sigprocmask(a, block=[USR2])
    k.kill_task(k.init, a, USR2)
    k.sigaction(a, USR2, Disposition.IGNORE)
    assert k.pending(a) == []
    k.sigprocmask(a, unblock=[USR2])
    assert state(a) is TaskState.RUNNING


def test_getpgid_and_setpgid_of_others() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    c = k.fork(init)
    assert (k.getpgid(init, 0), k.getpgid(init, 2)) == (0, 0)  # the leader is outside
    assert errno_of(k.getpgid, init, 77) == "ESRCH"
    k.setpgid(init, 2, 2)
    assert k.getpgid(init, 2) == 2
    c2 = k.fork(init)
    k.setpgid(c2, 0, 2)
    assert k.getpgid(init, 3) == 2
    assert errno_of(k.setpgid, init, 0, 999) == "EPERM"
    assert errno_of(k.setpgid, init, 2, -1) == "EINVAL"
    assert errno_of(k.setpgid, c, 3, 3) == "ESRCH"  # neither itself nor its child
    k.setsid(c2)
    assert errno_of(k.setpgid, c2, 0, 0) == "EPERM"  # a session leader
    t = k.clone_thread(c)
    assert errno_of(k.setpgid, init, k.gettid(t), 2) == "EINVAL"  # not a group leader
    g = k.fork(c)
    k.execve(g)
    assert errno_of(k.setpgid, c, k.getpid(g), 0) == "EACCES"  # the child has exec'd


def test_waitpid_0_and_minus_pgid_choose_by_process_group() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    c = k.fork(a)
    k.setpgid(a, k.getpid(b), 0)
    k.exit(c, 4)
    k.exit(b, 3)
    first = k.wait_pid(a, -k.getpid(b))
    assert first is not None and first.child is b
    second = k.wait_pid(a, 0)
    assert second is not None and second.child is c
    assert errno_of(k.wait_pid, a, -77) == "ECHILD"
    assert errno_of(k.wait_pid, a, 0) == "ECHILD"


def test_a_child_with_another_exit_signal_is_waited_for_only_with_wall() -> None:
    k = Kernel()
    a = k.fork(k.init)
    k.sigaction(a, USR1, Disposition.IGNORE)
    b = k.clone(a, 0, exit_signal=USR1)
    k.exit(b, 7)
    assert state(b) is TaskState.ZOMBIE  # no autoreap: the exit signal is not SIGCHLD
    assert errno_of(k.wait, a, b) == "ECHILD"
    assert errno_of(k.wait, a, None) == "ECHILD"
    peek = k.wait(a, b, how=WaitFor(all=True, nowait=True))
    assert peek is not None and state(b) is TaskState.ZOMBIE
    done = k.wait(a, b, how=WaitFor(all=True))
    assert done is not None and done.describe() == "exited 7"


def test_a_reparented_clone_child_gets_sigchld_back() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    c = k.clone(b, 0, exit_signal=USR1)
    k.exit(b, 0)
    assert c.exit_signal == signals.CHLD
    with pytest.raises(WouldBlock):
        k.wait(k.init, c)


def test_ns_get_parent_and_the_pid_translations() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    member = k.fork(init)
    assert errno_of(k.ns_parent, a, k.root_ns) == "EPERM"  # the initial namespace
    assert errno_of(k.ns_parent, init, init.ns) == "EPERM"  # one's own, from inside
    assert k.ns_parent(a, init.ns) is k.root_ns
    assert k.ns_pid_from(a, init.ns, 1) == k.pid_seen_by(a, init)
    assert k.ns_pid_from(a, init.ns, 2) == k.pid_seen_by(a, member)
    assert errno_of(k.ns_pid_from, init, k.root_ns, k.getpid(a)) == "ESRCH"
    assert k.ns_pid_in(init, k.root_ns, 1) == k.pid_in(init, k.root_ns)
    assert errno_of(k.ns_pid_in, a, init.ns, k.getpid(a)) == "ESRCH"
    assert errno_of(k.ns_pid_from, init, init.ns, 9) == "ESRCH"
    t = k.clone_thread(member)
    assert k.ns_pid_in(a, init.ns, k.pid_seen_by(a, t)) == 3
    assert k.ns_pid_in(a, init.ns, k.pid_seen_by(a, t), tgid=True) == 2
