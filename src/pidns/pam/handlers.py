"""The PAM entry points, in the shape pam_python (libpam-python) calls them.

pam_python calls ``pam_sm_open_session(pamh, flags, argv)``: ``pamh`` is its handle object
(``pamh.user``, ``pamh.service``, ``pamh.pamh`` the C handle's address, the PAM_* codes),
``flags`` PAM's int flags, ``argv`` the words of the PAM line after ``pam_python.so``, the
first being this module's own path. It expects an int back; an exception would reach syslog
only as a traceback and become PAM_SERVICE_ERR, so everything is caught here and becomes one
log line and PAM_SESSION_ERR.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pidns.pam import session
from pidns.pam.codes import PAM_SESSION_ERR
from pidns.pam.log import Log
from pidns.pam.options import OptionError, Options, parse


class PamHandle(Protocol):
    """The part of pam_python's handle object this module uses."""

    @property
    def user(self) -> str | None: ...

    @property
    def service(self) -> str | None: ...

    @property
    def pamh(self) -> int: ...


def open_session(pamh: PamHandle, flags: int, argv: Sequence[str]) -> int:
    log, options = _setup(pamh, argv, "session refused")
    if options is None:
        return PAM_SESSION_ERR
    try:
        user = pamh.user
        if not user:
            log.error("PAM_USER is not set; session refused")
            return PAM_SESSION_ERR
        return session.open_session(pamh.pamh, user, options, log)
    except Exception as error:
        log.error(f"internal error: {type(error).__name__}: {error}; session refused")
        return PAM_SESSION_ERR


def close_session(pamh: PamHandle, flags: int, argv: Sequence[str]) -> int:
    log, options = _setup(pamh, argv, "nothing to undo")
    if options is None:
        return PAM_SESSION_ERR
    try:
        return session.close_session(pamh.pamh, log)
    except Exception as error:
        log.error(f"internal error: {type(error).__name__}: {error}")
        return PAM_SESSION_ERR


def _setup(pamh: PamHandle, argv: Sequence[str], outcome: str) -> tuple[Log, Options | None]:
    try:
        service = pamh.service or "?"
    except Exception:
        service = "?"
    log = Log(service)
    try:
        options = parse(list(argv[1:]))
    except OptionError as error:
        log.error(f"{error}; {outcome}")
        return log, None
    log.debug_enabled = options.debug
    return log, options
