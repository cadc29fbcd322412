"""Pidfds in the model: open, signal, wait, setns, fdinfo and PIDFD_GET_INFO.

Each rule was checked on the running 6.18 kernel first (docs/threads-and-pidfds.md)."""

from __future__ import annotations

import pytest

from model_helpers import errno_of, new_ns_init, state
from pidns.core import flags as cf
from pidns.core import signals
from pidns.model import PIDFD_THREAD, Disposition, Kernel, TaskState, WouldBlock

USR1 = signals.number("USR1")


def test_pidfd_open_sees_what_the_caller_sees() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    assert errno_of(k.pidfd_open, init, k.getpid(a)) == "ESRCH"  # 2 inside is nobody
    assert errno_of(k.pidfd_open, a, 0) == "EINVAL"
    assert errno_of(k.pidfd_open, a, -1) == "EINVAL"
    assert errno_of(k.pidfd_open, a, k.getpid(a), 1) == "EINVAL"
    t = k.clone_thread(a)
    assert errno_of(k.pidfd_open, a, k.gettid(t)) == "ENOENT"  # a thread needs PIDFD_THREAD
    assert k.pidfd_open(a, k.gettid(t), PIDFD_THREAD).target is t


def test_a_zombie_opens_a_reaped_process_does_not() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    k.exit(b, 0)
    fd = k.pidfd_open(a, 3)
    k.pidfd_send_signal(a, fd, signals.number("TERM"))  # a zombie takes it and ignores it
    assert k.pidfd_nspid(fd) == (3,)
    k.wait(a, b)
    assert errno_of(k.pidfd_open, a, 3) == "ESRCH"
    assert errno_of(k.pidfd_send_signal, a, fd, signals.number("TERM")) == "ESRCH"
    assert k.pidfd_nspid(fd) == (-1,)
    assert errno_of(k.waitid_pidfd, a, fd) == "ECHILD"


def test_pidfd_send_signal_from_an_ancestor_has_si_pid_0_and_only_downwards() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    member = k.fork(init)
    k.sigaction(member, USR1, Disposition.CATCH)
    k.pidfd_send_signal(a, k.pidfd_open(a, k.pid_seen_by(a, member)), USR1)
    assert k.caught(member) == [(USR1, 0)]
    k.pidfd_send_signal(member, k.pidfd_open(member, 1), 0)  # its own namespace: fine
    outside = k.pidfd_open(a, k.getpid(a))
    assert errno_of(k.pidfd_send_signal, member, outside, 0) == "EINVAL"


def test_waitid_p_pidfd_waits_for_that_child_only() -> None:
    k = Kernel()
    a = k.fork(k.init)
    b = k.fork(a)
    fd = k.pidfd_open(a, k.getpid(b))
    with pytest.raises(WouldBlock):
        k.waitid_pidfd(a, fd)
    assert errno_of(k.waitid_pidfd, k.init, fd) == "ECHILD"  # not its child
    k.exit(b, 6)
    first = k.waitid_pidfd(a, fd, nowait=True)
    assert first is not None and state(b) is TaskState.ZOMBIE
    result = k.waitid_pidfd(a, fd)
    assert result is not None and result.describe() == "exited 6"


def test_setns_through_a_zombies_pidfd_is_esrch_its_ns_link_still_joins() -> None:
    k = Kernel()
    a = k.fork(k.init)
    k.unshare(a, cf.NEWPID)
    init = k.fork(a)
    fd = k.pidfd_open(a, k.pid_seen_by(a, init))
    k.exit(init, 0)
    assert state(init) is TaskState.ZOMBIE
    b = k.fork(k.init)
    assert errno_of(k.setns_pidfd, b, fd) == "ESRCH"
    k.setns(b, init)  # /proc/PID/ns/pid of a zombie opens and joins
    assert errno_of(k.fork, b) == "ENOMEM"  # a dead namespace


def test_setns_through_a_live_pidfd_joins_its_active_namespace() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    b = k.fork(k.init)
    k.setns_pidfd(b, k.pidfd_open(b, k.pid_seen_by(b, init)))
    c = k.fork(b)
    assert (k.getpid(c), k.getppid(c)) == (2, 0)
    sibling = new_ns_init(k, k.init)
    assert errno_of(k.setns_pidfd, init, k.pidfd_open(k.init, k.getpid(sibling))) == "EINVAL"
    k.setuid(b, 65534)
    assert errno_of(k.setns_pidfd, b, k.pidfd_open(k.init, k.getpid(a))) == "EPERM"


def test_clone_pidfd_and_fdinfo_relative_to_the_reading_procfs() -> None:
    k = Kernel()
    a = k.fork(k.init)
    child, fd = k.clone_pidfd(a, cf.NEWPID | cf.PIDFD)
    assert fd.target is child
    assert k.pidfd_nspid(fd) == (3, 1)
    assert k.pidfd_nspid(fd, child.ns) == (1,)
    sibling = new_ns_init(k, k.init)
    assert k.pidfd_nspid(fd, sibling.ns) == (0,)
    thread, tfd = k.clone_pidfd(a, cf.THREAD | cf.SIGHAND | cf.VM | cf.PIDFD)
    assert tfd.thread and tfd.target is thread


def test_pidfd_get_info_numbers_in_the_callers_namespace() -> None:
    k = Kernel()
    a = k.fork(k.init)
    init = new_ns_init(k, a)
    member = k.fork(init)
    assert tuple(k.pidfd_info(a, k.pidfd_open(a, k.pid_seen_by(a, member)))) == (4, 4, 3)
    assert tuple(k.pidfd_info(init, k.pidfd_open(init, 2))) == (2, 2, 1)
    assert tuple(k.pidfd_info(init, k.pidfd_open(init, 1))) == (1, 1, 0)
    sibling = new_ns_init(k, k.init)
    other = k.pidfd_open(k.init, k.getpid(a))
    assert errno_of(k.pidfd_info, sibling, other) == "EREMOTE"
    held = k.pidfd_open(init, 2)
    k.exit(member, 0)
    k.wait(init, member)
    assert errno_of(k.pidfd_info, init, held) == "ESRCH"  # reaped, no PIDFD_INFO_EXIT


def test_profiles_without_pidfds_or_with_older_answers() -> None:
    old = Kernel(profile="5.2")
    a = old.fork(old.init)
    assert errno_of(old.pidfd_open, a, 2) == "ENOSYS"
    k = Kernel(profile="6.1")
    a = k.fork(k.init)
    t = k.clone_thread(a)
    assert errno_of(k.pidfd_open, a, k.gettid(t)) == "EINVAL"
    assert errno_of(k.pidfd_open, a, k.gettid(t), PIDFD_THREAD) == "EINVAL"  # no PIDFD_THREAD
    assert errno_of(k.pidfd_info, a, k.pidfd_open(a, 2)) == "ENOTTY"
    assert errno_of(k.ns_pid_in, a, k.root_ns, 2) == "ENOTTY"
    k13 = Kernel(profile="6.13")
    sibling = new_ns_init(k13, k13.init)
    other = k13.pidfd_open(k13.init, k13.getpid(k13.fork(k13.init)))
    assert errno_of(k13.pidfd_info, sibling, other) == "ESRCH"
