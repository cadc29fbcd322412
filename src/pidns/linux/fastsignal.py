"""The signal module's functions and constants, without its enums.

``import signal`` imports ``enum`` to wrap every constant: about 5 ms, a sixth of a
whole ``pidns run -- true``. The C module underneath, ``_signal``, has the same
functions with plain int constants, so the start-up path of ``pidns run`` imports
this instead. Type checkers see the ``signal`` module's own signatures.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal as _module
else:
    import _signal as _module

SIGCHLD = _module.SIGCHLD
SIGCONT = _module.SIGCONT
SIGHUP = _module.SIGHUP
SIGINT = _module.SIGINT
SIGKILL = _module.SIGKILL
SIGPIPE = _module.SIGPIPE
SIGSTOP = _module.SIGSTOP
SIGTERM = _module.SIGTERM
SIGTSTP = _module.SIGTSTP
SIGTTIN = _module.SIGTTIN
SIGTTOU = _module.SIGTTOU
SIGXFSZ = _module.SIGXFSZ
SIG_BLOCK = _module.SIG_BLOCK
SIG_DFL = _module.SIG_DFL
SIG_IGN = _module.SIG_IGN
SIG_SETMASK = _module.SIG_SETMASK
SIG_UNBLOCK = _module.SIG_UNBLOCK
getsignal = _module.getsignal
pidfd_send_signal = _module.pidfd_send_signal
pthread_sigmask = _module.pthread_sigmask
signal = _module.signal
valid_signals = _module.valid_signals
