"""PAM return codes and flags (Linux-PAM's security/_pam_types.h), as numbers.

pam_python also exposes them on its handle (``pamh.PAM_SESSION_ERR``); the module uses
these so that the session logic and ``pidns login-test`` share one table without PAM.
"""

from __future__ import annotations

PAM_SUCCESS = 0
PAM_OPEN_ERR = 1
PAM_SYMBOL_ERR = 2
PAM_SERVICE_ERR = 3
PAM_SYSTEM_ERR = 4
PAM_BUF_ERR = 5
PAM_PERM_DENIED = 6
PAM_USER_UNKNOWN = 10
PAM_SESSION_ERR = 14
PAM_CONV_ERR = 19
PAM_IGNORE = 25
PAM_ABORT = 26

# struct pam_message.msg_style
PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_ERROR_MSG = 3  # any other style (PAM_TEXT_INFO, 4) is printed to stdout

NAMES = {
    PAM_SUCCESS: "PAM_SUCCESS",
    PAM_OPEN_ERR: "PAM_OPEN_ERR",
    PAM_SYMBOL_ERR: "PAM_SYMBOL_ERR",
    PAM_SERVICE_ERR: "PAM_SERVICE_ERR",
    PAM_SYSTEM_ERR: "PAM_SYSTEM_ERR",
    PAM_BUF_ERR: "PAM_BUF_ERR",
    PAM_PERM_DENIED: "PAM_PERM_DENIED",
    PAM_USER_UNKNOWN: "PAM_USER_UNKNOWN",
    PAM_SESSION_ERR: "PAM_SESSION_ERR",
    PAM_CONV_ERR: "PAM_CONV_ERR",
    PAM_IGNORE: "PAM_IGNORE",
    PAM_ABORT: "PAM_ABORT",
}


def name(code: int) -> str:
    """``14`` -> ``"PAM_SESSION_ERR"``."""
    return NAMES.get(code, f"PAM error {code}")
