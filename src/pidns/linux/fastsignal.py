"""The signal module's functions and constants, without its enums.

``import signal`` imports ``enum`` to wrap every constant: about 5 ms, a sixth of a
whole ``pidns run -- true``. The C module underneath, ``_signal``, has the same
functions with plain int constants, so the start-up path of ``pidns run`` imports
this instead. Type checkers see the ``signal`` module's own signatures.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_IGN,
        SIG_SETMASK,
        SIG_UNBLOCK,
        SIGCHLD,
        SIGCONT,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGPIPE,
        SIGSTOP,
        SIGTERM,
        SIGTSTP,
        SIGTTIN,
        SIGTTOU,
        SIGXFSZ,
        getsignal,
        pidfd_send_signal,
        pthread_sigmask,
        signal,
        valid_signals,
    )
else:
    from _signal import (
        SIG_BLOCK,
        SIG_DFL,
        SIG_IGN,
        SIG_SETMASK,
        SIG_UNBLOCK,
        SIGCHLD,
        SIGCONT,
        SIGHUP,
        SIGINT,
        SIGKILL,
        SIGPIPE,
        SIGSTOP,
        SIGTERM,
        SIGTSTP,
        SIGTTIN,
        SIGTTOU,
        SIGXFSZ,
        getsignal,
        pidfd_send_signal,
        pthread_sigmask,
        signal,
        valid_signals,
    )

__all__ = [
    "SIGCHLD",
    "SIGCONT",
    "SIGHUP",
    "SIGINT",
    "SIGKILL",
    "SIGPIPE",
    "SIGSTOP",
    "SIGTERM",
    "SIGTSTP",
    "SIGTTIN",
    "SIGTTOU",
    "SIGXFSZ",
    "SIG_BLOCK",
    "SIG_DFL",
    "SIG_IGN",
    "SIG_SETMASK",
    "SIG_UNBLOCK",
    "getsignal",
    "pidfd_send_signal",
    "pthread_sigmask",
    "signal",
    "valid_signals",
]
