"""``pidns stop NAME...``: end named namespaces (``pidns run --name NAME``).

pidns stop's request to the init (a SIGTERM queued with the grace:
pidns.linux.init.stop_request) through a pidfd checked against the recorded start time
(a reused pid is never signalled); the init sends SIGTERM to every process of the
namespace, the command too, and SIGKILL to what is left once the grace is over. Should
the init not be gone a moment after that (a command run --as-pid-1 is its own init and
may ignore the request), SIGKILL to it: the kernel then kills every process of the
namespace (kernel/pid_namespace.c:zap_pid_ns_processes). The pidfd polls readable only
once the init has exited, which it does only when every other process of the namespace
is gone, so when ``pidns stop`` returns nothing of the namespace survives.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys

from pidns import environment
from pidns.cli.options import Option, UsageError, format_table, scan, usage_error
from pidns.core.exits import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP
from pidns.linux import registry, syscalls
from pidns.linux.init import DEFAULT_GRACE, stop_request

# how long after the grace the init has to finish its own SIGKILL sweep and exit
SWEEP = 2.0

# The one table of stop's options: the help, the man page and the completion are made from it.
OPTIONS = (
    Option("--grace", arg="SECONDS", help="how long the namespace's processes have after "
           "SIGTERM before SIGKILL (default 10, or $PIDNS_GRACE)"),
    Option("--version", "-V", help="show pidns's version"),
    Option("--help", "-h", help="show this help"),
)  # fmt: skip

HEAD = """\
usage: pidns stop [--grace SECONDS] NAME...

End each namespace NAME that pidns run --name NAME made: SIGTERM to every process of
it, SIGKILL to what is left SECONDS later. Returns once nothing of the namespace is
left. Stale entries (a namespace that ended without pidns run cleaning up) are removed.

options:
"""
TAIL = """
exit status: 0 every NAME was stopped; 1 some NAME was not running (stale entries
are removed); 2 bad usage; 125 a namespace could not be signalled.
"""


def usage() -> str:
    return HEAD + format_table(OPTIONS) + TAIL


def parse(argv: list[str]) -> tuple[float, list[str]] | str:
    """(grace, names), or "--help" or "--version" when asked."""
    with_value = tuple(o.name for o in OPTIONS if o.arg)
    options, names = scan(argv, with_value, command=False)
    grace: float | None = None
    for name, value in options:
        if name in ("-h", "--help"):
            return "--help"
        if name in ("-V", "--version"):
            return "--version"
        if name == "--grace":
            try:
                grace = float(value)
            except ValueError:
                grace = -1.0
            if not grace >= 0:
                raise UsageError(f"--grace needs a number of seconds >= 0, not {value!r}")
        else:
            raise UsageError(f"unknown option {name!r}")
    if not names:
        raise UsageError("no namespace named")
    for word in names:
        try:
            registry.check_name(word)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if grace is None:
        try:
            grace = environment.grace()
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return (DEFAULT_GRACE if grace is None else grace), names


def main(name: str, argv: list[str]) -> int:
    try:
        parsed = parse(argv)
    except UsageError as exc:
        return usage_error(f"pidns {name}", exc)
    if parsed == "--help":
        sys.stdout.write(usage())
        return EXIT_OK
    if isinstance(parsed, str):
        print(f"pidns {__import__('pidns').__version__}")
        return EXIT_OK
    grace, names = parsed
    status = EXIT_OK
    for word in names:
        try:
            stop(word, grace)
        except registry.RegistryError as exc:
            print(f"pidns {name}: {exc}", file=sys.stderr)
            gone = exc.errno in (errno.ENOENT, errno.ESRCH)
            status = max(status, EXIT_FAIL if gone else EXIT_SETUP)  # 1: not running
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
    return status


def stop(name: str, grace: float) -> None:
    """End the namespace ``name``; returns once its init has exited. RegistryError if it
    is not running (ENOENT, ESRCH), or cannot be signalled."""
    entry, pidfd = registry.find(name)
    try:
        try:
            syscalls.pidfd_send_signal_value(pidfd, signal.SIGTERM, stop_request(grace))
            if not _exited(pidfd, grace + SWEEP):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                _exited(pidfd, None)
        except ProcessLookupError:
            pass  # it exited meanwhile
        except PermissionError:
            raise registry.RegistryError(
                errno.EPERM, f"not permitted to signal namespace {name!r}"
            ) from None
    finally:
        os.close(pidfd)
    registry.remove(name, entry)


def _exited(pidfd: int, timeout: float | None) -> bool:
    """Whether the process of ``pidfd`` exits within ``timeout`` seconds (None: ever)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))
