"""Syslog lines in PAM's own format: ``pam_pidns(SERVICE:session): message``.

Linux-PAM's pam_syslog writes ``MODULE(SERVICE:TYPE): ...`` at facility LOG_AUTHPRIV and
never calls openlog(), because the ident and options belong to the login program (sshd, su,
login) that loaded the module. Python's ``syslog`` module would call openlog() behind the
program's back on first use, so this calls libc's syslog(3) directly through ctypes.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

LOG_ERR = 3
LOG_WARNING = 4
LOG_INFO = 6
LOG_DEBUG = 7
LOG_AUTHPRIV = 10 << 3

_libc = ctypes.CDLL(None, use_errno=True)


def syslog(priority: int, text: str) -> None:
    """One line at facility LOG_AUTHPRIV; never raises (logging must not fail a login)."""
    line = text.replace("\n", " ").encode("utf-8", "replace")
    try:
        _libc.syslog(ctypes.c_int(LOG_AUTHPRIV | priority), b"%s", line)
    except Exception:  # pragma: no cover - only if libc's syslog symbol were missing
        return


class Log:
    """The module's log for one PAM call: errors always, details with ``debug``."""

    def __init__(
        self,
        service: str,
        kind: str = "session",
        *,
        debug: bool = False,
        sink: Callable[[int, str], None] = syslog,
    ) -> None:
        self.prefix = f"pam_pidns({service}:{kind}): "
        self.debug_enabled = debug
        self.sink = sink

    def error(self, text: str) -> None:
        self.sink(LOG_ERR, self.prefix + text)

    def warning(self, text: str) -> None:
        self.sink(LOG_WARNING, self.prefix + text)

    def info(self, text: str) -> None:
        self.sink(LOG_INFO, self.prefix + text)

    def debug(self, text: str) -> None:
        if self.debug_enabled:
            self.sink(LOG_DEBUG, self.prefix + text)
