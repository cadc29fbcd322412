"""The file pam_python.so loads: a PAM session module giving each login its own pid namespace.

    session required pam_python.so /path/to/pidns/pam/pam_pidns.py [options]

pam_python runs this file with the system's python3 (not a virtual environment) in isolated
mode, so it loads the pidns package itself, from the directory two levels up from this file
(a source tree's ``src`` or a ``site-packages``). It does not touch sys.path, which belongs
to every Python module of the login's PAM stack. Only the standard library is used. If pidns
cannot be imported, the session is refused with a log line that says why, rather than with
pam_python's bare traceback. docs/pam.md has the options and how to enable the module for
su, login and sshd.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
_IMPORT_ERROR = ""
_LOG_AUTHPRIV_ERR = (10 << 3) | 3


def _syslog(text: str) -> None:
    ctypes.CDLL(None).syslog(ctypes.c_int(_LOG_AUTHPRIV_ERR), b"%s", text.encode())


def _load_pidns() -> None:
    """Import the pidns package found in _ROOT (unless pidns is loaded already)."""
    if "pidns" in sys.modules:
        return
    spec = importlib.machinery.PathFinder.find_spec("pidns", [_ROOT])
    if spec is None or spec.loader is None:
        raise ImportError("no pidns package there")
    package = importlib.util.module_from_spec(spec)
    sys.modules["pidns"] = package
    try:
        spec.loader.exec_module(package)
    except BaseException:
        del sys.modules["pidns"]
        raise


try:
    _load_pidns()
    from pidns.pam import handlers as _handlers
except Exception as error:
    _IMPORT_ERROR = f"cannot import pidns from {_ROOT}: {type(error).__name__}: {error}"
    _syslog(f"pam_pidns: {_IMPORT_ERROR}")


def _refuse(pamh: Any) -> int:
    _syslog(f"pam_pidns({pamh.service}:session): {_IMPORT_ERROR}; session refused")
    return int(pamh.PAM_SESSION_ERR)


def pam_sm_open_session(pamh: Any, flags: int, argv: list[str]) -> int:
    if _IMPORT_ERROR:
        return _refuse(pamh)
    return _handlers.open_session(pamh, flags, argv)


def pam_sm_close_session(pamh: Any, flags: int, argv: list[str]) -> int:
    if _IMPORT_ERROR:
        return _refuse(pamh)
    return _handlers.close_session(pamh, flags, argv)
