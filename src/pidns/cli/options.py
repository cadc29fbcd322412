"""The one option scanner and the one ``UsageError`` of every ``pidns`` subcommand.

argparse would cost the start-up of ``pidns run`` and ``pidns ls`` several milliseconds
(it pulls in gettext, locale and shutil), and its rules for where options end are not
``pidns run``'s. The rules here:

- An option that takes a value is written ``--name=VALUE`` or ``--name VALUE`` (a short
  one also ``-nVALUE``); a flag given a value (``--json=1``) is an error.
- ``--`` ends the options.
- ``command=True`` (run, exec): options end at the first word that is not one, and
  everything after is the command, untouched (``pidns run echo --as-pid-1`` prints
  ``--as-pid-1``). Otherwise (ls, tree, pid, sim, check, demo, login-test) options and
  positional words may come in any order.

Every usage error is one line, ``pidns NAME: WHAT (see pidns NAME --help)``, and exit
status 2 (``usage_error``).
"""

from __future__ import annotations

import sys

from pidns.core.exits import EXIT_USAGE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

HELP = ("-h", "--help")


class UsageError(Exception):
    """Bad usage: the message is one line; the command exits 2."""


def scan(
    argv: list[str], with_value: tuple[str, ...], *, command: bool = True
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(options, rest)``: each option as ``(name, value)``, ``""`` for a flag; ``rest``
    is the command (``command=True``) or every positional word."""
    options: list[tuple[str, str]] = []
    positional: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            if command:
                break
            positional.append(word)
            i += 1
            continue
        name, eq, value = word.partition("=")
        if not eq and not word.startswith("--") and len(word) > 2 and word[:2] in with_value:
            name, eq, value = word[:2], "=", word[2:]  # -sVALUE
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
    return options, positional + argv[i:]


def check_known(options: list[tuple[str, str]], known: tuple[str, ...]) -> None:
    """UsageError for the first option not in ``known``."""
    for name, _ in options:
        if name not in known:
            raise UsageError(f"unknown option {name!r}")


def wants_help(options: list[tuple[str, str]]) -> bool:
    return any(name in HELP for name, _ in options)


def last(options: list[tuple[str, str]], *names: str) -> str | None:
    """The value of the last of ``names`` given (a later option overrides an earlier one)."""
    found = None
    for name, value in options:
        if name in names:
            found = value
    return found


def integer(name: str, value: str, minimum: int | None = None) -> int:
    """``value`` as an integer, or a UsageError naming the option."""
    try:
        number = int(value)
    except ValueError:
        raise UsageError(f"{name} needs a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise UsageError(f"{name} needs a number >= {minimum}, not {number}")
    return number


PID_MAX_LIMIT = 4 * 1024 * 1024  # include/linux/threads.h: no pid is ever above it (64-bit)


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() also takes "٣" and "²", which no kernel does."""
    return text.isascii() and text.isdigit()


def pid(name: str, value: str) -> int:
    """``value`` as a pid (1 to PID_MAX_LIMIT), or a UsageError naming the option."""
    if not is_number(value) or not 0 < int(value) <= PID_MAX_LIMIT:
        raise UsageError(f"{name} needs a pid (a number from 1 to {PID_MAX_LIMIT}), not {value!r}")
    return int(value)


def version_line() -> str:
    """What ``--version`` prints, for ``pidns`` and every subcommand."""
    return f"pidns {__import__('pidns').__version__}"


def help_or_version(asked_help: bool, asked_version: bool, usage: Callable[[], str]) -> int | None:
    """The answer to ``--help`` (the usage on stdout) or ``--version``: the status to exit
    with (0), or None when neither was asked."""
    if asked_help:
        sys.stdout.write(usage())
        return 0
    if asked_version:
        print(version_line())
        return 0
    return None


def usage_error(prog: str, error: UsageError) -> int:
    """Report ``error`` in the one format every subcommand uses; the status to exit with."""
    print(f"{prog}: {error} (see {prog} --help)", file=sys.stderr)
    return EXIT_USAGE


# -- the option tables of run and exec (machine-readable: help, man pages, completion) ------


class Option:
    """One option of a table: ``name`` (``--long``), ``short`` (``-s`` or ""), ``arg`` (the
    value's name, "" for a flag), ``help`` (one sentence). ``optional``: the value may be
    left out, and is then given only as ``--name=VALUE`` or attached, ``-sVALUE`` (as
    getopt's optional arguments: unshare's ``--kill-child[=SIGNAL]``)."""

    __slots__ = ("arg", "help", "name", "optional", "short")

    def __init__(
        self, name: str, short: str = "", arg: str = "", help: str = "", optional: bool = False
    ) -> None:
        self.name = name
        self.short = short
        self.arg = arg
        self.help = help
        self.optional = optional

    def synopsis(self) -> str:
        """``-w, --wd DIR`` / ``--kill-child[=SIG]``: how the help shows it."""
        names = f"{self.short}, {self.name}" if self.short else f"    {self.name}"
        if not self.arg:
            return names
        return f"{names}[={self.arg}]" if self.optional else f"{names} {self.arg}"


def scan_table(
    argv: list[str], table: tuple[Option, ...]
) -> tuple[list[tuple[str, str]], list[str]]:
    """``(options, command)`` against ``table``: each option as ``(its long name, value)``.

    Short options combine (``-Urpf``, as getopt's); a short option's value is the rest of
    its word or, for a required value, the next word (``-w/tmp``, ``-w /tmp``). Options end
    at ``--`` or at the first word that is not an option; everything after is the command.
    """
    by_name = {option.name: option for option in table}
    by_short = {option.short: option for option in table if option.short}
    options: list[tuple[str, str]] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            break
        if not word.startswith("-") or word == "-":
            i -= 1
            break
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            option = by_name.get(name)
            if option is None:
                raise UsageError(f"unknown option {name!r}")
            if not option.arg and eq:
                raise UsageError(f"option {name} takes no value")
            if option.arg and not eq and not option.optional:
                if i >= len(argv):
                    raise UsageError(f"{name} needs a value")
                value = argv[i]
                i += 1
            options.append((option.name, value))
            continue
        j = 1
        while j < len(word):  # -abc: each letter an option, until one takes the rest
            short = "-" + word[j]
            option = by_short.get(short)
            if option is None:
                raise UsageError(f"unknown option {short!r}")
            j += 1
            value = ""
            if option.arg:
                value, j = word[j:], len(word)
                if not value and not option.optional:
                    if i >= len(argv):
                        raise UsageError(f"{short} needs a value")
                    value = argv[i]
                    i += 1
            options.append((option.name, value))
    return options, argv[i:]


def format_table(table: tuple[Option, ...], width: int = 88) -> str:
    """The options section of a ``--help``, from the table."""
    import textwrap  # noqa: PLC0415 (--help only)

    lines = []
    column = 28
    for option in table:
        head = "  " + option.synopsis()
        body = textwrap.wrap(option.help, width - column)
        if len(head) >= column - 1:
            lines.append(head)
        else:
            first = body.pop(0) if body else ""
            lines.append(f"{head:<{column}}{first}".rstrip())
        lines += [" " * column + text for text in body]
    return "\n".join(lines) + "\n"
