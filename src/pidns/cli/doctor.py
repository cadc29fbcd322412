"""``pidns doctor``: what this environment allows pidns to do, and why not.

Each namespace kind is tried for real in a throw-away child (linux/diagnose.py, the same
diagnosis that explains every setup failure of ``pidns run``); the exit status says
whether ``pidns run`` works here with full isolation (0) or not (1).
"""

from __future__ import annotations

import json
import sys

from pidns.cli.options import HELP, UsageError, check_known, scan, usage_error, wants_help
from pidns.core.exits import EXIT_FAIL, EXIT_OK
from pidns.linux import diagnose

USAGE = """\
usage: pidns doctor [--json]

Try each namespace pidns run needs (user, pid, mount, a fresh /proc) in a throw-away
child, read the sysctls, seccomp, capabilities and the /proc mount, and say for each
refusal its cause and the fix that applies here.

options:
  --json      one JSON object instead of the table
  -h, --help  show this help

exit status: 0 pidns run works here with full isolation; 1 it does not; 2 bad usage.
"""


def main(name: str, argv: list[str]) -> int:
    try:
        options, positional = scan(argv, (), command=False)
        check_known(options, ("--json", *HELP))
        if positional:
            raise UsageError(f"unexpected argument {positional[0]!r}")
    except UsageError as error:
        return usage_error(f"pidns {name}", error)
    if wants_help(options):
        sys.stdout.write(USAGE)
        return EXIT_OK
    as_json = any(option == "--json" for option, _ in options)
    result = diagnose.examine()
    if as_json:
        document = {
            "full_isolation": result.full_isolation,
            "pid_namespace": result.pid_namespace,
            "summary": result.summary,
            "checks": [check.as_dict() for check in result.checks],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(render(result))
    return EXIT_OK if result.full_isolation else EXIT_FAIL


def render(result: diagnose.Examination) -> str:
    width = max(len(check.name) for check in result.checks)
    lines = []
    for check in result.checks:
        lines.append(f"{check.name:<{width}}  {check.state:<7}  {check.detail}")
        pad = " " * (width + 11)
        if check.cause:
            lines.append(f"{pad}cause: {check.cause}")
        if check.fix:
            lines.append(f"{pad}fix:   {check.fix}")
    lines += ["", result.summary]
    return "\n".join(lines) + "\n"
