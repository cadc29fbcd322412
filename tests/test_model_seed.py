"""The seed's own scenario first: "pidns: Support unsharing the pid namespace" (v3.8).

unshare(CLONE_NEWPID) does not move the caller; its first child is pid 1 of the new
namespace; later children are "oddball children of pid 0"; the creator reaps them.
Both profiles must tell this story the same way.
"""

from __future__ import annotations

import errno

import pytest

from model_helpers import state
from pidns.core import flags as cf
from pidns.model import Kernel, KernelError, Task, TaskState


@pytest.fixture(params=["6.18", "3.8"])
def kernel(request: pytest.FixtureRequest) -> Kernel:
    return Kernel(profile=request.param, root_level=1)


def login(kernel: Kernel) -> Task:
    """A login program: the world's init forks it, as pid 2."""
    return kernel.fork(kernel.init)


def test_unshare_changes_only_the_namespace_for_children(kernel: Kernel) -> None:
    a = login(kernel)
    ns_before = a.ns
    kernel.unshare(a, cf.NEWPID)
    assert a.ns is ns_before
    assert kernel.getpid(a) == 2
    assert a.children_ns is not a.ns
    assert a.children_ns.parent is a.ns


def test_second_unshare_is_einval_until_the_caller_resets(kernel: Kernel) -> None:
    a = login(kernel)
    kernel.unshare(a, cf.NEWPID)
    with pytest.raises(KernelError) as err:
        kernel.unshare(a, cf.NEWPID)
    assert err.value.errno == errno.EINVAL
    kernel.setns(a, a)  # setns to its own active namespace resets pid_for_children
    kernel.unshare(a, cf.NEWPID)


def test_first_child_is_init_later_children_are_oddballs(kernel: Kernel) -> None:
    a = login(kernel)
    kernel.unshare(a, cf.NEWPID)
    b = kernel.fork(a)
    c = kernel.fork(a)
    assert (kernel.getpid(b), kernel.getppid(b)) == (1, 0)
    assert (kernel.getpid(c), kernel.getppid(c)) == (2, 0)
    assert b.children_ns is b.ns  # a child's pid_for_children is its own active ns
    assert kernel.pid_seen_by(b, a) == 0  # the creator is pid 0 from inside
    # the creator sees and reaps them with its own numbers
    assert kernel.pid_seen_by(a, b) == kernel.nspid(b)[0]
    assert kernel.nspid(b) == (3, 1)
    assert kernel.nspid(c) == (4, 2)
    assert b.ns.child_reaper is b


def test_the_login_flow_end_to_end(kernel: Kernel) -> None:
    a = login(kernel)
    kernel.unshare(a, cf.NEWPID)
    b = kernel.fork(a)  # the shell: pid 1 of the session's namespace
    c = kernel.fork(a)  # an oddball child of pid 0
    kernel.exit(b, 0)  # logout
    assert state(b) is TaskState.EXITING  # waits until its namespace is empty
    assert state(c) is TaskState.ZOMBIE  # killed, waiting for its outside parent
    assert kernel.wait(a, b, nohang=True) is None
    killed = kernel.wait(a, c)
    assert killed is not None and killed.describe() == "killed KILL"
    assert state(b) is TaskState.ZOMBIE
    done = kernel.wait(a, b)
    assert done is not None and done.describe() == "exited 0"
    with pytest.raises(KernelError) as err:
        kernel.fork(a)  # the namespace is dead
    assert err.value.errno == errno.ENOMEM


def test_nothing_a_session_started_survives_logout(kernel: Kernel) -> None:
    a = login(kernel)
    kernel.unshare(a, cf.NEWPID)
    shell = kernel.fork(a)
    job = kernel.fork(shell)
    daemon = kernel.fork(job)
    kernel.setsid(daemon)
    kernel.exit(job, 0)  # the daemon is orphaned: the shell (pid 1) adopts it
    assert daemon.parent is shell and kernel.getppid(daemon) == 1
    kernel.exit(shell, 0)
    assert state(daemon) is TaskState.REAPED and job.state is TaskState.REAPED
    result = kernel.wait(a)
    assert result is not None and result.child is shell
    assert all(t.ns is a.ns for t in kernel.live_tasks())
