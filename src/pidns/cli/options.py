"""The option scanner ``pidns run`` and ``pidns exec`` share (argparse would cost their
start-up several milliseconds, and its rules for where options end are not these).

Options end at ``--`` or at the first word that is not an option; everything after is
the command, untouched (``pidns run echo --as-pid-1`` prints ``--as-pid-1``). An option
that takes a value is written ``--name=VALUE`` or ``--name VALUE``.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage: the message is one line; the command exits 2."""


def scan(argv: list[str], with_value: tuple[str, ...]) -> tuple[list[tuple[str, str]], list[str]]:
    """``(options, command)``: each option as ``(name, value)``, ``""`` for a flag."""
    options: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        name, eq, value = word.partition("=")
        if name in with_value:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i]
        elif eq:
            raise UsageError(f"option {name} takes no value")
        options.append((name, value))
        i += 1
    return options, argv[i:]
