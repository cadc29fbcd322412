"""``pidns run``: a command in a fresh pid namespace, with an init as pid 1.

The import path is kept lean on purpose (this module wraps every command it runs): no
argparse, no json unless a report is asked for, nothing from the model.
"""

from __future__ import annotations

import os
import sys

from pidns.cli.options import UsageError, scan, usage_error
from pidns.core import exits
from pidns.linux import fastsignal, launcher, spawn, statusfd, supervisor, syscalls, userns

TYPE_CHECKING = False  # typing costs start-up time: annotations only
if TYPE_CHECKING:
    from typing import IO


USAGE = """\
usage: pidns run [OPTIONS] [--] COMMAND [ARGS...]

Run COMMAND in a new pid namespace. A pidns init is pid 1 (it reaps orphans, forwards
signals, and kills what is left when COMMAND exits); COMMAND is pid 2.

options:
  --as-pid-1              make COMMAND itself pid 1 (no init)
  --mount-proc            a new mount namespace with a fresh /proc (the default)
  --no-mount-proc         keep the caller's mounts and /proc
  -r, --map-root-user     a user namespace mapping you to root (default without
                          CAP_SYS_ADMIN)
  -c, --map-current-user  a user namespace mapping you to your own uid and gid
  --wait-all              when COMMAND exits, wait until the namespace is empty
  --grace SECONDS         SIGKILL what is left SECONDS after a catchable shutdown
                          signal (default 10; with --wait-all: SIGTERM then SIGKILL)
  --kill-signal SIG       the shutdown's signal (default KILL; TERM for --timeout)
  --timeout DURATION      end the run after DURATION (5, 1.5s, 2m, 1h, 1d): the shutdown
                          signal to every process, exit status 124
  --parent-death-signal SIG  what every process gets if pidns run dies (default KILL;
                          a catchable one is followed by KILL after the grace)
  --rewrite-signal FROM:TO   forward FROM as TO (TO 0: drop it); repeatable
  --remap-exit CODE       exit 0 when COMMAND's status is CODE; repeatable
  --die-by-signal         die of COMMAND's signal instead of exiting 128+N
  --forward-to-group      forward signals to COMMAND's process group
  --json-report FILE      write a JSON report of the run to FILE ('-': stdout)
  --json-status-fd FD     JSON Lines on FD as bwrap writes them: the pids and
                          namespaces once COMMAND runs, then its exit code
  --pid-file FILE         write COMMAND's pid (as the caller sees it) to FILE before
                          COMMAND runs
  -v, --verbose           log forwarded signals, reaped orphans and the shutdown on
                          stderr
  --fallback MODE         where no pid namespace can be made: 'fail' (exit 125,
                          the default, or $PIDNS_FALLBACK) or 'subreaper' (run
                          COMMAND under a child subreaper: pids not isolated)
  -f, --fork              accepted for unshare compatibility (pidns always forks)
  -h, --help              show this help

exit status: COMMAND's status (128+N if it was killed by signal N); 2 bad usage;
125 setup failure; 126 COMMAND not executable; 127 COMMAND not found.
"""


class Args:
    __slots__ = ("argv", "die_by_signal", "help", "options", "pid_file", "report", "status_fd")

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.help = False
        self.report: str | None = None
        self.status_fd = -1
        self.pid_file: str | None = None
        self.die_by_signal = False
        # replaced by parse(); not from $PIDNS_FALLBACK yet, whose errors parse() reports
        self.options = launcher.Options(fallback=launcher.FALLBACK_FAIL)


_FLAGS = {
    "--as-pid-1": ("as_pid_1", True),
    "--mount-proc": ("mount_proc", True),
    "--no-mount-proc": ("mount_proc", False),
    "-r": ("map_user", userns.MAP_ROOT),
    "--map-root-user": ("map_user", userns.MAP_ROOT),
    "-c": ("map_user", userns.MAP_CURRENT),
    "--map-current-user": ("map_user", userns.MAP_CURRENT),
    "--wait-all": ("wait_all", True),
    "--forward-to-group": ("forward_to_group", True),
    "-v": ("verbose", True),
    "--verbose": ("verbose", True),
}
_WITH_VALUE = (
    "--grace",
    "--json-report",
    "--kill-signal",
    "--timeout",
    "--parent-death-signal",
    "--rewrite-signal",
    "--remap-exit",
    "--json-status-fd",
    "--pid-file",
    "--fallback",
)
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
    if not text.isdigit():
        raise UsageError(f"{option} needs a file descriptor number, not {text!r}")
    fd = int(text)
    try:
        os.fstat(fd)
    except OSError:
        raise UsageError(f"{option} {fd}: not an open file descriptor") from None
    return fd


def parse(argv: list[str]) -> Args:
    """Options up to ``--`` or the first word that is not one; the rest is the command."""
    args = Args()
    settings: dict[str, object] = {}
    options, args.argv = scan(argv, _WITH_VALUE)
    rewrite: dict[int, int] = {}
    remap: list[int] = []
    for name, value in options:
        if name == "--grace":
            try:
                settings["grace"] = float(value)
            except ValueError:
                raise UsageError(f"--grace needs a number of seconds, not {value!r}") from None
        elif name == "--json-report":
            args.report = value
        elif name == "--kill-signal":
            settings["kill_signal"] = parse_signal(name, value)
        elif name == "--parent-death-signal":
            settings["launcher_death_signal"] = parse_signal(name, value)
        elif name == "--timeout":
            settings["timeout"] = parse_duration(value)
        elif name == "--rewrite-signal":
            source, colon, target = value.partition(":")
            if not colon:
                raise UsageError(f"--rewrite-signal needs FROM:TO, not {value!r}")
            rewrite[parse_signal(name, source)] = parse_signal(name, target, zero=True)
            settings["rewrite"] = rewrite
        elif name == "--remap-exit":
            if not value.isdigit() or int(value) > 255:
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
        elif name in ("-h", "--help"):
            args.help = True
            return args
        elif name in ("-f", "--fork"):
            pass
        elif name in _FLAGS:
            key, setting = _FLAGS[name]
            if key == "map_user" and settings.get(key, setting) != setting:
                raise UsageError("--map-root-user and --map-current-user exclude each other")
            settings[key] = setting
        else:
            raise UsageError(f"unknown option {name!r}")
    if not args.argv:
        raise UsageError("no command given")
    try:
        args.options = launcher.Options(**settings)  # type: ignore[arg-type]
    except ValueError as exc:
        if "fallback" in str(exc) and "fallback" not in settings:
            raise UsageError(f"${launcher.FALLBACK_ENV}: {exc}") from None
        raise UsageError(str(exc).replace("_", "-")) from None
    return args


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
    if args.help:
        sys.stdout.write(USAGE)
        return 0
    report_file = None
    if args.report not in (None, "-"):
        try:
            report_file = open(args.report, "w", encoding="utf-8")  # noqa: SIM115
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
        _write_report(name, ns, report_file)
    if args.die_by_signal and ns is not None:
        _die_like(ns, status)
    return status


def _die_like(ns: launcher.Namespace, status: int) -> None:
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
    fastsignal.signal(sig, fastsignal.SIG_DFL)
    os.kill(os.getpid(), sig)
    fastsignal.pthread_sigmask(fastsignal.SIG_UNBLOCK, (sig,))


def _write_report(name: str, ns: launcher.Namespace, report_file: IO[str] | None) -> None:
    import json  # noqa: PLC0415 (kept off the start-up path)

    text = json.dumps(ns.report(), indent=2) + "\n"
    try:
        if report_file is None:
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with report_file:
                report_file.write(text)
    except OSError as exc:
        print(f"pidns {name}: cannot write the report: {exc}", file=sys.stderr)


def _run(
    name: str, args: Args, sfd: int, inherited: spawn.Inherited, pid_file: int
) -> tuple[int, launcher.Namespace | None]:
    terminal, foreground = supervisor.foreground_terminal()
    command_pid = 1 if args.options.as_pid_1 else 2  # the init's first child is pid 2
    env = spawn.socket_activation(os.environ, os.getpid(), command_pid)
    status_fd = statusfd.StatusFd(args.status_fd)
    try:
        ns = launcher.start(
            args.argv,
            args.options,
            env=env,
            terminal=terminal if foreground else -1,
            job_control=terminal >= 0,
            parent_death_signal=True,
            namespace_ids=args.report is not None,
            pid_file=pid_file,
            namespace_inodes=args.status_fd >= 0,
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
        print(f"pidns {name}: {args.argv[0]}: {exits.describe_exec_error(err)}", file=sys.stderr)
        return exits.for_exec_error(err), None
    finally:
        if pid_file >= 0:
            os.close(pid_file)
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
