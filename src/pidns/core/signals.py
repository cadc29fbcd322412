"""Signal numbers, names without the SIG prefix, and the kernel's default actions."""

from __future__ import annotations

import enum
import signal as _signal


def number(text: str) -> int:
    """``"KILL"`` or ``"SIGKILL"`` or ``"9"`` -> 9. Raises ValueError."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if 0 < value < _signal.NSIG:
            return value
        raise ValueError(f"signal number out of range: {text}")
    key = text.upper()
    if not key.startswith("SIG"):
        key = "SIG" + key
    try:
        return int(_signal.Signals[key])
    except KeyError:
        raise ValueError(f"unknown signal {text!r}") from None


def name(num: int) -> str:
    """9 -> ``"KILL"``; a real-time signal -> ``"RTMIN+3"``."""
    try:
        return _signal.Signals(num).name.removeprefix("SIG")
    except ValueError:
        rtmin = int(_signal.SIGRTMIN)
        if rtmin <= num <= int(_signal.SIGRTMAX):
            return f"RTMIN+{num - rtmin}"
        return str(num)


class Action(enum.Enum):
    """The kernel's default action for a signal (include/linux/signal.h: sig_kernel_*)."""

    TERMINATE = "terminate"
    COREDUMP = "coredump"
    IGNORE = "ignore"
    STOP = "stop"
    CONTINUE = "continue"


KILL = int(_signal.SIGKILL)
STOP = int(_signal.SIGSTOP)
CHLD = int(_signal.SIGCHLD)
CONT = int(_signal.SIGCONT)
HUP = int(_signal.SIGHUP)

_IGNORED = {int(_signal.SIGCHLD), int(_signal.SIGURG), int(_signal.SIGWINCH)}
_STOPPING = {int(_signal.SIGSTOP), int(_signal.SIGTSTP), int(_signal.SIGTTIN), int(_signal.SIGTTOU)}
_COREDUMP = {
    int(s)
    for s in (
        _signal.SIGQUIT,
        _signal.SIGILL,
        _signal.SIGTRAP,
        _signal.SIGABRT,
        _signal.SIGBUS,
        _signal.SIGFPE,
        _signal.SIGSEGV,
        _signal.SIGSYS,
        _signal.SIGXCPU,
        _signal.SIGXFSZ,
    )
}


def default_action(num: int) -> Action:
    if num in _IGNORED:
        return Action.IGNORE
    if num in _STOPPING:
        return Action.STOP
    if num == CONT:
        return Action.CONTINUE
    if num in _COREDUMP:
        return Action.COREDUMP
    return Action.TERMINATE
