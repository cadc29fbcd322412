"""The exit statuses of every ``pidns`` subcommand, and the two mappings onto them.

The one home of these numbers (documented in docs/cli.md), shared by the subcommands, the
launcher, the init and the login flow:

- a wait status becomes the shell's status: N for exit(N), 128+S for death by signal S
  (``from_wait_status``);
- an exec errno becomes the shell's 127 "not found" or 126 "found but not executable"
  (``for_exec_error``), as sh and env(1) report them (POSIX, "Command Search and
  Execution"). "Not found" is every errno of a failed path lookup (fs/namei.c:
  path_lookupat): ENOENT, ENOTDIR (a component is not a directory), ELOOP (too many
  symlinks), ENAMETOOLONG.

Standard library only, and only ``os``: ``pidns run`` imports this on its start-up path.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False  # typing costs `pidns run` start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_OK = 0
EXIT_FAIL = 1  # a check failed, a divergence, nothing visible, a picture not drawn
EXIT_USAGE = 2  # bad usage or unreadable input; nothing ran
EXIT_SETUP = 125  # the namespace (or session, or world) could not be set up
EXIT_NOT_EXECUTABLE = 126  # the command was found but cannot be executed
EXIT_NOT_FOUND = 127  # the command (or a program we need, such as dot) was not found
EXIT_TIMEOUT = 124  # pidns run --timeout ran out (timeout(1)'s status)
EXIT_SIGNAL_BASE = 128  # 128+N: killed by signal N
EXIT_INTERRUPTED = EXIT_SIGNAL_BASE + 2  # SIGINT (Ctrl-C) ended a command of ours
EXIT_BROKEN_PIPE = EXIT_SIGNAL_BASE + 13  # SIGPIPE: our output's reader went away
# The wait status reported for pid 1 when its own was lost (it could not be collected):
# exit(125), as a namespace that could not be set up.
LOST_WAIT_STATUS = EXIT_SETUP << 8

# errnos that mean "there is nothing to execute here" (fs/namei.c lookups)
NOT_FOUND_ERRNOS = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG)


def from_wait_status(wait_status: int) -> int:
    """The shell's status for a wait status: N for exit(N), 128+S for death by signal S;
    125 for anything else (a stopped or continued status is never an end)."""
    if os.WIFSIGNALED(wait_status):
        return EXIT_SIGNAL_BASE + os.WTERMSIG(wait_status)
    if os.WIFEXITED(wait_status):
        return os.WEXITSTATUS(wait_status)
    return EXIT_SETUP


def for_exec_error(err: int) -> int:
    """The shell's status for an exec failure: 127 when nothing was found, else 126."""
    return EXIT_NOT_FOUND if err in NOT_FOUND_ERRNOS else EXIT_NOT_EXECUTABLE


def describe_exec_error(err: int) -> str:
    """The shell's words for an exec failure (``command not found`` rather than ENOENT)."""
    return "command not found" if err in NOT_FOUND_ERRNOS else os.strerror(err)


def describe_wait_status(wait_status: int, signal_name: Callable[[int], str] | None = None) -> str:
    """``exited N`` or ``was killed by SIGNAL`` (``signal_name`` names a number, as
    ``SIGKILL``; without it, ``signal 9``: the start-up path needs no signal tables)."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        return f"was killed by {signal_name(number) if signal_name else f'signal {number}'}"
    if os.WIFSTOPPED(wait_status):
        number = os.WSTOPSIG(wait_status)
        return f"was stopped by {signal_name(number) if signal_name else f'signal {number}'}"
    return f"exited {os.WEXITSTATUS(wait_status)}"
