"""Man pages and shell completion are made from each command's help text and option
table (pidns.cli.manual): every subcommand and every option is in its page, the pages
render with man(1) without a warning, and bash (and zsh) complete the subcommands, the
options and their values."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pidns.cli import COMMANDS, main, manual
from pidns.environment import VARIABLES

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("run", "exec", "stop")  # the commands with an Option table


def test_the_help_text_is_what_each_command_prints() -> None:
    for command in COMMANDS:
        printed = subprocess.run(
            [sys.executable, "-m", "pidns", command, "--help"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert printed.returncode == 0, (command, printed.stderr)
        assert printed.stdout == manual.help_text(command), command


def test_a_tables_options_are_the_ones_its_help_lists() -> None:
    for command in TABLES:
        parsed = manual.parse_options(manual.help_text(command))
        listed = [(o.short, o.name, o.arg, o.optional, o.help) for o in parsed]
        table = [(o.short, o.name, o.arg, o.optional, o.help) for o in manual.options_of(command)]
        assert listed == table, command
    login = {o.name: o for o in manual.options_of("login-test")}
    assert (login["--shell"].short, login["--shell"].arg) == ("-s", "SHELL")
    assert login["--service"].help.startswith("PAM service")


def _listed_elsewhere() -> list[tuple[str, str, bool]]:
    """(command, option, takes a value) for every option a help text (not a table) lists."""
    found = []
    for command in COMMANDS:
        if command in TABLES:
            continue
        for o in manual.options_of(command):
            for spelling in filter(None, (o.short, o.name)):
                if spelling not in ("-h", "--help", "--version"):
                    found.append((command, spelling, bool(o.arg and not o.optional)))
    return found


@pytest.mark.parametrize(("command", "option", "valued"), _listed_elsewhere())
def test_every_option_a_help_text_lists_is_one_the_command_accepts(
    command: str, option: str, valued: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    # The commands without an Option table scan with their own tuples of names: an
    # option added to the help but not to the scanner (or spelled apart) is refused.
    argv = [command, option, *(["1"] if valued else []), "--help"]
    assert main(argv) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("usage: pidns " + command)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("man")
    made = subprocess.run(
        [sys.executable, "-m", "pidns.cli.manual", "man", str(directory)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    return directory


def _render(page: Path) -> str:
    if shutil.which("man") is None:
        pytest.skip("no man(1): make deps installs man-db")
    shown = subprocess.run(
        ["man", "--warnings", "-l", str(page)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "MANWIDTH": "200", "LC_ALL": "C.UTF-8", "MAN_KEEP_FORMATTING": ""},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == "", shown.stderr  # no groff warning
    return shown.stdout


def test_every_command_has_a_page_naming_every_option(pages: Path) -> None:
    for command in COMMANDS:
        text = _render(pages / f"pidns-{command}.1")
        assert f"pidns-{command} - {COMMANDS[command][1]}" in text
        options = manual.options_of(command)
        assert options, command
        for option in options:
            head = option.name if not option.arg else f"{option.name} {option.arg}"
            if option.optional:
                head = f"{option.name}[={option.arg}]"
            assert head in text, (command, head)
            if option.short and option.short != option.name:
                assert f"{option.short}, {option.name}" in text, (command, option.short)
            assert " ".join(option.help.split()[:4]) in text, (command, option.name)
        for name, (commands, _) in VARIABLES.items():
            assert (name in text) == (command in commands), (command, name)
        if "exit status:" in manual.help_text(command):
            assert "EXIT STATUS" in text, command


def test_the_main_page_lists_every_command(pages: Path) -> None:
    text = _render(pages / "pidns.1")
    for command, (_, what) in COMMANDS.items():
        assert f"pidns-{command}(1)" in text and what in text, command
    assert sorted(p.name for p in pages.iterdir()) == sorted(
        ["pidns.1", *(f"pidns-{c}.1" for c in COMMANDS)]
    )


def test_roff_control_characters_in_help_text_are_escaped() -> None:
    assert manual._roff(".TH x\n'y\\z -a") == "\\&.TH x\n\\&'y\\ez \\-a"


# -- completion -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bash_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "pidns.bash"
    subprocess.run(
        [sys.executable, "-m", "pidns.cli.manual", "bash", str(path)],
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    return path


def _bash(script: Path, words: list[str], cwd: Path) -> list[str]:
    """COMPREPLY of the completion function for ``words`` (the last is being typed)."""
    program = (
        'source "$0" || exit 9; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _pidns; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program, str(script), *words],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
        env={"PATH": os.environ["PATH"], "HOME": str(cwd)},
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return sorted(set(done.stdout.split("\n")) - {""})


def test_bash_completes_subcommands_and_every_option(bash_script: Path, tmp_path: Path) -> None:
    assert _bash(bash_script, ["pidns", ""], tmp_path) == sorted([*COMMANDS, "help"])
    assert _bash(bash_script, ["pidns", "st"], tmp_path) == ["stop"]
    assert _bash(bash_script, ["pidns", "help", "e"], tmp_path) == ["exec"]
    for command in COMMANDS:
        spellings = {w for o in manual.options_of(command) for w in (o.short, o.name) if w}
        assert set(_bash(bash_script, ["pidns", command, "-"], tmp_path)) == spellings, command
        longs = {w for w in spellings if w.startswith("--")}
        assert set(_bash(bash_script, ["pidns", command, "--"], tmp_path)) == longs, command
    assert _bash(bash_script, ["pidns", "run", "--pa"], tmp_path) == [
        "--parent-death-signal",
        "--pause",
    ]


def test_bash_completes_option_values_and_the_command(bash_script: Path, tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("")
    (tmp_path / "rdir").mkdir()
    assert _bash(bash_script, ["pidns", "run", "--fallback", ""], tmp_path) == ["fail", "subreaper"]
    assert _bash(bash_script, ["pidns", "run", "--setgroups", "d"], tmp_path) == ["deny"]
    assert _bash(bash_script, ["pidns", "run", "--json-report", "rep"], tmp_path) == ["report.json"]
    assert _bash(bash_script, ["pidns", "run", "-w", "r"], tmp_path) == ["rdir"]  # directories
    assert _bash(bash_script, ["pidns", "run", "--timeout", ""], tmp_path) == []  # no guess
    # the command: after the options (and their values), then its own arguments as files
    assert "sleep" in _bash(bash_script, ["pidns", "run", "-v", "--grace", "3", "sle"], tmp_path)
    assert "sleep" in _bash(bash_script, ["pidns", "run", "--", "sle"], tmp_path)
    assert _bash(bash_script, ["pidns", "run", "sleep", "--"], tmp_path) == []  # not pidns's
    assert _bash(bash_script, ["pidns", "run", "ls", "rep"], tmp_path) == ["report.json"]
    assert "echo" in _bash(bash_script, ["pidns", "exec", "-t", "42", "ech"], tmp_path)
    assert _bash(bash_script, ["pidns", "check", "--kernel", "rep"], tmp_path) == ["report.json"]


def _zsh(script: Path, words: list[str], cwd: Path) -> tuple[list[str], str]:
    """(reply, REPLY) of _pidns_words: the candidates, filtered by the typed prefix as
    compadd filters them, and the kind of completion asked of zsh's own functions."""
    program = (
        'source "$1" || exit 9; shift; words=("$@"); CURRENT=$#; _pidns_words; '
        'print -rl -- "REPLY=$REPLY" $reply'
    )
    done = subprocess.run(
        ["zsh", "-f", "-c", program, "zsh", str(script), *words],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
    kind, *reply = done.stdout.splitlines()
    return sorted({w for w in reply if w.startswith(words[-1])}), kind.removeprefix("REPLY=")


def test_zsh_completes_subcommands_options_and_values(tmp_path: Path) -> None:
    if shutil.which("zsh") is None:
        pytest.skip("no zsh: make deps installs it")
    script = tmp_path / "_pidns"
    script.write_text(manual.zsh_script())
    assert _zsh(script, ["pidns", ""], tmp_path) == (sorted([*COMMANDS, "help"]), "")
    for command in COMMANDS:
        spellings = {w for o in manual.options_of(command) for w in (o.short, o.name) if w}
        assert set(_zsh(script, ["pidns", command, "-"], tmp_path)[0]) == spellings, command
    assert _zsh(script, ["pidns", "run", "--fallback", ""], tmp_path) == (["fail", "subreaper"], "")
    assert _zsh(script, ["pidns", "run", "--pid-file", ""], tmp_path) == ([], "file")
    assert _zsh(script, ["pidns", "run", "--root", ""], tmp_path) == ([], "directory")
    assert _zsh(script, ["pidns", "run", "--grace", "2", "sl"], tmp_path) == ([], "command")
    assert _zsh(script, ["pidns", "run", "ls", "-"], tmp_path) == ([], "file")
    # and the file loads into zsh's completion system (compinit), defining _pidns there
    loaded = subprocess.run(
        ["zsh", "-f", "-c", f'fpath=({tmp_path} $fpath); autoload -U compinit; compinit -u -D; '
         'print -r -- "$_comps[pidns]"'],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )  # fmt: skip
    assert loaded.stdout.strip() == "_pidns", loaded.stdout + loaded.stderr


def test_make_man_and_completion_write_the_files(tmp_path: Path) -> None:
    if shutil.which("make") is None:
        pytest.skip("no make")
    out = tmp_path / "build"
    here = Path(sys.executable).parent
    done = subprocess.run(
        ["make", "-s", "man", "completion", f"BUILD={out}", "STAMP=", f"BIN={here}"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "man" / "pidns-run.1").read_text() == manual.man_page("run")
    assert (out / "completion" / "pidns.bash").read_text() == manual.bash_script()
    assert (out / "completion" / "_pidns").read_text() == manual.zsh_script()
