"""Threads in the model: per-thread pid numbers and nsproxy, exit, exec and wait.

Each rule was checked on the running 6.18 kernel first (docs/threads-and-pidfds.md)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, state
from pidns.core import flags as cf
from pidns.core import signals
from pidns.model import Disposition, Kernel, TaskState, Thread, WouldBlock


def test_a_thread_takes_a_number_in_every_level_and_getpid_is_the_tgid() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    t = k.clone_thread(init)
    assert (k.getpid(t), k.gettid(t), k.gettid(init)) == (1, 2, 1)
    assert k.nspid(t) == (4, 2)  # a thread has a number at the outer level too
    assert k.getpid(k.fork(init)) == 3  # the next fork comes after the thread
    assert k.pid_seen_by(a, t) == 4 and k.find(a.ns, 4) is init


def test_pthread_create_after_unshare_newpid_is_einval_for_that_thread_only() -> None:
    k = Kernel()
    a = k.fork(k.init)
    other = k.clone_thread(a)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.clone_thread, a) == "EINVAL"
    k.fork(a)  # the namespace now has its init; the caller's pid_ns_for_children differs still
    assert errno_of(k.clone_thread, a) == "EINVAL"
    assert isinstance(k.clone_thread(other), Thread)  # nsproxy is per thread


def test_unshare_and_setns_by_one_thread_affect_only_its_own_children() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    k.unshare(t, cf.NEWPID)
    assert k.getpid(k.fork(t)) == 1
    assert k.getpid(k.fork(a)) == 5  # 2 is a, 3 is t, 4 the other child's outer number
    b = k.clone(k.init, cf.NEWPID)
    t2 = k.clone_thread(a)
    k.setns(t2, b)
    assert k.getpid(k.fork(t2)) == 2 and k.getppid(k.fork(a)) == 2


def test_unshare_newuser_needs_a_single_thread_newpid_does_not() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    assert errno_of(k.unshare, a, cf.NEWUSER) == "EINVAL"
    assert errno_of(k.unshare, t, cf.NEWUSER | cf.NEWPID) == "EINVAL"
    k.unshare(a, cf.NEWPID)
    k.exit_thread(t, 0)
    k.unshare(a, cf.NEWUSER)  # alone again
    b = k.fork(k.init)
    u = k.clone_thread(b)
    k.exit_thread(b, 0)  # the leader is a zombie thread, still on the group's list
    assert errno_of(k.unshare, u, cf.NEWUSER) == "EINVAL"


def test_3_8_unshare_newpid_implies_clone_thread_so_a_threaded_caller_gets_einval() -> None:
    k = Kernel(profile="3.8")
    a = k.fork(k.init)
    t = k.clone_thread(a)
    assert errno_of(k.unshare, a, cf.NEWPID) == "EINVAL"
    k.exit_thread(t, 0)
    k.unshare(a, cf.NEWPID)
    assert errno_of(k.clone_thread, a) == "EINVAL"  # 3.8 refuses CLONE_VM then


def test_an_inits_leader_exits_while_a_thread_lives_the_namespace_lives_on() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    t = k.clone_thread(init)
    child = k.fork(init)
    k.exit_thread(init, 7)
    assert state(init) is TaskState.RUNNING and init.leader_exited
    with pytest.raises(ValueError):
        k.getpid(k.fork(init))  # the leader makes no more calls
    c = k.fork(t)
    assert k.getpid(c) == 4 and k.getppid(c) == 1
    grandchild = k.fork(c)
    k.exit(c, 0)
    assert k.getppid(grandchild) == 1  # orphans still go to the init
    k.kill(grandchild, 1, 0)  # pid 1 still answers
    assert k.wait(t, c) is not None
    k.exit_thread(t, 3)  # the last thread: the group exits with its code
    assert state(child) is TaskState.ZOMBIE or state(child) is TaskState.REAPED
    result = k.wait(a, init)
    assert result is not None and result.describe() == "exited 3"


def test_exit_group_ends_every_thread_and_frees_their_numbers() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    tid = k.gettid(t)
    k.exit(t, 4)  # _exit from any thread
    assert not t.alive and k.find(k.root_ns, tid) is None
    result = k.wait(k.init, a)
    assert result is not None and result.describe() == "exited 4"


def test_a_fatal_signal_to_a_tid_kills_the_whole_group() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    k.kill(k.init, k.gettid(t), signals.KILL)
    assert state(a) is TaskState.ZOMBIE and not t.alive


def test_exec_from_a_non_leader_thread_takes_the_leaders_pid() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    k.clone_thread(a)
    tid = k.gettid(t)
    k.unshare(t, cf.NEWPID)
    k.sigaction(a, signals.number("USR1"), Disposition.CATCH)
    k.execve(t)
    assert a.threads is None and not a.leader_exited
    assert k.getpid(a) == 2 and k.find(k.root_ns, tid) is None
    assert k.getpid(k.fork(a)) == 1  # the exec'ing thread's nsproxy is the group's now
    assert a.disposition(signals.number("USR1")) == 0  # handlers reset to SIG_DFL


def test_any_thread_waits_for_the_groups_children() -> None:
    k = Kernel()
    a = k.fork(k.init)
    t = k.clone_thread(a)
    child = k.fork(a)
    with pytest.raises(WouldBlock):
        k.wait(t, child)
    k.exit(child, 5)
    result = k.wait(t, None)
    assert result is not None and result.describe() == "exited 5"
    orphan_maker = k.clone_thread(a)
    grandchild = k.fork(orphan_maker)
    k.exit_thread(orphan_maker, 0)  # its children stay with the group
    assert k.getppid(grandchild) == k.getpid(a)


def test_the_zap_kills_threaded_processes_and_waits_for_their_numbers() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    k.clone_thread(init)
    member = k.fork(init)
    mt = k.clone_thread(member)
    k.exit(init, 0)
    assert not mt.alive and state(member) is TaskState.REAPED
    assert init.ns.allocated == 1 and state(init) is TaskState.ZOMBIE


def test_clone_thread_flag_rules() -> None:
    k = Kernel()
    a = k.fork(k.init)
    assert errno_of(k.clone_thread, a, cf.THREAD | cf.VM) == "EINVAL"  # no SIGHAND
    assert errno_of(k.clone_thread, a, cf.THREAD | cf.SIGHAND) == "EINVAL"  # no VM
    with pytest.raises(ValueError):
        k.clone(a, cf.THREAD | cf.SIGHAND | cf.VM)
    with pytest.raises(ValueError):
        k.clone_thread(a, cf.VM)


def test_exec_forgets_what_the_old_program_caught_and_makes_a_setuid_process_dumpable() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    usr1 = signals.number("USR1")
    k.sigaction(b, usr1, Disposition.CATCH)
    k.kill(a, k.getpid(b), usr1)
    k.run_handlers()
    k.setuid(b, 1000)
    assert not b.dumpable  # kernel/cred.c:commit_creds
    k.execve(b)
    assert k.caught(b) == [] and b.dumpable  # fs/exec.c:begin_new_exec
    assert b.disposition(usr1) is Disposition.DEFAULT
