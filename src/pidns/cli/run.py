"""``pidns run``: a command in a fresh pid namespace, with an init as pid 1.

The import path is kept lean on purpose (this module wraps every command it runs): no
argparse, no json unless a report is asked for, nothing from the model.
"""

from __future__ import annotations

import sys

from pidns.cli.options import UsageError, scan
from pidns.linux import launcher, spawn, userns

TYPE_CHECKING = False  # typing costs start-up time: annotations only
if TYPE_CHECKING:
    from typing import IO

EXIT_USAGE = 2

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
  --grace SECONDS         with --wait-all: when COMMAND exits, SIGTERM every process
                          left, then SIGKILL what remains after SECONDS
  --forward-to-group      forward signals to COMMAND's process group
  --json-report FILE      write a JSON report of the run to FILE ('-': stdout)
  -f, --fork              accepted for unshare compatibility (pidns always forks)
  -h, --help              show this help

exit status: COMMAND's status (128+N if it was killed by signal N); 2 bad usage;
125 setup failure; 126 COMMAND not executable; 127 COMMAND not found.
"""


class Args:
    __slots__ = ("argv", "help", "options", "report")

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.help = False
        self.report: str | None = None
        self.options = launcher.Options()


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
}
_WITH_VALUE = ("--grace", "--json-report")


def parse(argv: list[str]) -> Args:
    """Options up to ``--`` or the first word that is not one; the rest is the command."""
    args = Args()
    settings: dict[str, object] = {}
    options, args.argv = scan(argv, _WITH_VALUE)
    for name, value in options:
        if name == "--grace":
            try:
                settings["grace"] = float(value)
            except ValueError:
                raise UsageError(f"--grace needs a number of seconds, not {value!r}") from None
        elif name == "--json-report":
            args.report = value
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
    if "grace" in settings and not settings.get("wait_all"):
        raise UsageError("--grace applies to --wait-all")
    try:
        args.options = launcher.Options(**settings)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(str(exc).replace("_", "-")) from None
    return args


def main(name: str, argv: list[str]) -> int:
    # First of all: from here on a ^C or a TERM is queued for the command, never a
    # KeyboardInterrupt. (The command-line process only: the mask is not restored.)
    sfd = launcher.block_signals()
    try:
        args = parse(argv)
    except UsageError as exc:
        print(f"pidns {name}: {exc} (see pidns {name} --help)", file=sys.stderr)
        return EXIT_USAGE
    if args.help:
        sys.stdout.write(USAGE)
        return 0
    report_file = None
    if args.report not in (None, "-"):
        try:
            report_file = open(args.report, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            print(f"pidns {name}: cannot write the report: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        status, ns = _run(name, args, sfd)
    except Exception as exc:  # a bug of ours: still one line, never a traceback
        print(f"pidns {name}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return spawn.EXIT_SETUP
    if args.report is not None and ns is not None:
        _write_report(name, ns, report_file)
    return status


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


def _run(name: str, args: Args, sfd: int) -> tuple[int, launcher.Namespace | None]:
    terminal, foreground = launcher.foreground_terminal()
    try:
        ns = launcher.start(
            args.argv,
            args.options,
            terminal=terminal if foreground else -1,
            job_control=terminal >= 0,
            parent_death_signal=True,
            namespace_ids=args.report is not None,
        )
    except launcher.SetupError as exc:
        print(f"pidns {name}: {exc}", file=sys.stderr)
        return spawn.EXIT_SETUP, None
    except OSError as exc:
        err = exc.errno or 0
        print(f"pidns {name}: {args.argv[0]}: {spawn.describe(err)}", file=sys.stderr)
        return spawn.exit_status_for(err), None
    return launcher.supervise(ns, sfd, terminal=terminal), ns
