"""``pidns login-test``: the seed's login flow, for real, so that anyone can watch the shell be
pid 1 of the session's own pid namespace.

The flow of every login program the seed's author surveyed::

    pam_start(SERVICE, USER); pam_open_session      <- pam_pidns unshares CLONE_NEWPID here
    child = fork()                                   <- the child is pid 1 of the new namespace
    child: setgid, initgroups, setuid; exec SHELL [-c COMMAND]
    waitpid(child)                                   <- returns once the whole namespace is gone
    pam_close_session; pam_end

This process forks exactly once after pam_open_session: any other fork would take pid 1.

Exit status: the shell's (128+N if a signal N killed it); 2 usage error, unknown user or
PAM service; 125 setup failure (not root, a PAM call failed, fork failed); 126 the shell
cannot be executed; 127 the shell was not found.
"""

from __future__ import annotations

import os
import pwd
import select
import signal
import sys
from dataclasses import dataclass
from types import FrameType

from pidns.cli.options import HELP, UsageError, check_known, last, scan, usage_error, wants_help
from pidns.core import exits
from pidns.core.exits import EXIT_OK, EXIT_SETUP, EXIT_USAGE
from pidns.linux.syscalls import PR_SET_PDEATHSIG, prctl
from pidns.pam.libpam import Handle, PamError

PAM_DIRS = ("/etc/pam.d", "/usr/lib/pam.d", "/lib/pam.d")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
CAUGHT = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


USAGE = """\
usage: pidns login-test [--service SERVICE] [-s SHELL] [-c COMMAND] [-v] [USER]

Open a PAM session for USER (default: root), fork, drop to USER and run a shell, wait,
close the session: the login flow pam_pidns was made for.

options:
  --service SERVICE      PAM service (a file in /etc/pam.d); default: login
  -s, --shell SHELL      shell to run (default: USER's login shell)
  -c, --command COMMAND  run COMMAND with SHELL -c (default: a login shell)
  -v, --verbose          print each step of the flow on stderr
  -h, --help             show this help

exit status: the shell's (128+N if signal N killed it); 2 bad usage, unknown user or
PAM service; 125 setup failure; 126 the shell cannot be executed; 127 it was not found.
"""

_VALUED = ("--service", "-s", "--shell", "-c", "--command")
_FLAGS = ("-v", "--verbose", *HELP)


class Args:
    __slots__ = ("command", "help", "service", "shell", "user", "verbose")

    def __init__(self, argv: list[str]) -> None:
        options, positional = scan(argv, _VALUED, command=False)
        check_known(options, _VALUED + _FLAGS)
        self.help = wants_help(options)
        if len(positional) > 1:
            raise UsageError(f"unexpected argument {positional[1]!r}")
        self.user = positional[0] if positional else "root"
        self.service = last(options, "--service") or "login"
        self.shell = last(options, "-s", "--shell")
        self.command = last(options, "-c", "--command")
        self.verbose = any(name in ("-v", "--verbose") for name, _ in options)


def main(name: str, argv: list[str]) -> int:
    prog = f"pidns {name}"
    try:
        args = Args(argv)
    except UsageError as error:
        return usage_error(prog, error)
    if args.help:
        sys.stdout.write(USAGE)
        return EXIT_OK
    try:
        user = pwd.getpwnam(args.user)
    except KeyError:
        print(f"{prog}: no such user: {args.user}", file=sys.stderr)
        return EXIT_USAGE
    if not any(os.path.exists(f"{d}/{args.service}") for d in PAM_DIRS):
        where = ", ".join(PAM_DIRS)
        print(f"{prog}: no PAM service {args.service!r} (looked in {where})", file=sys.stderr)
        return EXIT_USAGE
    if os.geteuid() != 0:
        print(f"{prog}: must run as root (it opens PAM sessions and changes user)", file=sys.stderr)
        return EXIT_SETUP
    shell = args.shell or user.pw_shell or "/bin/sh"
    flow = Flow(prog, args.service, user, shell, args.command, args.verbose)
    return flow.run()


@dataclass(frozen=True)
class Flow:
    """One run of the seed's login flow."""

    prog: str
    service: str
    user: pwd.struct_passwd
    shell: str
    command: str | None
    verbose: bool

    def say(self, text: str) -> None:
        if self.verbose:
            print(f"{self.prog}: {text}", file=sys.stderr, flush=True)

    def fail(self, text: str) -> None:
        print(f"{self.prog}: {text}", file=sys.stderr, flush=True)

    def run(self) -> int:
        try:
            pam = Handle(self.service, self.user.pw_name)
        except PamError as error:
            self.fail(str(error))
            return EXIT_SETUP
        with pam:
            self.say(f"pam_start({self.service!r}, {self.user.pw_name!r}): ok")
            try:
                pam.open_session()
            except PamError as error:
                self.fail(f"{error} (the system log says why)")
                return EXIT_SETUP
            self.say("pam_open_session: ok")
            status = self.fork_and_wait(pam.environment())
            try:
                pam.close_session()
                self.say("pam_close_session: ok")
            except PamError as error:
                self.fail(str(error))
            self.say("pam_end")
        return status

    def fork_and_wait(self, pam_env: dict[str, str]) -> int:
        """Fork once; the child becomes the user and execs the shell; wait for it. Signals
        that would end this process end the session instead, with SIGKILL (the shell is a
        pid 1, which ignores the others), so no process of the session outlives the flow."""
        received: list[int] = []
        child = 0

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            received.append(signum)
            if child > 0:
                os.kill(child, signal.SIGKILL)

        previous = {sig: signal.signal(sig, on_signal) for sig in CAUGHT}
        parent_fd = os.pidfd_open(os.getpid())
        try:
            try:
                child = os.fork()
            except OSError as error:
                self.fail(f"fork: {_text(error)}")
                return EXIT_SETUP
            if child == 0:
                self.become_user_and_exec(pam_env, parent_fd)
            if received:
                os.kill(child, signal.SIGKILL)
            self.say(f"fork: child {child} (as seen from here; in a new pid namespace it is 1)")
            _, wait_status = os.waitpid(child, 0)
            self.say(f"waitpid: {exits.describe_wait_status(wait_status, _signal_name)}")
        finally:
            os.close(parent_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if received:
            return exits.EXIT_SIGNAL_BASE + received[0]
        return exits.from_wait_status(wait_status)

    def become_user_and_exec(self, pam_env: dict[str, str], parent_fd: int) -> None:
        """The child, pid 1 of the session's namespace: never returns."""
        user = self.user
        try:
            for sig in CAUGHT:
                signal.signal(sig, signal.SIG_DFL)
            os.setgid(user.pw_gid)
            os.initgroups(user.pw_name, user.pw_gid)
            os.setuid(user.pw_uid)
            # After setuid, which clears it: die with the flow (kernel/exit.c:
            # forget_original_parent sends it, and SIGKILL from an ancestor namespace reaches
            # even a pid 1); then close the race where the parent died first.
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if select.select([parent_fd], [], [], 0)[0]:
                os._exit(EXIT_SETUP)
            os.close(parent_fd)
            try:
                os.chdir(user.pw_dir)
            except OSError:
                os.chdir("/")
        except OSError as error:
            self.fail(f"cannot become {user.pw_name}: {_text(error)}")
            os._exit(EXIT_SETUP)
        env = {
            "PATH": DEFAULT_PATH,
            "TERM": os.environ.get("TERM", "dumb"),
            **pam_env,
            "HOME": user.pw_dir,
            "SHELL": self.shell,
            "USER": user.pw_name,
            "LOGNAME": user.pw_name,
        }
        name = os.path.basename(self.shell)
        # No command: a login shell, started as login(1) starts it ("-bash").
        argv = ["-" + name] if self.command is None else [name, "-c", self.command]
        try:
            os.execve(self.shell, argv, env)
        except OSError as error:
            self.fail(f"{self.shell}: {_text(error)}")
            os._exit(exits.for_exec_error(error.errno or 0))
        finally:
            os._exit(EXIT_SETUP)


def _signal_name(number: int) -> str:
    return signal.Signals(number).name


def _text(error: OSError) -> str:
    return os.strerror(error.errno or 0)
