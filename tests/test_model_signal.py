"""Signals across namespaces, init protection, si_pid, sessions (docs/rules.md sections H, F)."""

from __future__ import annotations

import signal

from model_helpers import errno_of, new_ns_init, state, unprivileged
from pidns.model import Disposition, Kernel, TaskState

KILL, TERM, STOP, USR1, USR2, CHLD = 9, 15, 19, 10, 12, 17


def test_init_drops_default_signals_from_inside() -> None:  # H1; LTP pidns04
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    member = k.fork(init)
    for signo in (KILL, TERM, STOP):
        k.kill(member, 1, signo)  # returns 0 ...
    k.kill(init, 1, KILL)  # ... and the init cannot kill itself either
    assert state(init) is TaskState.RUNNING and not init.stopped


def test_init_gets_handled_signals_with_si_pid_translated() -> None:  # H1; LTP pidns16
    k = Kernel()
    parent = k.fork(k.init)
    init = new_ns_init(k, parent)
    member = k.fork(init)
    k.sigaction(init, USR1, Disposition.CATCH)
    k.kill(member, 1, USR1)
    k.run_handlers()  # the init runs its handler before the next one arrives
    k.kill_task(parent, init, USR1)  # from the parent namespace: si_pid 0 (LTP pidns12)
    k.kill(init, 1, USR1)  # from itself (it runs, so the last one was handled): si_pid 1
    assert k.caught(init) == [(USR1, 2), (USR1, 0), (USR1, 1)]
    assert k.caught(init) == []


def test_signals_of_one_number_merge_until_the_handler_runs() -> None:
    k = Kernel()
    parent = k.fork(k.init)
    k.sigaction(parent, USR1, Disposition.CATCH)
    a, b = k.fork(parent), k.fork(parent)
    k.kill_task(a, parent, USR1)
    k.kill_task(b, parent, USR1)  # still pending: merges (legacy_queue)
    assert k.caught_candidates(parent) == [(USR1, (k.getpid(a), k.getpid(b)))]
    k.kill_task(a, parent, USR1)
    k.run_handlers()
    k.kill_task(b, parent, USR1)
    assert k.caught(parent) == [(USR1, k.getpid(a)), (USR1, k.getpid(b))]


def test_from_an_ancestor_only_kill_and_stop_are_forced() -> None:  # H1; LTP ioctl_pidfd04
    k = Kernel()
    parent = k.fork(k.init)
    init = new_ns_init(k, parent)
    k.kill_task(parent, init, TERM)
    assert state(init) is TaskState.RUNNING
    k.kill_task(parent, init, STOP)
    assert init.stopped
    k.kill_task(parent, init, KILL)
    assert state(init) is TaskState.ZOMBIE


def test_kill_minus_one_from_a_lone_init_is_esrch() -> None:  # H2; LTP pidns10
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    assert errno_of(k.kill, init, -1, KILL) == "ESRCH"


def test_kill_minus_one_reaches_everyone_else_below() -> None:  # H2; LTP pidns17
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    kids = [k.fork(init) for _ in range(10)]
    nested = new_ns_init(k, kids[0])
    k.kill(init, -1, USR1)
    assert all(c.state is TaskState.ZOMBIE for c in kids)
    assert state(nested) is TaskState.RUNNING  # a nested init with SIG_DFL drops USR1
    assert nested.parent is init  # its parent died: the namespace's init adopted it
    statuses = {r.describe() for c in kids if (r := k.wait(init, c)) is not None}
    assert statuses == {"killed USR1"}
    k.kill(init, -1, KILL)  # H1: SIGKILL from an ancestor kills a nested init
    assert state(nested) is TaskState.ZOMBIE


def test_a_member_kill_minus_one_spares_init_and_itself() -> None:  # H2
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    a, b = k.fork(init), k.fork(init)
    k.sigaction(init, TERM, Disposition.CATCH)  # a handler does not make init a target
    k.kill(a, -1, TERM)
    assert state(b) is TaskState.ZOMBIE and a.state is TaskState.RUNNING
    assert k.caught(init) == []


def test_pids_outside_do_not_resolve() -> None:  # H3; LTP pidns06
    k = Kernel()
    parent = k.fork(k.init)
    init = new_ns_init(k, parent)
    assert errno_of(k.kill, init, k.getpid(parent), KILL) == "ESRCH"
    assert errno_of(k.kill_task, init, parent, KILL) == "ESRCH"


def test_signals_from_an_ancestor_carry_si_pid_0() -> None:  # H5
    k = Kernel()
    parent = k.fork(k.init)
    init = new_ns_init(k, parent)
    member = k.fork(init)
    k.sigaction(member, USR2, Disposition.CATCH)
    k.kill_task(parent, member, USR2)
    k.run_handlers()
    k.kill_task(init, member, USR2)
    assert k.caught(member) == [(USR2, 0), (USR2, 1)]


def test_group_kill_crosses_namespaces_and_keeps_the_senders_own_pid() -> None:  # H4
    k = Kernel()
    creator = k.fork(k.init)
    k.setsid(creator)
    k.sigaction(creator, USR2, Disposition.CATCH)
    init = new_ns_init(k, creator)  # still in the creator's process group
    assert k.getpgid(init) == 0 and k.getsid(init) == 0  # F2; LTP pidns02
    k.kill(init, 0, USR2)
    assert k.caught(creator) == [(USR2, 1)]  # not translated: the sender's own pid
    assert state(init) is TaskState.RUNNING  # the init dropped its own copy (SIG_DFL)


def test_sessions_inside_a_new_namespace() -> None:  # F2; LTP pidns02
    k = Kernel()
    init = new_ns_init(k, k.fork(k.init))
    assert (k.getsid(init), k.getpgid(init)) == (0, 0)
    assert k.setsid(init) == 1
    assert (k.getsid(init), k.getpgid(init)) == (1, 1)
    assert errno_of(k.setsid, init) == "EPERM"  # now a group leader


def test_sigchld_carries_the_childs_pid_in_the_parents_namespace() -> None:  # I4; LTP clone301
    k = Kernel()
    parent = k.fork(k.init)
    k.sigaction(parent, CHLD, Disposition.CATCH)
    init = new_ns_init(k, parent)
    k.exit(init, 0)
    assert k.caught(parent) == [(CHLD, k.pid_in(init, parent.ns))]


def test_kill_needs_permission() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = unprivileged(k, k.fork(k.init))
    assert errno_of(k.kill_task, b, a, TERM) == "EPERM"
    k.kill_task(a, b, 0)  # root may signal anyone
    c = k.fork(b)
    k.kill_task(b, c, TERM)  # same uid
    assert state(c) is TaskState.ZOMBIE


def test_kill_and_stop_cannot_be_caught() -> None:
    k = Kernel()
    assert errno_of(k.sigaction, k.init, KILL, Disposition.CATCH) == "EINVAL"
    assert errno_of(k.sigaction, k.init, STOP, Disposition.IGNORE) == "EINVAL"


def test_default_actions() -> None:
    k = Kernel()
    a = k.fork(k.init)
    kids = {signo: k.fork(a) for signo in (int(signal.SIGSEGV), CHLD, int(signal.SIGWINCH))}
    for signo, child in kids.items():
        k.kill_task(a, child, signo)
    assert state(kids[int(signal.SIGSEGV)]) is TaskState.ZOMBIE
    assert state(kids[CHLD]) is TaskState.RUNNING
    assert state(kids[int(signal.SIGWINCH)]) is TaskState.RUNNING


def test_a_stopped_task_acts_on_signals_only_when_continued() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    k.sigaction(b, USR1, Disposition.CATCH)
    k.kill_task(a, b, STOP)
    k.kill_task(a, b, USR2)  # fatal, but pending while stopped
    k.kill_task(a, b, USR1)
    assert state(b) is TaskState.RUNNING and b.stopped
    k.kill_task(a, b, 18)  # SIGCONT: pending signals are taken, lowest number first
    assert state(b) is TaskState.ZOMBIE
    assert b.caught == [(USR1, (k.getpid(a),))]  # USR1 (10) was taken before USR2 (12)
    result = k.wait(a, b)
    assert result is not None and result.describe() == "killed USR2"


def test_sigkill_ends_a_stopped_task_at_once() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    k.kill_task(a, b, STOP)
    k.kill_task(a, b, KILL)
    assert state(b) is TaskState.ZOMBIE


def test_one_siginfo_is_shared_by_every_target_of_a_group_kill() -> None:
    # found by random scenarios on 6.18.44: once a target cannot see the sender, the
    # shared siginfo's si_pid stays 0 for the targets after it (newest member first)
    k = Kernel()
    a = k.fork(k.init)
    k.setsid(a)
    k.sigaction(a, USR2, Disposition.IGNORE)
    k.clone(a, 0x20000000)  # CLONE_NEWPID: an older member that cannot see a
    b = k.fork(a)
    k.sigaction(b, USR2, Disposition.CATCH)
    k.kill(a, 0, USR2)
    assert k.caught(b) == [(USR2, k.getpid(a))]  # b came first
    late = k.clone(a, 0x20000000)
    k.kill(a, 0, USR2)
    assert late.pgrp_joined > b.pgrp_joined
    assert k.caught(b) == [(USR2, 0)]  # the new member was first, and zeroed it


def test_a_group_orphaned_with_a_stopped_member_gets_hup_then_cont() -> None:  # H6
    k = Kernel()
    leader = k.fork(k.init)  # the session: root's; leader leaves root's group
    child = k.fork(leader)
    k.setpgid(leader, 0, 0)
    k.sigaction(child, signal.SIGHUP, Disposition.CATCH)
    k.kill_task(leader, child, STOP)
    k.exit(leader, 0)  # child goes to root, in child's own group: orphaned
    assert not child.stopped and k.caught(child) == [(signal.SIGHUP, 0)]


def test_an_orphaned_group_with_nobody_stopped_gets_nothing() -> None:  # H6
    k = Kernel()
    leader = k.fork(k.init)
    child = k.fork(leader)
    k.setpgid(leader, 0, 0)
    k.sigaction(child, signal.SIGHUP, Disposition.CATCH)
    k.exit(leader, 0)
    assert state(child) is TaskState.RUNNING and k.caught(child) == []


def test_a_group_still_linked_through_a_parent_in_the_session_gets_nothing() -> None:  # H6
    k = Kernel()
    parent = k.fork(k.init)  # in root's group
    member = k.fork(parent)
    k.setpgid(member, 0, 0)  # its own group, linked by parent (another group, same session)
    stopped = k.fork(member)
    k.kill_task(parent, stopped, STOP)
    k.exit(member, 0)  # stopped goes to root: root's group, same session: still linked
    assert stopped.stopped and state(stopped) is TaskState.RUNNING
