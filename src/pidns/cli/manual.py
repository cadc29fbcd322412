"""Man pages and shell completion, made from what ``pidns COMMAND --help`` prints.

One source for each command's surface: its option table (``OPTIONS`` of run, exec and
stop: pidns.cli.options.Option) or, for the commands without one, the option lines of
its help text (``  -s, --shell SHELL   what it does``), read by ``options_of``. The
pages' ENVIRONMENT sections come from pidns.environment.VARIABLES, the command list from
pidns.cli.COMMANDS. Nothing here is on a command's start-up path.

    python -m pidns.cli.manual man DIR          pidns.1 and pidns-COMMAND.1 into DIR
    python -m pidns.cli.manual bash FILE        a bash completion script
    python -m pidns.cli.manual zsh FILE         a zsh completion function (_pidns)

``make man`` and ``make completion`` run these into build/.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from pidns import __version__, environment
from pidns.cli import COMMANDS
from pidns.cli.options import Option

# an option line of a help text: "  -s, --shell SHELL   text", "  --json   text"
# (format_table's: "      --long ARG", "  -s, --long[=ARG]"; an ARG such as allow|deny)
_OPTION_LINE = re.compile(
    r"^ {2}(?: {4})?(?:(-[A-Za-z0-9]), )?(--?[A-Za-z0-9][\w-]*)"
    r"(?: ([A-Za-z][\w|:]*)|(\[=[A-Z][A-Z_|]*\]))?(?: {2,}(.*))?$"
)
# the value words whose completion is a path
_PATHS = {"FILE": "file", "OUT": "file", "IMAGE": "file", "DIR": "directory"}
# the values of an option, where the help names them (a|b) or the table's text does
_CHOICES = {
    ("run", "--fallback"): ("fail", "subreaper"),
    ("run", "--propagation"): ("private", "shared", "slave", "unchanged"),
}


def help_text(command: str) -> str:
    """What ``pidns COMMAND --help`` prints (tests/test_manual.py checks it is)."""
    module = __import__(COMMANDS[command][0], fromlist=["main"])
    usage = getattr(module, "usage", None)
    if callable(usage):
        text: str = usage()
        return text
    table = module.USAGE
    text = table[command] if isinstance(table, dict) else table
    return text if text.endswith("\n") else text + "\n"


def options_of(command: str) -> tuple[Option, ...]:
    """The command's option table, or the options its help text lists."""
    module = __import__(COMMANDS[command][0], fromlist=["main"])
    table = getattr(module, "OPTIONS", None)
    if isinstance(table, tuple):
        return table
    return parse_options(help_text(command))


def parse_options(text: str) -> tuple[Option, ...]:
    """The options a help text lists, each with its continuation lines as its help."""
    found: list[Option] = []
    for line in text.splitlines():
        match = _OPTION_LINE.match(line)
        if match:
            short, name, arg, optional, words = match.groups()
            if not name.startswith("--") and not short:  # "-v" alone: a short-only option
                short = name
            value = optional[2:-1] if optional else arg or ""
            text = (words or "").strip()
            found.append(Option(name, short or "", value, text, optional=bool(optional)))
        elif found and line.startswith("   ") and line.strip():
            found[-1].help = f"{found[-1].help} {line.strip()}".strip()
        elif not line.strip() or not line.startswith("  "):
            continue
    return tuple(found)


def choices(command: str, option: Option) -> tuple[str, ...]:
    """The words an option's value may be, where there is a fixed list."""
    if "|" in option.arg:
        return tuple(option.arg.split("|"))
    return _CHOICES.get((command, option.name), ())


# -- man pages -------------------------------------------------------------------------------


def _roff(text: str) -> str:
    """Text as roff: backslashes and hyphens escaped (a hyphen stays an ASCII minus, so
    that options copy), no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _sections(command: str) -> tuple[list[str], list[str], list[str]]:
    """(synopsis lines, description paragraphs, exit-status paragraph) of the help text;
    its option lines are left out (the options come from options_of)."""
    blocks = [block.rstrip("\n") for block in help_text(command).split("\n\n")]
    synopsis = [line.removeprefix("usage:").strip() for line in blocks[0].splitlines()]
    description: list[str] = []
    status: list[str] = []
    for block in blocks[1:]:
        lines = [
            line
            for line in block.splitlines()
            if line.strip() != "options:" and not _OPTION_LINE.match(line)
        ]
        # continuation lines of options (deeply indented, after an option line)
        if block.splitlines() and (
            block.splitlines()[0].strip() == "options:" or _OPTION_LINE.match(block.splitlines()[0])
        ):
            lines = [line for line in lines if not line.startswith("   ")]
        at = next((i for i, line in enumerate(lines) if line.startswith("exit status:")), None)
        if at is not None:
            status.append(
                " ".join(line.strip() for line in lines[at:]).removeprefix("exit status:")
            )
            lines = lines[:at]
        if lines:
            description.append("\n".join(lines))
    return synopsis, description, status


def _option_head(option: Option) -> str:
    names = (
        f"\\fB{_roff(option.short)}\\fR, " if option.short and option.short != option.name else ""
    )
    names += f"\\fB{_roff(option.name)}\\fR"
    if not option.arg:
        return names
    value = f"\\fI{_roff(option.arg)}\\fR"
    return f"{names}[={value}]" if option.optional else f"{names} {value}"


_NO_HYPHENATION = (".nh", ".ad l")  # an option's name is never broken, nor the text stretched


def man_page(command: str) -> str:
    """The roff source of pidns-COMMAND(1)."""
    synopsis, description, status = _sections(command)
    title = f"PIDNS-{command.upper()}"
    out = [
        f'.TH {_roff(title)} 1 "" "pidns {__version__}" "pidns manual"',
        *_NO_HYPHENATION,
        ".SH NAME",
        f"pidns\\-{_roff(command)} \\- {_roff(COMMANDS[command][1])}",
        ".SH SYNOPSIS",
        ".nf",
        *(_roff(line) for line in synopsis),
        ".fi",
        ".SH DESCRIPTION",
    ]
    for paragraph in description:
        if any(line.startswith("  ") for line in paragraph.splitlines()):
            out += [".PP", ".nf", _roff(paragraph), ".fi"]
        else:
            out += [".PP", _roff(" ".join(paragraph.split()))]
    out.append(".SH OPTIONS")
    for option in options_of(command):
        out += [".TP", _option_head(option), _roff(option.help or "(no description)")]
    variables = [
        (name, text)
        for name, (commands, text) in environment.VARIABLES.items()
        if command in commands
    ]
    if variables:
        out.append(".SH ENVIRONMENT")
        for name, text in variables:
            out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(text)]
    if status:
        out += [".SH EXIT STATUS", _roff(" ".join(" ".join(status).split()))]
    see = ", ".join(f"\\fBpidns\\-{_roff(other)}\\fR(1)" for other in _related(command))
    out += [".SH SEE ALSO", f"\\fBpidns\\fR(1), {see}" if see else "\\fBpidns\\fR(1)", ""]
    return "\n".join(out)


def _related(command: str) -> list[str]:
    module = COMMANDS[command][0]
    same = [name for name, (other, _) in COMMANDS.items() if other == module and name != command]
    family = {"run": ["exec", "stop", "ls"], "exec": ["run", "ls"], "stop": ["run", "ls"]}
    return sorted({*same, *family.get(command, [])})


def main_page() -> str:
    """The roff source of pidns(1): the commands, each with its page."""
    out = [
        f'.TH PIDNS 1 "" "pidns {__version__}" "pidns manual"',
        *_NO_HYPHENATION,
        ".SH NAME",
        "pidns \\- Linux pid namespaces: run, join, inspect, and check a kernel model",
        ".SH SYNOPSIS",
        ".nf",
        "pidns \\fICOMMAND\\fR [\\fIOPTIONS\\fR] ...",
        "pidns \\fICOMMAND\\fR \\-\\-help",
        "pidns \\-\\-version",
        ".fi",
        ".SH COMMANDS",
    ]
    for name, (_, text) in COMMANDS.items():
        out += [".TP", f"\\fBpidns\\-{_roff(name)}\\fR(1)", _roff(text)]
    out += [".SH ENVIRONMENT"]
    for name, (commands, text) in environment.VARIABLES.items():
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(f"{text} ({', '.join(commands)})")]
    return "\n".join(out) + "\n"


def write_man(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    pages = {"pidns.1": main_page()}
    pages |= {f"pidns-{name}.1": man_page(name) for name in COMMANDS}
    for name, text in pages.items():
        (directory / name).write_text(text, encoding="utf-8")
    return [directory / name for name in pages]


# -- shell completion -------------------------------------------------------------------------


def _words(options: tuple[Option, ...]) -> str:
    return " ".join(
        word for option in options for word in (option.short, option.name) if word and word != "-"
    )


def _value_words(command: str, options: tuple[Option, ...]) -> list[tuple[str, str]]:
    """(the option's spellings as a case pattern, what completes its value) for each
    option that takes a separate value word."""
    cases = []
    for option in options:
        if not option.arg or option.optional:
            continue
        pattern = "|".join(word for word in (option.short, option.name) if word)
        listed = choices(command, option)
        kind = f"words:{' '.join(listed)}" if listed else _PATHS.get(option.arg, "none")
        cases.append((pattern, kind))
    return cases


def _takes_command(command: str) -> bool:
    return command in ("run", "exec")


def bash_script() -> str:
    """A bash completion function for pidns, made from every command's options."""
    lines = [
        "# bash completion for pidns: generated by python -m pidns.cli.manual bash",
        "# (from each command's --help and option table; do not edit)",
        "_pidns() {",
        "    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}",
        "    local i word options kind='' command=${COMP_WORDS[1]}",
        "    COMPREPLY=()",
        "    if ((COMP_CWORD == 1)); then",
        f'        COMPREPLY=($(compgen -W "{" ".join(COMMANDS)} help" -- "$cur"))',
        "        return",
        "    fi",
        '    case "$command" in',
    ]
    for name in COMMANDS:
        options = options_of(name)
        lines.append(f"    {name})")
        lines.append(f'        options="{_words(options)}"')
        cases = _value_words(name, options)
        if cases:
            lines.append('        case "$prev" in')
            lines += [f"            {pattern}) kind={_quote(kind)} ;;" for pattern, kind in cases]
            lines.append("        esac")
        if _takes_command(name):  # the first word that is no option starts the command
            lines += [
                "        i=2",
                "        while ((i < COMP_CWORD)); do",
                "            word=${COMP_WORDS[i]}",
                "            if [[ $word == -- ]]; then i=$((i + 1)); break; fi",
                "            if [[ $word != -* ]]; then",
                '                case "${COMP_WORDS[i-1]}" in',
                *(f"                {pattern}) ;;" for pattern, _ in cases),
                "                *) break ;;",
                "                esac",
                "            fi",
                "            i=$((i + 1))",
                "        done",
                "        if ((i < COMP_CWORD)); then kind=file  # the command's arguments",
                "        elif [[ -z $kind ]]; then kind=command; fi",
            ]
        lines.append("        ;;")
    lines += [
        "    help)",
        f'        COMPREPLY=($(compgen -W "{" ".join(COMMANDS)}" -- "$cur"))',
        "        return",
        "        ;;",
        "    *) return ;;",
        "    esac",
        '    case "$kind" in',
        '    words:*) COMPREPLY=($(compgen -W "${kind#words:}" -- "$cur")); return ;;',
        '    file) COMPREPLY=($(compgen -f -- "$cur")); return ;;',
        '    directory) COMPREPLY=($(compgen -d -- "$cur")); return ;;',
        "    none) return ;;",
        "    esac",
        "    if [[ $cur == -* ]]; then",
        '        COMPREPLY=($(compgen -W "$options" -- "$cur"))',
        "    elif [[ $kind == command ]]; then",
        '        COMPREPLY=($(compgen -c -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -f -- "$cur"))',
        "    fi",
        "}",
        "complete -F _pidns pidns",
        "",
    ]
    return "\n".join(lines)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def zsh_script() -> str:
    """A zsh completion function (#compdef pidns): ``_pidns_words`` sets ``reply`` to
    the candidates for ``words`` and ``CURRENT`` (zsh's), ``_pidns`` offers them."""
    lines = [
        "#compdef pidns",
        "# zsh completion for pidns: generated by python -m pidns.cli.manual zsh",
        "# (from each command's --help and option table; do not edit)",
        "_pidns_words() {",
        "    local cur=${words[CURRENT]} prev=${words[CURRENT-1]} command=${words[2]}",
        "    local kind='' i word",
        "    local -a options",
        "    reply=()",
        "    if ((CURRENT == 2)); then",
        f"        reply=({' '.join(COMMANDS)} help)",
        "        return",
        "    fi",
        '    case "$command" in',
    ]
    for name in COMMANDS:
        options = options_of(name)
        cases = _value_words(name, options)
        lines.append(f"    ({name})")
        lines.append(f"        options=({_words(options)})")
        if cases:
            lines.append('        case "$prev" in')
            lines += [f"            ({pattern}) kind={_quote(kind)} ;;" for pattern, kind in cases]
            lines.append("        esac")
        if _takes_command(name):
            patterns = "|".join(pattern for pattern, _ in cases) or "--never--"
            lines += [
                "        i=3",
                "        while ((i < CURRENT)); do",
                "            word=${words[i]}",
                "            if [[ $word == -- ]]; then i=$((i + 1)); break; fi",
                f"            if [[ $word != -* ]] && [[ ${{words[i-1]}} != ({patterns}) ]]; then",
                "                break",
                "            fi",
                "            i=$((i + 1))",
                "        done",
                "        if ((i < CURRENT)); then kind=file",
                "        elif [[ -z $kind ]]; then kind=command; fi",
            ]
        lines.append("        ;;")
    lines += [
        f"    (help) reply=({' '.join(COMMANDS)}); return ;;",
        "    (*) return ;;",
        "    esac",
        '    case "$kind" in',
        "    (words:*) reply=(${=kind#words:}) ;;",
        "    (file|directory|none) reply=(); REPLY=$kind ;;",
        "    (*)",
        "        REPLY=''",
        "        if [[ $cur == -* ]]; then reply=($options)",
        "        elif [[ $kind == command ]]; then REPLY=command",
        "        else REPLY=file; fi",
        "        ;;",
        "    esac",
        "}",
        "_pidns() {",
        "    local -a reply",
        "    local REPLY=''",
        "    _pidns_words",
        '    case "$REPLY" in',
        "    (file) _files ;;",
        "    (directory) _files -/ ;;",
        "    (command) _command_names -e ;;",
        "    (none) _message value ;;",
        "    (*) compadd -a reply ;;",
        "    esac",
        "}",
        'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _pidns "$@"',
        "elif (($+functions[compdef])); then compdef _pidns pidns; fi",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("man", "bash", "zsh"):
        print("usage: python -m pidns.cli.manual man DIR | bash FILE | zsh FILE", file=sys.stderr)
        return 2
    what, where = args
    if what == "man":
        for page in write_man(Path(where)):
            print(page)
        return 0
    path = Path(where)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(bash_script() if what == "bash" else zsh_script(), encoding="utf-8")
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
