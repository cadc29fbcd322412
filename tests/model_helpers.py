"""Small builders shared by the model's tests."""

from __future__ import annotations

import errno

import pytest

from pidns.core import flags as cf
from pidns.model import Kernel, KernelError, Task, TaskState


def errno_of(call: object, *args: object, **kwargs: object) -> str:
    """Run a model syscall and return the errno name it fails with."""
    assert callable(call)
    with pytest.raises(KernelError) as err:
        call(*args, **kwargs)
    return errno.errorcode[err.value.errno or 0]


def new_ns_init(kernel: Kernel, creator: Task) -> Task:
    """clone(CLONE_NEWPID): the child is pid 1 of a fresh namespace."""
    return kernel.clone(creator, cf.NEWPID)


def unprivileged(kernel: Kernel, task: Task) -> Task:
    kernel.setuid(task, 65534)
    return task


def state(task: Task) -> TaskState:
    """The task's state, read fresh (keeps type checkers from narrowing across calls)."""
    return task.state
