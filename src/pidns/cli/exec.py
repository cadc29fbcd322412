"""``pidns exec``: run a command inside the pid namespace of an existing process."""

from __future__ import annotations

import os
import sys

from pidns.cli.options import UsageError, scan, usage_error
from pidns.core import exits
from pidns.linux import join, launcher, spawn, supervisor, syscalls

USAGE = """\
usage: pidns exec --target PID [--mount] [--] COMMAND [ARGS...]

Run COMMAND inside the pid namespace of process PID: setns(2) through a pidfd of PID,
then fork, so that COMMAND gets a pid there (its parent, pidns exec, stays outside).

options:
  -t, --target PID  the process whose pid namespace to join
  -m, --mount       join its mount namespace too, so that /proc shows that namespace
  -h, --help        show this help

Without CAP_SYS_ADMIN, PID's user namespace is joined as well when it differs from yours.
exit status: COMMAND's status (128+N if it was killed by signal N); 2 bad usage;
125 cannot join; 126 COMMAND not executable; 127 COMMAND not found.
"""


def parse(argv: list[str]) -> tuple[int, bool, list[str]] | None:
    """(target, mount, command), or None for --help."""
    target: int | None = None
    mount = False
    options, command = scan(argv, ("-t", "--target"))
    for name, value in options:
        if name in ("-t", "--target"):
            if not value.isdigit() or int(value) <= 0:
                raise UsageError(f"{name} needs a pid (a positive number), not {value!r}")
            target = int(value)
        elif name in ("-m", "--mount"):
            mount = True
        elif name in ("-h", "--help"):
            return None
        else:
            raise UsageError(f"unknown option {name!r}")
    if target is None:
        raise UsageError("--target PID is required")
    if not command:
        raise UsageError("no command given")
    return target, mount, command


def main(name: str, argv: list[str]) -> int:
    try:
        parsed = parse(argv)
    except UsageError as exc:
        return usage_error(f"pidns {name}", exc)
    if parsed is None:
        sys.stdout.write(USAGE)
        return 0
    target, mount, command = parsed
    try:
        return _exec(name, target, mount, command)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"pidns {name}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP


def _exec(name: str, target: int, mount: bool, command: list[str]) -> int:
    try:
        sfd, inherited = supervisor.block_signals()  # the command-line process only
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    terminal, foreground = supervisor.foreground_terminal()
    try:
        join.join(target, mount=mount)
    except join.JoinError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    env = dict(os.environ)
    me = syscalls.pidfd_open(os.getpid())
    try:
        path = spawn.resolve(command[0], env)
        child = spawn.fork_exec(
            path,
            command,
            env,
            terminal=terminal if foreground else -1,
            parent_death_signal=int(launcher.SIGKILL),
            watch_pidfd=me,
            inherited=inherited,
        )
    except OSError as exc:
        err = exc.errno or 0
        print(f"pidns {name}: {command[0]}: {exits.describe_exec_error(err)}", file=sys.stderr)
        return exits.for_exec_error(err)
    finally:
        os.close(me)
    ns = launcher.Namespace(command, child, syscalls.pidfd_open(child))
    return supervisor.supervise(ns, sfd, terminal=terminal)
