"""``pidns run``: a command in a fresh pid namespace, with an init as pid 1.

The import path is kept lean on purpose (this module wraps every command it runs): no
argparse, no json unless a report is asked for, nothing from the model.
"""

from __future__ import annotations

import os
import sys

from pidns import environment
from pidns.cli.options import (
    Option,
    UsageError,
    format_table,
    help_or_version,
    is_number,
    scan_table,
    usage_error,
)
from pidns.core import exits
from pidns.linux import fastsignal, launcher, spawn, statusfd, supervisor, syscalls, userns

TYPE_CHECKING = False  # typing costs start-up time: annotations only
if TYPE_CHECKING:
    from typing import IO

    from pidns.linux import registry


# The one table of run's options: the help below, the man page and the shell completion
# are made from it. unshare's options keep unshare's letters and meanings.
OPTIONS = (
    Option("--as-pid-1", help="make COMMAND itself pid 1 (no init)"),
    Option("--mount-proc", arg="DIR", optional=True,
           help="a new mount namespace with a fresh /proc over DIR (/proc: the default)"),
    Option("--no-mount-proc", help="no fresh /proc (with -m: a mount namespace without one)"),
    Option("--mount", "-m", help="a new mount namespace (made with --mount-proc anyway)"),
    Option("--propagation", arg="MODE",
           help="private (the default), shared, slave or unchanged: the mounts' "
           "propagation in the new mount namespace"),
    Option("--root", "-R", arg="DIR", help="COMMAND's root directory (chroot), before --wd "
           "and /proc"),
    Option("--wd", "-w", arg="DIR", help="COMMAND's working directory"),
    Option("--pid", "-p", help="accepted for unshare: pidns always makes a pid namespace"),
    Option("--fork", "-f", help="accepted for unshare: pidns always forks"),
    Option("--user", "-U", help="a new user namespace (nothing mapped unless a --map "
           "option says; the default without CAP_SYS_ADMIN is -r)"),
    Option("--map-root-user", "-r", help="a user namespace mapping you to root"),
    Option("--map-current-user", "-c",
           help="a user namespace mapping you to your own uid and gid"),
    Option("--map-user", arg="UID", help="a user namespace mapping you to UID (or a name)"),
    Option("--map-group", arg="GID", help="a user namespace mapping your group to GID"),
    Option("--map-users", arg="MAP",
           help="also map subordinate uids with newuidmap: INNER:OUTER:COUNT, "
           "OUTER,INNER,COUNT (util-linux 2.38's order) or auto (/etc/subuid's first range, "
           "from 0)"),
    Option("--map-groups", arg="MAP",
           help="also map subordinate gids with newgidmap (as --map-users, /etc/subgid)"),
    Option("--map-auto", help="--map-users=auto --map-groups=auto"),
    Option("--setgroups", arg="allow|deny", help="allow or deny setgroups(2) in the user "
           "namespace (deny when you map your own gid alone)"),
    Option("--setuid", "-S", arg="UID", help="COMMAND's uid (in the user namespace)"),
    Option("--setgid", "-G", arg="GID",
           help="COMMAND's gid; the supplementary groups are dropped"),
    Option("--wait-all", help="when COMMAND exits, wait until the namespace is empty"),
    Option("--grace", arg="SECONDS",
           help="SIGKILL what is left SECONDS after a catchable shutdown signal (default "
           "10); with --wait-all: SIGTERM then SIGKILL when COMMAND exits"),
    Option("--kill-signal", arg="SIG",
           help="the shutdown's signal to what is left (default KILL; TERM for --timeout)"),
    Option("--timeout", arg="DURATION",
           help="after DURATION (5, 1.5s, 2m, 1h, 1d) the shutdown signal to every process; "
           "exit status 124"),
    Option("--parent-death-signal", arg="SIG",
           help="what every process gets if pidns run dies (default KILL; a catchable one "
           "is followed by KILL after the grace)"),
    Option("--kill-child", arg="SIG", optional=True,
           help="unshare's name for --parent-death-signal (default KILL)"),
    Option("--rewrite-signal", arg="FROM:TO",
           help="forward FROM as TO (TO 0: drop it); repeatable"),
    Option("--remap-exit", arg="CODE", help="exit 0 when COMMAND's status is CODE; repeatable"),
    Option("--die-by-signal", help="die of COMMAND's signal instead of exiting 128+N"),
    Option("--forward-to-group", help="forward signals to COMMAND's process group"),
    Option("--pause", help="no COMMAND: the init holds the namespace open (as catatonit -P) "
           "for pidns exec, until pidns stop or a TERM, INT or HUP"),
    Option("--name", arg="NAME", help="record the namespace as NAME, for pidns exec --name, "
           "pidns ls and pidns stop (in $XDG_RUNTIME_DIR/pidns)"),
    Option("--json-report", arg="FILE", help="a JSON report of the run to FILE (-: stdout)"),
    Option("--json-status-fd", arg="FD",
           help="JSON Lines on FD as bwrap writes them: the pids and namespaces once "
           "COMMAND runs, then its exit code"),
    Option("--pid-file", arg="FILE",
           help="COMMAND's pid (as you see it) written to FILE before COMMAND runs"),
    Option("--fallback", arg="MODE",
           help="where no pid namespace can be made: fail (exit 125, the default, or "
           "$PIDNS_FALLBACK) or subreaper (COMMAND under a child subreaper: pids not "
           "isolated)"),
    Option("--verbose", "-v",
           help="log forwarded signals, reaped orphans and the shutdown on stderr"),
    Option("--version", "-V", help="show pidns's version"),
    Option("--help", "-h", help="show this help"),
)  # fmt: skip

HEAD = """\
usage: pidns run [OPTIONS] [--] COMMAND [ARGS...]
       pidns run --pause [--name NAME] [OPTIONS]

Run COMMAND in a new pid namespace. A pidns init is pid 1 (it reaps orphans, forwards
signals, and kills what is left when COMMAND exits); COMMAND is pid 2.

options:
"""
TAIL = """
exit status: COMMAND's status (128+N if it was killed by signal N); 2 bad usage;
124 --timeout ran out; 125 setup failure; 126 COMMAND not executable; 127 COMMAND not found.
"""


def usage() -> str:
    return HEAD + format_table(OPTIONS) + TAIL


class Args:
    __slots__ = (
        "argv",
        "die_by_signal",
        "help",
        "name",
        "options",
        "pid_file",
        "report",
        "status_fd",
        "version",
        "wd",
    )

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.help = False
        self.name: str | None = None
        self.version = False
        self.report: str | None = None
        self.status_fd = -1
        self.pid_file: str | None = None
        self.die_by_signal = False
        self.wd: str | None = None
        # replaced by parse(); not from $PIDNS_FALLBACK yet, whose errors parse() reports
        self.options = launcher.Options(fallback=launcher.FALLBACK_FAIL)


_FLAGS = {
    "--as-pid-1": ("as_pid_1", True),
    "--wait-all": ("wait_all", True),
    "--forward-to-group": ("forward_to_group", True),
    "--verbose": ("verbose", True),
    "--pause": ("pause", True),
}
_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """timeout(1)'s DURATION: a number with an optional unit s, m, h or d; > 0."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _DURATION_UNITS else (text, "s")
    try:
        value = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise UsageError(f"--timeout needs a duration (5, 1.5s, 2m, 1h), not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"--timeout needs a duration > 0, not {text!r}")
    return value


def parse_signal(option: str, text: str, *, zero: bool = False) -> int:
    """A signal by name (TERM, SIGTERM) or number; ``zero`` admits 0 (no signal)."""
    from pidns.core import signals  # noqa: PLC0415 (its enum costs start-up: only when asked)

    if zero and text.strip() == "0":
        return 0
    try:
        return signals.number(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _parse_fd(option: str, text: str) -> int:
    if not is_number(text):
        raise UsageError(f"{option} needs a file descriptor number, not {text!r}")
    fd = int(text)
    try:
        os.fstat(fd)
    except OSError:
        raise UsageError(f"{option} {fd}: not an open file descriptor") from None
    return fd


def _number(option: str, text: str) -> int:
    if not text.isdigit():
        raise UsageError(f"{option} needs a number, not {text!r}")
    return int(text)


def _id(option: str, text: str, database: str) -> int:
    """A uid or gid by number or by name (pwd/grp are imported only for a name)."""
    if text.isdigit():
        return int(text)
    try:
        if database == "passwd":
            import pwd  # noqa: PLC0415

            return pwd.getpwnam(text).pw_uid
        import grp  # noqa: PLC0415

        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise UsageError(f"{option}: no such {'user' if database == 'passwd' else 'group'} "
                         f"{text!r}") from None  # fmt: skip


def _range(option: str, text: str, subid: str) -> tuple[int, int, int]:
    """--map-users/--map-groups: INNER:OUTER:COUNT (util-linux 2.39), OUTER,INNER,COUNT
    (2.38) or auto (the first range ``subid`` grants the caller, from inner id 0)."""
    if text == "auto":
        uid = os.geteuid()
        try:
            import pwd  # noqa: PLC0415

            name: str | None = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = None
        try:
            return userns.subordinate_range(subid, uid, name)
        except LookupError as exc:
            raise UsageError(f"{option}=auto: {exc}") from None
    separator = ":" if ":" in text else ","
    parts = text.split(separator)
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) == 0:
        raise UsageError(f"{option} needs INNER:OUTER:COUNT or auto, not {text!r}")
    a, b, count = (int(p) for p in parts)
    return (a, b, count) if separator == ":" else (b, a, count)


def parse(argv: list[str]) -> Args:
    """Options up to ``--`` or the first word that is not one; the rest is the command."""
    args = Args()
    settings: dict[str, object] = {}
    options, args.argv = scan_table(argv, OPTIONS)
    rewrite: dict[int, int] = {}
    remap: list[int] = []
    ids: dict[str, object] = {}  # the user namespace's IdMap, as far as given
    user_namespace = False
    uid_ids: list[int | None] = [None, None]  # -S, -G
    mount_proc: bool | str | None = None
    shortcut = None  # -r or -c
    for name, value in options:
        if name == "--help":
            args.help = True
            return args
        if name == "--version":
            args.version = True
            return args
        if name == "--grace":
            try:
                settings["grace"] = float(value)
            except ValueError:
                raise UsageError(f"--grace needs a number of seconds, not {value!r}") from None
        elif name == "--json-report":
            args.report = value
        elif name == "--name":
            args.name = _name(value)
        elif name == "--kill-signal":
            settings["kill_signal"] = parse_signal(name, value)
        elif name == "--parent-death-signal":
            settings["launcher_death_signal"] = parse_signal(name, value)
        elif name == "--kill-child":
            settings["launcher_death_signal"] = parse_signal(name, value or "KILL")
        elif name == "--timeout":
            settings["timeout"] = parse_duration(value)
        elif name == "--rewrite-signal":
            source, colon, target = value.partition(":")
            if not colon:
                raise UsageError(f"--rewrite-signal needs FROM:TO, not {value!r}")
            rewrite[parse_signal(name, source)] = parse_signal(name, target, zero=True)
            settings["rewrite"] = rewrite
        elif name == "--remap-exit":
            if not is_number(value) or int(value) > 255:
                raise UsageError(f"--remap-exit needs an exit status 0-255, not {value!r}")
            remap.append(int(value))
            settings["remap_exit"] = tuple(remap)
        elif name == "--json-status-fd":
            args.status_fd = _parse_fd(name, value)
        elif name == "--pid-file":
            args.pid_file = value
        elif name == "--die-by-signal":
            args.die_by_signal = True
        elif name == "--fallback":
            settings["fallback"] = value
        elif name == "--mount-proc":
            mount_proc = value or True
        elif name == "--no-mount-proc":
            mount_proc = False
        elif name == "--mount":
            settings["mount_ns"] = True
        elif name == "--propagation":
            settings["propagation"] = value
        elif name == "--root":
            settings["root"] = value
        elif name == "--wd":
            args.wd = value
        elif name in ("--pid", "--fork"):
            pass  # what pidns always does
        elif name == "--user":
            user_namespace = True
        elif name in ("--map-root-user", "--map-current-user"):
            if shortcut not in (None, name):
                raise UsageError("--map-root-user and --map-current-user exclude each other")
            shortcut = name
        elif name == "--map-user":
            ids["user"] = _id(name, value, "passwd")
        elif name == "--map-group":
            ids["group"] = _id(name, value, "group")
        elif name == "--map-users":
            ids["users"] = (_range(name, value, "/etc/subuid"),)
        elif name == "--map-groups":
            ids["groups"] = (_range(name, value, "/etc/subgid"),)
        elif name == "--map-auto":
            ids["users"] = (_range(name, "auto", "/etc/subuid"),)
            ids["groups"] = (_range(name, "auto", "/etc/subgid"),)
        elif name == "--setgroups":
            if value not in ("allow", "deny"):
                raise UsageError(f"--setgroups needs allow or deny, not {value!r}")
            ids["setgroups"] = value
        elif name == "--setuid":
            uid_ids[0] = _number(name, value)
        elif name == "--setgid":
            uid_ids[1] = _number(name, value)
        else:
            key, setting = _FLAGS[name]
            settings[key] = setting
    if settings.get("pause"):
        if args.argv:
            raise UsageError(f"--pause takes no command (not {args.argv[0]!r})")
    elif not args.argv:
        raise UsageError("no command given")
    if not settings.get("as_pid_1"):  # the environment's defaults, for an init
        try:
            settings.setdefault("grace", environment.grace())
            settings.setdefault("verbose", environment.verbose())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if mount_proc is not None:
        settings["mount_proc"] = mount_proc
        if mount_proc is False and "mount_ns" not in settings:
            settings["mount_ns"] = False
    if shortcut is not None:
        mapping = userns.MAP_ROOT if shortcut == "--map-root-user" else userns.MAP_CURRENT
        if not ids and not user_namespace:
            settings["map_user"] = mapping  # what the Python API's map_user says
        else:  # -r or -c, then refined (unshare: the last --map-user wins)
            of = userns.IdMap.of(mapping, os.geteuid(), os.getegid())
            ids = {"user": of.user, "group": of.group, **ids}
    if ids or user_namespace:
        try:
            settings["id_map"] = userns.IdMap(**ids)  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsageError(f"--{exc}") from None
    if uid_ids != [None, None]:
        settings["ids"] = tuple(uid_ids)
    try:
        args.options = launcher.Options(**settings)  # type: ignore[arg-type]
    except ValueError as exc:
        if "fallback" in str(exc) and "fallback" not in settings:
            raise UsageError(f"${launcher.FALLBACK_ENV}: {exc}") from None
        raise UsageError(str(exc).replace("_", "-")) from None
    return args


def _name(value: str) -> str:
    from pidns.linux import registry  # noqa: PLC0415 (only for named namespaces)

    try:
        return registry.check_name(value)
    except ValueError as exc:
        raise UsageError(f"--name: {exc}") from None


def main(name: str, argv: list[str]) -> int:
    # First of all: from here on a ^C or a TERM is queued for the command, never a
    # KeyboardInterrupt. (The command-line process only: the mask is not restored.)
    try:
        sfd, inherited = supervisor.block_signals()
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    try:
        args = parse(argv)
    except UsageError as exc:
        return usage_error(f"pidns {name}", exc)
    answered = help_or_version(args.help, args.version, usage)
    if answered is not None:
        return answered
    report_file = None
    if args.report not in (None, "-"):
        try:
            # not truncated yet: a run whose setup fails leaves an existing report as it was
            fd = os.open(args.report, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            report_file = open(fd, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(f"pidns {name}: cannot write the report: {exc}", file=sys.stderr)
            return exits.EXIT_USAGE
    pid_file = -1
    if args.pid_file is not None:
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
            pid_file = os.open(args.pid_file, flags, 0o644)
        except OSError as exc:
            print(f"pidns {name}: cannot write the pid file: {exc}", file=sys.stderr)
            return exits.EXIT_USAGE
    if args.status_fd >= 0:
        os.set_inheritable(args.status_fd, False)  # the init's, not the command's
    try:
        status, ns = _run(name, args, sfd, inherited, pid_file)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"pidns {name}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP
    if args.report is not None and ns is not None:
        if not _write_report(name, ns, report_file):
            return exits.EXIT_USAGE  # docs/run.md: a report that cannot be written is 2
    elif report_file is not None:
        report_file.close()
    if args.die_by_signal and ns is not None:
        _die_like(ns, status)
    return status


def _die_like(ns: launcher.RunningNamespace, status: int) -> None:
    """Die of the signal that killed the command, as unshare does: its default action,
    without a core dump (the command dumped its own). Returns if it did not kill us (a
    signal whose default is to ignore or stop), and when the status was rewritten
    (timeout, --remap-exit)."""
    wait = ns.command_status if ns.command_status is not None else ns.wait_status
    if wait is None or not os.WIFSIGNALED(wait) or status != 128 + os.WTERMSIG(wait):
        return
    import resource  # noqa: PLC0415 (only here)

    sig = os.WTERMSIG(wait)
    sys.stdout.flush()
    sys.stderr.flush()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sig != fastsignal.SIGKILL:  # (SIGKILL has no disposition to set: EINVAL)
        fastsignal.signal(sig, fastsignal.SIG_DFL)
    os.kill(os.getpid(), sig)
    fastsignal.pthread_sigmask(fastsignal.SIG_UNBLOCK, (sig,))


def _write_report(name: str, ns: launcher.RunningNamespace, report_file: IO[str] | None) -> bool:
    """Write the report; False (and one line said) if it could not be written."""
    import json  # noqa: PLC0415 (kept off the start-up path)

    text = json.dumps(ns.report(), indent=2) + "\n"
    try:
        if report_file is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with report_file:
                report_file.truncate(0)
                report_file.write(text)
    except OSError as exc:
        print(f"pidns {name}: cannot write the report: {exc.strerror or exc}", file=sys.stderr)
        return False
    return True


def _run(
    name: str, args: Args, sfd: int, inherited: spawn.Inherited, pid_file: int
) -> tuple[int, launcher.RunningNamespace | None]:
    if args.name is None:
        return _run_namespace(name, args, sfd, inherited, pid_file, None)
    from pidns.linux import registry  # noqa: PLC0415 (only for named namespaces)

    try:
        entry = registry.reserve(args.name)
    except registry.RegistryError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP, None
    try:
        return _run_namespace(name, args, sfd, inherited, pid_file, entry)
    finally:
        registry.remove(entry.name, entry)


def _run_namespace(
    name: str,
    args: Args,
    sfd: int,
    inherited: spawn.Inherited,
    pid_file: int,
    entry: registry.Entry | None,
) -> tuple[int, launcher.RunningNamespace | None]:
    terminal, foreground = supervisor.foreground_terminal()
    if args.options.pause:
        foreground = False  # no command to give the terminal to
    command_pid = 1 if args.options.as_pid_1 else 2  # the init's first child is pid 2
    env = spawn.socket_activation(os.environ, os.getpid(), command_pid)
    status_fd = statusfd.StatusFd(args.status_fd)
    try:
        ns = launcher.start(
            args.argv,
            args.options,
            env=env,
            cwd=args.wd,
            terminal=terminal if foreground else -1,
            job_control=terminal >= 0 and not args.options.pause,
            parent_death_signal=True,
            namespace_ids=args.report is not None,
            pid_file=pid_file,
            # with a report: a quick command's init may be gone before its /proc is read
            namespace_inodes=args.status_fd >= 0 or args.report is not None,
            inherited=inherited,
            notice=lambda text: print(f"pidns {name}: {text}", file=sys.stderr, flush=True),
        )
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP, None
    except OSError as exc:
        err = exc.errno or 0
        if exc.filename != args.argv[0]:  # not the command's exec: a call of ours failed
            print(f"pidns {name}: cannot set the namespace up: {exc}", file=sys.stderr)
            return exits.EXIT_SETUP, None
        status, what = spawn.explain_exec_error(args.argv[0], err, env)
        print(f"pidns {name}: {args.argv[0]}: {what}", file=sys.stderr)
        return status, None
    finally:
        if pid_file >= 0:
            os.close(pid_file)
    if entry is not None:
        from pidns.linux import registry  # noqa: PLC0415 (only for named namespaces)

        try:
            registry.record(entry, ns.init_pid)
        except OSError as exc:
            ns.kill()
            ns.wait()
            print(f"pidns {name}: cannot record namespace {entry.name!r}: {exc}", file=sys.stderr)
            return exits.EXIT_SETUP, ns
    status_fd.started(ns.pid, ns.init_pid, ns.pid_in_namespace, ns.namespace_inodes)
    if ns.subreaper:
        # A second line, for the command-line launcher only (it has no other children):
        # should the fallback's init itself be killed, its orphans come here, and are
        # killed once it is reaped.
        syscalls.set_child_subreaper(True)
    try:
        status = supervisor.supervise(ns, sfd, terminal=terminal)
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return exits.EXIT_SETUP, ns
    finally:
        if ns.subreaper:
            _kill_orphans()
    if ns.command_status is None and not ns.direct and status == exits.EXIT_SETUP:
        print(f"pidns {name}: pid 1 ended without reporting the command's status", file=sys.stderr)
    status_fd.exited(status)
    return status, ns


def _kill_orphans() -> None:
    from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

    subreaper.kill_tree(os.getpid())
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return
