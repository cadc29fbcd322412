"""The flag rules of copy_process that need no caller state (pidns.core.copy_process):
one function for the model and the launcher, and each rule as the kernel answers it."""

from __future__ import annotations

import errno

import pytest

from pidns.core import flags as cf
from pidns.core.copy_process import copy_process_refusal
from pidns.linux import syscalls
from pidns.model import Kernel, KernelError

REFUSED = [
    cf.NEWNS | cf.FS,
    cf.NEWUSER | cf.FS,
    cf.THREAD,
    cf.THREAD | cf.VM,
    cf.SIGHAND,
    cf.THREAD | cf.SIGHAND | cf.VM | cf.NEWPID,
    cf.THREAD | cf.SIGHAND | cf.VM | cf.NEWUSER,
]
ACCEPTED = [0, cf.NEWPID, cf.NEWNS, cf.FS, cf.NEWUSER, cf.VM, cf.SIGHAND | cf.VM, cf.PARENT]


@pytest.mark.parametrize(
    "flags", REFUSED, ids=cf.format_flags if hasattr(cf, "format_flags") else None
)
def test_each_rule_refuses_its_words_on_the_model_and_on_the_kernel(flags: int) -> None:
    assert copy_process_refusal(flags) is not None
    kernel = Kernel()
    make = kernel.clone_thread if flags & cf.THREAD else kernel.clone
    with pytest.raises(KernelError) as refused:
        make(kernel.fork(kernel.init), flags)
    assert refused.value.errno == errno.EINVAL
    # the launcher passes such a word to the kernel, which answers EINVAL before any
    # task exists (no Python child is made)
    with pytest.raises(OSError) as real:
        syscalls.clone(flags)
    assert real.value.errno == errno.EINVAL


@pytest.mark.parametrize("flags", ACCEPTED)
def test_words_no_rule_refuses(flags: int) -> None:
    assert copy_process_refusal(flags) is None
