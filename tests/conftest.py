"""Shared fixtures. Tests that need the real kernel's namespaces are marked ``real``.

The suite must not depend on the signal state it is started with: under ``nohup`` SIGHUP
is ignored, a background job of a script ignores SIGINT, a daemon may ignore SIGCHLD or
block signals, and every command a test starts inherits that as exec passes it on (pidns
included, on purpose). So the session starts from the defaults: every disposition pytest
itself does not set is SIG_DFL (SIGINT Python's KeyboardInterrupt), and nothing is blocked.
"""

from __future__ import annotations

import signal


def _default_signal_state() -> None:
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    # Python's own start-up ignores these two; subprocess restores them for its children
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # ... and turns SIGINT into KeyboardInterrupt unless it was ignored at start (a job
    # started with `&` by a non-interactive shell has SIGINT and SIGQUIT ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)


_default_signal_state()
