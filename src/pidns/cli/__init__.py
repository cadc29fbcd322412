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

from pidns.core.exits import EXIT_USAGE

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("pidns.cli.run", "run a command in a fresh pid namespace"),
    "exec": ("pidns.cli.exec", "run a command inside an existing pid namespace"),
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
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else EXIT_USAGE
    if args[0] in ("-V", "--version") or args[1:2] in (["-V"], ["--version"]):
        print(f"pidns {__import__('pidns').__version__}")
        return 0
    name = args[0]
    entry = COMMANDS.get(name)
    if entry is None:
        print(f"pidns: unknown command {name!r} (see pidns --help)", file=sys.stderr)
        return EXIT_USAGE
    module = __import__(entry[0], fromlist=["main"])
    result: int = module.main(name, args[1:])
    return result
