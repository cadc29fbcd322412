"""The one exit-status module (pidns.core.exits) and the one option scanner
(pidns.cli.options), as every subcommand uses them."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys

import pytest

from pidns.cli.options import UsageError, scan
from pidns.core import exits


def wait_status_of(code: str) -> int:
    """The real wait status of a child that runs ``code``."""
    pid = os.fork()
    if pid == 0:
        try:
            exec(code)
        finally:
            os._exit(99)
    return os.waitpid(pid, 0)[1]


def test_wait_statuses_map_as_the_shell_maps_them() -> None:
    assert exits.from_wait_status(wait_status_of("os._exit(3)")) == 3
    assert exits.from_wait_status(wait_status_of("os._exit(0)")) == 0
    killed = wait_status_of("os.kill(os.getpid(), signal.SIGKILL)")
    assert exits.from_wait_status(killed) == 128 + signal.SIGKILL
    assert exits.describe_wait_status(killed) == f"was killed by signal {int(signal.SIGKILL)}"
    assert exits.describe_wait_status(killed, lambda n: signal.Signals(n).name) == (
        "was killed by SIGKILL"
    )
    assert exits.describe_wait_status(wait_status_of("os._exit(3)")) == "exited 3"


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (errno.ENOENT, 127),
        (errno.ENOTDIR, 127),
        (errno.ELOOP, 127),
        (errno.ENAMETOOLONG, 127),
        (errno.EACCES, 126),
        (errno.ENOEXEC, 126),
        (errno.EISDIR, 126),
    ],
)
def test_exec_errors_map_to_126_or_127(err: int, status: int) -> None:
    assert exits.for_exec_error(err) == status
    expected = "command not found" if status == 127 else os.strerror(err)
    assert exits.describe_exec_error(err) == expected


def pidns(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pidns", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [
        ("run", "--bogus", "unknown option '--bogus'"),
        ("exec", "--bogus", "unknown option '--bogus'"),
        ("ls", "--bogus", "unknown option '--bogus'"),
        ("tree", "--json=1", "option --json takes no value"),
        ("pid", "--from", "--from needs a value"),
        ("sim", "--world-level=x", "--world-level needs a whole number, not 'x'"),
        ("check", "--random=-1", "--random needs a number >= 0, not -1"),
        ("demo", "extra", "unexpected argument 'extra'"),
        ("login-test", "--bogus", "unknown option '--bogus'"),
        ("doctor", "--bogus", "unknown option '--bogus'"),
        ("doctor", "extra", "unexpected argument 'extra'"),
    ],
)
def test_every_subcommand_reports_bad_usage_in_one_line_and_exits_2(
    command: str, option: str, message: str
) -> None:
    done = pidns(command, option)
    assert done.returncode == exits.EXIT_USAGE
    assert done.stderr == f"pidns {command}: {message} (see pidns {command} --help)\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    "command", ["run", "exec", "ls", "tree", "pid", "sim", "check", "demo", "login-test", "doctor"]
)
def test_every_subcommand_has_help(command: str) -> None:
    done = pidns(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: pidns {command}")


def test_the_scanner_keeps_the_command_untouched_or_collects_positionals() -> None:
    assert scan(["-v", "echo", "-v"], ()) == ([("-v", "")], ["echo", "-v"])
    assert scan(["-v", "a", "--x=1", "b"], ("--x",), command=False) == (
        [("-v", ""), ("--x", "1")],
        ["a", "b"],
    )
    assert scan(["-sbash", "--", "-c"], ("-s",), command=False) == ([("-s", "bash")], ["-c"])
    assert scan(["-t", "5", "ls"], ("-t",)) == ([("-t", "5")], ["ls"])
    with pytest.raises(UsageError, match="--x needs a value"):
        scan(["--x"], ("--x",))
    with pytest.raises(UsageError, match="takes no value"):
        scan(["--flag=1"], ())
