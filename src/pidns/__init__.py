"""pidns: Linux PID namespaces, in Python.

- ``pidns.model``: an executable model of the kernel's pid-namespace subsystem.
- ``pidns.linux``: the real kernel (syscalls, the pid-1 init, the launcher).
- ``pidns.run`` / ``pidns.Popen`` (and ``call``, ``check_output``, ``PIPE``...): run a
  command in a fresh pid namespace, as subprocess's; ``pidns.asyncio`` for asyncio.

The package imports nothing heavy at start-up: ``run`` and ``Popen`` load on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Not ``typing.TYPE_CHECKING``: importing typing costs every ``pidns run`` milliseconds;
# type checkers treat any constant of this name the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pidns.api import (
        DEVNULL,
        PIPE,
        STDOUT,
        CalledProcessError,
        CompletedProcess,
        Popen,
        SetupError,
        TimeoutExpired,
        call,
        check_call,
        check_output,
        run,
    )

__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "CalledProcessError",
    "CompletedProcess",
    "Popen",
    "SetupError",
    "TimeoutExpired",
    "__version__",
    "call",
    "check_call",
    "check_output",
    "run",
]
_LAZY = dict.fromkeys((name for name in __all__ if name != "__version__"), "pidns.api")


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'pidns' has no attribute {name!r}")
    return getattr(__import__(module, fromlist=[name]), name)  # importlib costs start-up
