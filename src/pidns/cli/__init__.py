"""The ``pidns`` command: a dispatcher that imports only the subcommand it runs.

Start-up time matters (``pidns run`` wraps every command), so this module imports
nothing beyond ``sys`` until it knows which subcommand is wanted (not even importlib).

Exit statuses, shared by every subcommand (documented in docs/cli.md, defined once in
pidns.core.exits): 0 success; 1 a check failed or a divergence was found; 2 bad usage or
unreadable input; 125 setup failure; 126 command not executable; 127 command not found;
128+N killed by N.
"""

from __future__ import annotations

import sys

from pidns.core import exits
from pidns.core.exits import EXIT_USAGE

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pidns.cli.run", "run a command in a fresh pid namespace"),
    "exec": ("pidns.cli.exec", "run a command inside an existing pid namespace"),
    "stop": ("pidns.cli.stop", "end a named namespace (pidns run --name)"),
    "ls": ("pidns.cli.introspect", "list the pid namespaces you can see"),
    "tree": ("pidns.cli.introspect", "processes nested by pid namespace"),
    "pid": ("pidns.cli.introspect", "translate a pid between namespaces"),
    "sim": ("pidns.cli.check", "run scenarios on the model"),
    "check": ("pidns.cli.check", "run scenarios on the model and the kernel, report divergences"),
    "demo": ("pidns.cli.check", "the seed's login flow on both backends, side by side"),
    "login-test": ("pidns.cli.login", "the seed's PAM login flow, for real"),
    "doctor": ("pidns.cli.doctor", "what this environment allows, and why not"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: pidns COMMAND [OPTIONS] ...", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "pidns COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    _hold_standard_fds()
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args else "pidns"
    try:
        result = _dispatch(args)
        sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        return exits.EXIT_BROKEN_PIPE  # 128 + SIGPIPE, what a shell shows
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        _drop_stdout()
        print(f"pidns {name}: cannot write the output: {exc.strerror}", file=sys.stderr)
        return exits.EXIT_FAIL  # the output could not be written (a full device, EIO)
    return result


def _dispatch(args: list[str]) -> int:
    if args[:1] == ["help"] and len(args) > 1 and args[1] in COMMANDS:
        args = [args[1], "--help"]  # pidns help run: run's own help
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else EXIT_USAGE
    if args[0] in ("-V", "--version") or args[1:2] in (["-V"], ["--version"]):
        from pidns.cli.options import version_line  # noqa: PLC0415

        print(version_line())
        return 0
    name = args[0]
    entry = COMMANDS.get(name)
    if entry is None:
        print(f"pidns: unknown command {name!r} (see pidns --help)", file=sys.stderr)
        return EXIT_USAGE
    module = __import__(entry[0], fromlist=["main"])
    result: int = module.main(name, args[1:])
    return result


# errnos of a write that failed on the output's side: ENOSPC, EIO, EFBIG, EDQUOT
_OUTPUT_ERRNOS = (28, 5, 27, 122)


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush cannot fail again
    (it would print "Exception ignored" and exit 120)."""
    import os  # noqa: PLC0415 (only on this path)

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        return


def _hold_standard_fds() -> None:
    """A closed fd 0, 1 or 2 is held by /dev/null, close-on-exec: the next file pidns opens
    must not become its stdout or stderr (messages would go into a pipe or a pidfd), and a
    command still starts with it closed, as exec would pass it. Python then has no
    sys.stderr either, and print(file=None) writes to stdout: messages must go nowhere."""
    import os  # noqa: PLC0415 (os is imported by the interpreter itself: no cost)

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd, inheritable=False)
                os.close(null)
            if fd == 2:
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 (for the process's life)
