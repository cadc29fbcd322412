"""``pidns exec``: run a command inside the pid namespace of an existing process.

Its options follow nsenter's where they meet (-t, -m, -U, --preserve-credentials, -w,
--pid=FILE), from one table (``OPTIONS``: name, short, arg, help) shared with the help
text, the man page and the completion.
"""

from __future__ import annotations

import errno
import os
import sys

from pidns.cli.options import (
    Option,
    UsageError,
    format_table,
    help_or_version,
    scan_table,
    usage_error,
)
from pidns.cli.options import pid as options_pid
from pidns.core import exits, flags
from pidns.linux import features, join, launcher, spawn, supervisor, syscalls

OPTIONS = (
    Option("--target", "-t", arg="PID", help="the process whose pid namespace to join"),
    Option("--name", arg="NAME",
           help="the namespace pidns run --name NAME made (through its checked init)"),
    Option("--pid", "-p", arg="FILE", optional=True,
           help="the pid namespace as an nsfs file instead (/proc/PID/ns/pid, "
           "/proc/PID/ns/pid_for_children, or a bind mount of one)"),
    Option("--mount", "-m",
           help="join PID's mount namespace too, so that /proc shows that namespace"),
    Option("--user", "-U",
           help="join PID's user namespace too (without CAP_SYS_ADMIN it is joined "
           "whenever it differs from yours), and become uid 0 and gid 0 there"),
    Option("--preserve-credentials", help="with --user: keep your uid and gid"),
    Option("--root", "-R", arg="DIR", help="COMMAND's root directory (after the join)"),
    Option("--wd", "-w", arg="DIR", help="COMMAND's working directory (after --root)"),
    Option("--version", "-V", help="show pidns's version"),
    Option("--help", "-h", help="show this help"),
)  # fmt: skip

HEAD = """\
usage: pidns exec --target PID [OPTIONS] [--] COMMAND [ARGS...]
       pidns exec --pid=/proc/PID/ns/pid [OPTIONS] [--] COMMAND [ARGS...]
       pidns exec --name NAME [OPTIONS] [--] COMMAND [ARGS...]

Run COMMAND inside the pid namespace of process PID: setns(2) through a pidfd of PID,
then fork, so that COMMAND gets a pid there (its parent, pidns exec, stays outside).

options:
"""
TAIL = """
Without CAP_SYS_ADMIN, PID's user namespace is joined as well when it differs from yours.
exit status: COMMAND's status (128+N if it was killed by signal N); 2 bad usage;
125 cannot join; 126 COMMAND not executable; 127 COMMAND not found.
"""


def usage() -> str:
    return HEAD + format_table(OPTIONS) + TAIL


class ExecArgs:
    """What ``pidns exec`` was asked (``help``/``version``: only that)."""

    __slots__ = (
        "command",
        "help",
        "mount",
        "name",
        "pid_file",
        "preserve_credentials",
        "root",
        "target",
        "user",
        "version",
        "wd",
    )

    def __init__(self) -> None:
        self.target: int | None = None
        self.name: str | None = None  # pidns run --name's
        self.pid_file: str | None = None
        self.mount = False
        self.user = False
        self.preserve_credentials = False
        self.root: str | None = None
        self.wd: str | None = None
        self.command: list[str] = []
        self.help = False
        self.version = False


def parse(argv: list[str]) -> ExecArgs:
    args = ExecArgs()
    options, args.command = scan_table(argv, OPTIONS)
    for name, value in options:
        if name == "--help":
            args.help = True
            return args
        if name == "--version":
            args.version = True
            return args
        if name == "--target":
            if args.target is not None:
                raise UsageError("--target is given more than once")
            args.target = options_pid(name, value)
        elif name == "--name":
            from pidns.linux import registry  # noqa: PLC0415 (only for named namespaces)

            try:
                args.name = registry.check_name(value)
            except ValueError as exc:
                raise UsageError(f"--name: {exc}") from None
        elif name == "--pid":
            args.pid_file = value or None  # bare -p: the target's, which is the default
        elif name == "--mount":
            args.mount = True
        elif name == "--user":
            args.user = True
        elif name == "--preserve-credentials":
            args.preserve_credentials = True
        elif name == "--root":
            args.root = value
        elif name == "--wd":
            args.wd = value
    if args.name is not None and args.target is not None:
        raise UsageError("give one --target or --name")
    if args.target is None and args.pid_file is None and args.name is None:
        raise UsageError("--target PID (or --pid=FILE, or --name NAME) is required")
    if args.target is None and args.name is None and (args.mount or args.user):
        raise UsageError("--mount and --user join PID's namespaces: they need --target PID")
    if not args.command:
        raise UsageError("no command given")
    return args


def main(name: str, argv: list[str]) -> int:
    try:
        args = parse(argv)
    except UsageError as exc:
        return usage_error(f"pidns {name}", exc)
    answered = help_or_version(args.help, args.version, usage)
    if answered is not None:
        return answered
    try:
        return _exec(name, args)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"pidns {name}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP


# What pidns exec cannot do without (docs/kernels.md): the command and the tool watch
# each other through pidfds; joining falls back to /proc/PID/ns files before 5.8.
EXEC_NEEDS = ("pidfd_open",)


def _exec(name: str, args: ExecArgs) -> int:
    lacking = features.first_missing(EXEC_NEEDS)
    if lacking is not None:
        print(f"pidns {name}: {features.Missing(lacking, 'pidns exec')}", file=sys.stderr)
        return exits.EXIT_SETUP
    try:
        sfd, inherited = supervisor.block_signals()  # the command-line process only
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    terminal, foreground = supervisor.foreground_terminal()
    target, pidfd = args.target, -1
    if args.name is not None:
        from pidns.linux import registry  # noqa: PLC0415 (only for named namespaces)

        try:
            entry, pidfd = registry.find(args.name)
        except registry.RegistryError as exc:
            print(f"pidns {name}: {exc}", file=sys.stderr)
            return exits.EXIT_SETUP
        target = entry.pid
    try:
        joined = join.join(
            target, mount=args.mount, user=args.user, pid_file=args.pid_file, pidfd=pidfd
        )
        join.set_root(args.root, args.wd)
    except join.JoinError as exc:
        if pidfd >= 0 and exc.errno == errno.ESRCH:  # it ended in between
            exc = join.JoinError(errno.ESRCH, f"namespace {args.name!r} has ended")
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    # nsenter's rule: entering a user namespace (asked for) makes you its root, unless
    # --preserve-credentials; one joined only for permission keeps the uid you map to
    become_root = args.user and not args.preserve_credentials and bool(joined & flags.NEWUSER)
    env = dict(os.environ)
    me = syscalls.pidfd_open(os.getpid())
    try:
        path = spawn.resolve(args.command[0], env)
        child = spawn.fork_exec(
            path,
            args.command,
            env,
            terminal=terminal if foreground else -1,
            parent_death_signal=int(launcher.SIGKILL),
            watch_pidfd=me,
            inherited=inherited,
            ids=(0, 0) if become_root else (None, None),
        )
    except OSError as exc:
        err = exc.errno or 0
        status, what = spawn.explain_exec_error(args.command[0], err, env)
        print(f"pidns {name}: {args.command[0]}: {what}", file=sys.stderr)
        return status
    finally:
        os.close(me)
    ns = launcher.RunningNamespace(args.command, child, syscalls.pidfd_open(child))
    return supervisor.supervise(ns, sfd, terminal=terminal)
