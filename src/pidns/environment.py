"""The environment variables pidns reads: the one place that reads them.

``VARIABLES`` documents each (the man pages' ENVIRONMENT section is generated from it);
the functions below read them. An option given on the command line wins over its
variable. A value that cannot be used is a usage error (exit status 2), never ignored.
"""

from __future__ import annotations

import os

# name -> (the commands it applies to, what it means)
VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "PIDNS_GRACE": (
        ("run", "stop"),
        "the default for --grace: seconds between the SIGTERM of a shutdown and its SIGKILL",
    ),
    "PIDNS_VERBOSE": (
        ("run",),
        "the default for --verbose when set to 1 (0 or empty: quiet)",
    ),
    "PIDNS_FALLBACK": (
        ("run",),
        "the default for --fallback: fail or subreaper",
    ),
    "XDG_RUNTIME_DIR": (
        ("run", "exec", "ls", "stop"),
        "named namespaces are recorded in $XDG_RUNTIME_DIR/pidns (/run/pidns when unset)",
    ),
}


def grace() -> float | None:
    """PIDNS_GRACE as seconds (None when unset or empty); ValueError if not a number >= 0."""
    text = os.environ.get("PIDNS_GRACE", "")
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"PIDNS_GRACE must be a number of seconds >= 0, not {text!r}")
    return value


def verbose() -> bool:
    """PIDNS_VERBOSE: 1 is on; 0 or empty (or unset) is off; ValueError for anything else."""
    text = os.environ.get("PIDNS_VERBOSE", "")
    if text not in ("", "0", "1"):
        raise ValueError(f"PIDNS_VERBOSE must be 0 or 1, not {text!r}")
    return text == "1"


def fallback() -> str | None:
    """PIDNS_FALLBACK, or None when unset or empty (launcher.Options checks the value)."""
    return os.environ.get("PIDNS_FALLBACK") or None


def runtime_dir() -> str:
    """Where named namespaces are recorded: $XDG_RUNTIME_DIR/pidns, or /run/pidns."""
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if not os.path.isabs(base):  # the XDG spec: a relative path is to be ignored
        base = "/run"
    return os.path.join(base, "pidns")
