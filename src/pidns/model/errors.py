"""The model's exceptions: one for failed system calls, two for calls it cannot finish."""

from __future__ import annotations

from pidns.core.errnos import SyscallError

KernelError = SyscallError
"""A failing system call; ``.errno`` carries the kernel's errno (``.name``: ``"EINVAL"``)."""


class WouldBlock(Exception):
    """The call would sleep: ``wait`` without WNOHANG while children live and none is a zombie."""


class Unmodeled(Exception):
    """The call reaches something the model deliberately leaves out (threads sharing a
    thread group, pid numbers in namespaces above the model's root). Never a silent guess."""
