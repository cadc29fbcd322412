"""The launcher: make the namespace with one clone3, hand the init its plan, supervise it.

``start`` is shared by ``pidns run`` and the Python API. It calls clone3 with
CLONE_NEWPID (plus CLONE_NEWNS for /proc, plus CLONE_NEWUSER when the caller lacks
CAP_SYS_ADMIN or asks for a mapping), so the caller itself never changes namespace and
the child is pid 1 at once (kernel/fork.c:copy_process, kernel/nsproxy.c:copy_namespaces).
Before clone3 it opens a pidfd of itself and an fd of its own pid namespace for the child
to inherit: the pidfd tells the init when the launcher has died, however early
(race-free, unlike the parent-death signal alone), the namespace fd lets the init name
the command's pid as the launcher sees it (NS_GET_PID_IN_PIDNS).

Every catchable signal is blocked in the calling thread across clone3, so the init starts
with them blocked and reads them from its signalfd: none is lost in between.

The command-line launcher's loop (signals, the terminal) is pidns.linux.supervisor; the
status channel's wire format is pidns.linux.status_channel.
"""

from __future__ import annotations

import errno
import os
import select
import time

from pidns import environment
from pidns.core import exits
from pidns.core import flags as cf
from pidns.core.abi import WALL
from pidns.linux import fastsignal as signal
from pidns.linux import mounts, nsfs, spawn, status_channel, syscalls, userns
from pidns.linux.init import CATCHABLE, Plan, become_init

TYPE_CHECKING = False  # typing costs `pidns run` start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    _Started = TypeVar("_Started", bound="RunningNamespace")

SIGKILL = int(signal.SIGKILL)
SIGCHLD = int(signal.SIGCHLD)


class SetupError(OSError):
    """The namespace could not be set up (exit status 125); ``str()`` is one line.
    ``stage``: the step that failed (see linux/diagnose.py)."""

    stage = "setup"

    def __str__(self) -> str:
        return str(self.strerror)


def _setup_error(err: int, text: str, stage: str) -> SetupError:
    exc = SetupError(err, text)
    exc.stage = stage
    return exc


FALLBACK_FAIL = "fail"  # no pid namespace: exit 125 (the default)
FALLBACK_SUBREAPER = "subreaper"  # no pid namespace: a child subreaper instead
FALLBACKS = (FALLBACK_FAIL, FALLBACK_SUBREAPER)
FALLBACK_ENV = "PIDNS_FALLBACK"
# the failures that mean "no pid namespace can be had here"; a /proc that cannot be
# mounted is not one of them: the fallback then keeps the pid namespace, without it
NO_PID_NAMESPACE = ("clone", "user_namespace", "mount")


class Options:
    """How to build the namespace: the options of ``pidns run`` and of the Python API."""

    __slots__ = (
        "as_pid_1",
        "fallback",
        "forward_to_group",
        "grace",
        "id_map",
        "ids",
        "kill_signal",
        "launcher_death_signal",
        "map_user",
        "mount_ns",
        "mount_proc",
        "pause",
        "propagation",
        "remap_exit",
        "rewrite",
        "root",
        "timeout",
        "verbose",
        "wait_all",
    )

    def __init__(
        self,
        *,
        mount_proc: bool | str = True,
        as_pid_1: bool = False,
        map_user: str | None = None,
        wait_all: bool = False,
        grace: float | None = None,
        forward_to_group: bool = False,
        kill_signal: int = 0,
        launcher_death_signal: int = SIGKILL,
        timeout: float | None = None,
        rewrite: dict[int, int] | None = None,
        remap_exit: tuple[int, ...] = (),
        verbose: bool = False,
        fallback: str | None = None,
        mount_ns: bool | None = None,
        propagation: str = "private",
        root: str | None = None,
        ids: tuple[int | None, int | None] = (None, None),
        id_map: userns.IdMap | None = None,
        pause: bool = False,
    ) -> None:
        if fallback is None:  # the environment's choice, else fail
            fallback = environment.fallback() or FALLBACK_FAIL
            if pause:
                fallback = FALLBACK_FAIL  # a subreaper has no namespace to join
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, not {fallback!r}")
        if fallback == FALLBACK_SUBREAPER and as_pid_1:
            raise ValueError("as_pid_1 needs a pid namespace: no subreaper fallback for it")
        if map_user is not None and map_user not in userns.MAPPINGS:
            raise ValueError(f"map_user must be one of {userns.MAPPINGS}, not {map_user!r}")
        needs_init = {
            "wait_all": wait_all,
            "grace": grace is not None,
            "forward_to_group": forward_to_group,
            "kill_signal": bool(kill_signal),
            "timeout": timeout is not None,
            "rewrite": bool(rewrite),
            "verbose": verbose,
        }
        if pause and (as_pid_1 or wait_all or fallback == FALLBACK_SUBREAPER):
            raise ValueError("pause has no command: as_pid_1, wait_all and fallback need one")
        if as_pid_1 and any(needs_init.values()):
            wanted = ", ".join(name for name, on in needs_init.items() if on)
            raise ValueError(f"as_pid_1 has no init, and {wanted} need one")
        if mount_proc and mount_ns is False:
            raise ValueError("mount_proc needs a mount namespace (mount_ns)")
        if propagation not in mounts.PROPAGATIONS:
            kinds = ", ".join(mounts.PROPAGATIONS)
            raise ValueError(f"propagation must be one of {kinds}, not {propagation!r}")
        if map_user is not None and id_map is not None:
            raise ValueError("map_user and id_map exclude each other")
        if grace is not None and not grace >= 0:
            raise ValueError(f"grace must be a number of seconds >= 0, not {grace!r}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be a number of seconds > 0, not {timeout!r}")
        # True: a fresh /proc; a str: a fresh proc mounted there (unshare --mount-proc=DIR)
        self.mount_proc = mount_proc
        self.mount_ns = bool(mount_proc) if mount_ns is None else mount_ns
        self.propagation = propagation
        self.root = root
        self.ids = ids
        self.id_map = id_map  # the full form of map_user (unshare's -U and --map-* options)
        self.as_pid_1 = as_pid_1
        self.map_user = map_user  # None: map to root only when the caller is unprivileged
        self.wait_all = wait_all
        self.grace = grace
        self.forward_to_group = forward_to_group
        self.kill_signal = kill_signal  # 0: the defaults (KILL at the shutdown, TERM on timeout)
        self.launcher_death_signal = launcher_death_signal
        self.timeout = timeout
        self.rewrite = dict(rewrite or {})
        self.remap_exit = remap_exit  # exit statuses that count as 0 (tini's -e)
        self.verbose = verbose
        self.fallback = fallback
        self.pause = pause  # no command: the init holds the namespace open (catatonit -P)

    def without_proc(self) -> Options:
        """The same options, without the mount namespace and its fresh /proc."""
        clone = Options.__new__(Options)
        for name in Options.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.mount_proc = False
        clone.mount_ns = False
        return clone


class RunningNamespace:
    """A running namespace, as its launcher sees it (or a plain child, for ``pidns exec``).

    ``returncode`` follows subprocess: N for exit(N), -S for death by signal S, None while
    it runs; ``exit_status`` is the shell's form (N, or 128+S).
    """

    def __init__(
        self, argv: list[str], init_pid: int, pidfd: int, status_fd: int = -1, direct: bool = True
    ) -> None:
        self.argv = argv
        self.init_pid = init_pid  # host pid of pid 1 (the init, or the command with as_pid_1)
        self.pidfd = pidfd
        self._reader = status_channel.Reader(status_fd)  # the init's status pipe (-1: none)
        self.pid = init_pid  # host pid of the command, once known
        self.pid_in_namespace = 1
        self.direct = direct  # pid 1 is the command itself (no init)
        self.wait_status: int | None = None  # of pid 1
        self.command_status: int | None = None  # exact wait status from the init's report
        self.orphans_reaped: int | None = None
        self.killed_at_shutdown: int | None = None
        self.killed_pids: list[int] = []
        self.survivors: list[dict[str, Any]] = []  # alive when the shutdown began (K lines)
        self.init_forwarded: list[int] = []
        self.launcher_forwarded: list[int] = []
        self.stops: list[int] = []  # terminal stops reported, not yet acted on
        self.namespace_ids: dict[str, int | None] = {}
        self.timed_out = False  # the init's --timeout ran out
        self.namespace_inodes: dict[str, int] = {}  # kind -> nsfs inode, from the init
        # subordinate ranges for the launcher to write when the init asks (M line):
        # (the maps, the caller's uid and gid, the gate to open once written)
        self.maps: tuple[userns.IdMap, int, int, int] | None = None
        self.remap_exit: tuple[int, ...] = ()  # statuses that count as 0
        self.subreaper = False  # no pid namespace: pid 1 is a child subreaper (the fallback)
        self.fallback_reason: str | None = None  # why there is no pid namespace
        self.times: dict[str, int] = {"start": time.monotonic_ns()}

    # -- the status channel (pidns.linux.status_channel) --------------------------------

    @property
    def channel(self) -> int:
        """The init's status pipe (-1: none, or closed at EOF)."""
        return self._reader.fd

    def await_ready(self, flags: int) -> None:
        """Block until the command runs; raise what the init reported if it could not."""
        ready, host = False, 0
        while True:
            messages = self._reader.messages(block=True)
            if not messages:
                break  # EOF: pid 1 exec'd the command (as_pid_1) or died
            for message in messages:
                if isinstance(message, status_channel.HelperSpawned):
                    self.init_pid = self.pid = message.init_pid
                    self.pidfd = syscalls.pidfd_open(self.init_pid)
                elif ready:  # a quick command's end may come in the same read
                    self._take(message)
                elif isinstance(message, status_channel.CloneFailed):
                    raise clone_failure(message.errno, flags)
                elif isinstance(message, status_channel.Failed):
                    self._wait_blocking()
                    raise setup_failure(message, self.argv, flags)
                elif isinstance(message, status_channel.MapsWanted):
                    self._write_maps(flags)
                elif isinstance(message, status_channel.Namespaces):
                    self.namespace_inodes = message.inodes
                elif isinstance(message, status_channel.Ready):
                    ready = True
                    self.pid_in_namespace = message.pid_in_ns
                    host = message.host_pid
                    self.times["ready"] = message.t_spawned
            # the helper of a multi-threaded caller and the init it made both write here:
            # the init's ready line may come before the helper's pid line
            if ready and self.init_pid > 0:  # (0: the helper's line is still to come)
                if self.pid_in_namespace == 0:  # the init pauses: no command
                    self.pid_in_namespace, self.pid = 1, self.init_pid
                else:
                    self.pid = host or self._find_command(self.pid_in_namespace)
                os.set_blocking(self.channel, False)
                return
        self.times["ready"] = time.monotonic_ns()
        if self.direct:
            return
        status = self._wait_blocking()
        raise SetupError(
            errno.ECHILD, f"the init died during setup ({exits.describe_wait_status(status)})"
        )

    def _find_command(self, vpid: int) -> int:
        """The command's host pid when the init could not name it (no NS_GET_PID_IN_PIDNS
        before 6.11): the child of pid 1 whose innermost NSpid is ``vpid``
        (fs/proc/array.c); 0 if /proc cannot tell."""
        if self.direct or self.init_pid <= 0:
            return self.init_pid
        try:
            with open(f"/proc/{self.init_pid}/task/{self.init_pid}/children") as f:
                candidates = f.read().split()
        except OSError:
            return 0
        for child in candidates:
            try:
                with open(f"/proc/{child}/status") as f:
                    for line in f:
                        if line.startswith("NSpid:"):
                            if int(line.split()[-1]) == vpid:
                                return int(child)
                            break
            except (OSError, ValueError):
                continue
        return 0

    def _write_maps(self, flags: int) -> None:
        """newuidmap/newgidmap on the init, which waits at the gate; open it, or close
        it (the init then exits) and report the helper's refusal."""
        assert self.maps is not None
        id_map, uid, gid, gate = self.maps
        self.maps = None
        try:
            userns.run_helpers(id_map, self.init_pid, uid, gid)
            os.write(gate, b"1")
        except OSError as exc:
            os.close(gate)
            self._wait_blocking()
            raise SetupError(
                exc.errno or errno.EPERM, f"cannot map the ids: {exc.strerror}"
            ) from None
        os.close(gate)

    def read_channel(self) -> None:
        """Take in what the init has written: terminal stops, and its final report."""
        for message in self._reader.messages(block=False):
            self._take(message)

    def _take(self, message: status_channel.Message) -> None:
        if isinstance(message, status_channel.Stopped):
            self.stops.append(message.signal)
        elif isinstance(message, status_channel.Survivor):
            words = message.cmdline.split(b"\0") if message.cmdline else []
            self.survivors.append(
                {
                    "pid": message.pid,
                    "argv": [w.decode(errors="replace") for w in words],
                    "age_s": message.age_ms / 1000,
                }
            )
        elif isinstance(message, status_channel.Report):
            self.command_status = message.wait_status
            self.times.update(
                spawned=message.t_spawned, exited=message.t_exited, done=message.t_done
            )
            self.orphans_reaped = message.orphans
            self.killed_at_shutdown = message.killed_count
            self.killed_pids = message.killed_pids
            self.init_forwarded = message.forwarded
            self.timed_out = message.timed_out

    # -- waiting -----------------------------------------------------------------------

    def _reap(self, options: int) -> int | None:
        if self.wait_status is None:
            try:
                # __WALL: pid 1 is a child with exit signal 0 (see start)
                pid, status = os.waitpid(self.init_pid, options | WALL)
            except ChildProcessError:
                # reaped for us: a multi-threaded caller that ignores SIGCHLD (its helper
                # forks with SIGCHLD). The init's report, when it came, has the status.
                pid, status = (
                    self.init_pid,
                    (
                        self.command_status
                        if self.command_status is not None
                        else exits.LOST_WAIT_STATUS
                    ),
                )
            except OSError as exc:  # wait4 refused (a seccomp filter): nothing to wait with
                raise SetupError(
                    exc.errno or errno.EIO, f"cannot wait for pid 1: {exc.strerror}"
                ) from None
            if pid == 0:
                return None
            self.wait_status = status
            self.times["end"] = time.monotonic_ns()
            if self.channel >= 0:
                self.read_channel()  # the init wrote its report before it exited
                self._reader.close()
            os.close(self.pidfd)
            self.pidfd = -1
            if self.subreaper:  # an init killed before it could empty its cgroup
                from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

                subreaper.clean_up_after(self.init_pid)
        return self.returncode

    def _wait_blocking(self) -> int:
        self._reap(0)
        assert self.wait_status is not None
        return self.wait_status

    def poll(self) -> int | None:
        """The returncode if the namespace has ended (pid 1 reaped), else None."""
        if self.channel >= 0 and self.wait_status is None:
            self.read_channel()
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the namespace to end (pid 1 is reaped only after every other process of
        it: kernel/pid_namespace.c:zap_pid_ns_processes); None if ``timeout`` ran out."""
        if self.wait_status is not None:
            return self.returncode
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        status_fd = self.channel
        if status_fd >= 0:
            poller.register(status_fd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = [fd for fd, _ in poller.poll(None if left is None else left * 1000)]
            if self.pidfd in ready:
                return self._reap(0)
            if status_fd >= 0 and status_fd in ready:
                self.read_channel()
                if self.channel < 0:
                    poller.unregister(status_fd)
                    status_fd = -1
            if deadline is not None and time.monotonic() >= deadline:
                return None

    @property
    def returncode(self) -> int | None:
        """subprocess's: -N if signal N killed the command, else its exit status (0 if it
        is one of ``remap_exit``)."""
        status = self.command_status if self.command_status is not None else self.wait_status
        if status is None:
            return None
        if os.WIFSIGNALED(status):
            return -os.WTERMSIG(status)
        code = os.WEXITSTATUS(status)
        return 0 if code in self.remap_exit else code

    @property
    def exit_status(self) -> int | None:
        """The status ``pidns run`` exits with: 124 if the timeout ran out (as timeout(1)),
        else the command's (N, or 128+S), 0 if it is one of ``remap_exit`` (tini's -e)."""
        status = self.command_status if self.command_status is not None else self.wait_status
        if status is None:
            return None
        if self.timed_out:
            return exits.EXIT_TIMEOUT
        code = exits.from_wait_status(status)
        return 0 if code in self.remap_exit else code

    # -- signals -----------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to pid 1 through its pidfd: the init forwards it to the command."""
        if self.wait_status is not None:
            return
        try:
            syscalls.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            return  # it has exited, not yet reaped

    def kill(self) -> None:
        """SIGKILL pid 1: the kernel kills every process of the namespace with it. A
        subreaper's descendants have no namespace to die with: they are frozen and killed
        first (linux/subreaper.py)."""
        if self.subreaper and self.wait_status is None and self.init_pid > 0:
            from pidns.linux import subreaper  # noqa: PLC0415 (the fallback only)

            subreaper.kill_tree(self.init_pid, subreaper.cgroup_for(self.init_pid))
        self.send_signal(SIGKILL)

    def close(self) -> None:
        """Release the fds (the namespace must have been waited for)."""
        self._reader.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def report(self) -> dict[str, Any]:
        """The run as a JSON-ready document (layout in docs/run.md)."""
        from pidns.core import signals as names  # noqa: PLC0415 (only for reports)

        t = self.times

        def span(a: str, b: str) -> float | None:
            return round((t[b] - t[a]) / 1e6, 3) if a in t and b in t else None

        return {
            "command": self.argv,
            "mode": "subreaper" if self.subreaper else "namespace",
            "fallback_reason": self.fallback_reason,
            "exit_status": self.exit_status,
            "returncode": self.returncode,
            "namespaces": self.namespace_ids,
            "host_pids": {"init": None if self.direct else self.init_pid, "command": self.pid},
            "pid_in_namespace": None if self.subreaper else self.pid_in_namespace,
            "signals_forwarded": {
                "launcher": [names.name(s) for s in self.launcher_forwarded],
                "init": [names.name(s) for s in self.init_forwarded],
            },
            "orphans_reaped": self.orphans_reaped,
            "killed_at_shutdown": {
                "count": self.killed_at_shutdown,
                "pids": self.killed_pids,
                "processes": self.survivors,
            },
            "timings_ms": {
                "setup": span("start", "ready"),
                "command": span("spawned", "exited"),
                "shutdown": span("exited", "done"),
                "total": span("start", "end"),
            },
        }

    def collect_namespace_ids(self) -> None:
        """NS_GET_ID of pid 1's pid, mount and user namespaces (while it is alive; once a
        quick command's init has gone, the inodes it reported on its N line)."""
        mine = {}
        for kind in ("pid", "mnt", "user"):
            try:
                mine[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
            except OSError:
                self.namespace_ids[kind] = None
                continue
            try:
                fd = os.open(f"/proc/{self.init_pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                inode = self.namespace_inodes.get(kind)
                self.namespace_ids[kind] = inode if inode != mine[kind] else None
                continue
            try:
                new = os.fstat(fd).st_ino != mine[kind]
                self.namespace_ids[kind] = nsfs.id_or_inode(fd) if new else None
            finally:
                os.close(fd)


def start(
    argv: list[str],
    options: Options,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    stdio: tuple[int, int, int] = (-1, -1, -1),
    terminal: int = -1,
    job_control: bool = False,
    parent_death_signal: bool = False,
    namespace_ids: bool = False,
    pass_fds: tuple[int, ...] | None = None,
    new_group: bool = True,
    pid_file: int = -1,
    namespace_inodes: bool = False,
    inherited: spawn.Inherited | None = None,
    notice: Callable[[str], None] | None = None,
) -> RunningNamespace:
    """Make the namespace and start ``argv`` in it; returns once the command runs.

    Raises OSError with the exec errno (FileNotFoundError, PermissionError) when the
    command cannot be executed, SetupError when the namespace cannot be set up.
    ``new_group``: the command leads a process group of its own (as with tini), rather
    than staying in the caller's (as with subprocess); always with a terminal to give it.
    ``pass_fds``: None lets the command inherit every inheritable fd (as exec does);
    a tuple closes every other fd but 0, 1, 2 and ``stdio`` in the init first.
    ``parent_death_signal`` arms PR_SET_PDEATHSIG in pid 1 as well as the pidfd watch: only
    for a single-threaded launcher, since the signal fires when the *thread* that forked
    exits (kernel/exit.c:forget_original_parent).
    ``pid_file``: an fd open for writing; the init writes the command's host pid to it,
    and closes it, before the command runs. ``namespace_inodes``: the init reports the
    nsfs inodes of its namespaces (``RunningNamespace.namespace_inodes``).
    ``inherited``: the signal state the command starts with, as exec gives it (default:
    the calling thread's ignored signals and mask now; ``block_signals`` takes it first).
    With ``options.fallback`` "subreaper", a failure to make the pid namespace starts the
    command under a child subreaper instead (linux/subreaper.py), after ``notice`` is
    given the one line that says so.
    """
    if bool(argv) == options.pause:
        raise ValueError("pause takes no command" if argv else "no command given")
    settings = {
        "env": env,
        "cwd": cwd,
        "stdio": stdio,
        "terminal": terminal,
        "job_control": job_control,
        "parent_death_signal": parent_death_signal,
        "namespace_ids": namespace_ids,
        "pass_fds": pass_fds,
        "new_group": new_group,
        "pid_file": pid_file,
        "namespace_inodes": namespace_inodes,
        "inherited": inherited,
    }

    def attempt(chosen: Options, subreaper: bool) -> RunningNamespace:
        return _start(argv, chosen, subreaper, **settings)  # type: ignore[arg-type]

    return with_fallback(argv[0] if argv else "the pause", options, attempt, notice)


def with_fallback(
    command: str,
    options: Options,
    attempt: Callable[[Options, bool], _Started],
    notice: Callable[[str], None] | None,
) -> _Started:
    """``attempt(options, subreaper=False)``, and with ``options.fallback`` "subreaper"
    the retries, in this order, for ``pidns run`` and the server alike: a failure to
    mount a fresh /proc tries again without the mount namespace (the pid namespace
    kept); a failure to make the pid namespace (``NO_PID_NAMESPACE``) runs the command
    under a child subreaper. ``notice`` gets the line that says which; the result keeps
    the failure as ``fallback_reason``."""
    try:
        return attempt(options, False)
    except SetupError as exc:
        if options.fallback != FALLBACK_SUBREAPER:
            raise
        failure = exc
    if failure.stage == "proc":  # a pid namespace can be had, only not a fresh /proc in it
        try:
            ns = attempt(options.without_proc(), False)
        except SetupError as exc:
            failure = exc
        else:
            if notice is not None:
                notice(without_proc_notice(command, failure))
            ns.fallback_reason = str(failure)
            return ns
    if failure.stage not in NO_PID_NAMESPACE:
        raise failure
    if notice is not None:
        notice(subreaper_notice(command, failure))
    ns = attempt(options, True)
    ns.fallback_reason = str(failure)
    return ns


def without_proc_notice(command: str, failure: SetupError) -> str:
    """The line that says the fallback kept the pid namespace, without a fresh /proc."""
    return (
        f"a fresh /proc cannot be mounted here ({failure}); running {command} in "
        "a pid namespace without one: /proc shows the host's processes"
    )


def subreaper_notice(command: str, failure: SetupError) -> str:
    """The line that says the fallback runs the command under a subreaper."""
    return (
        f"no pid namespace can be made here ({failure}); running {command} under a "
        "subreaper instead: its pids are not isolated"
    )


def _start(
    argv: list[str],
    options: Options,
    subreaper: bool,
    *,
    env: dict[str, str] | None,
    cwd: str | None,
    stdio: tuple[int, int, int],
    terminal: int,
    job_control: bool,
    parent_death_signal: bool,
    namespace_ids: bool,
    pass_fds: tuple[int, ...] | None,
    new_group: bool,
    pid_file: int,
    namespace_inodes: bool,
    inherited: spawn.Inherited | None,
) -> RunningNamespace:
    try:
        privileged, threads = userns.self_status()
    except OSError as exc:
        raise preparation_failure("read /proc/self/status", exc) from None
    id_map = options.id_map
    uid, gid = os.getuid(), os.getgid()
    if id_map is None and (options.map_user is not None or not privileged):
        id_map = userns.IdMap.of(options.map_user or userns.MAP_ROOT, uid, gid)
    flags = cf.NEWPID
    if options.mount_ns:
        flags |= cf.NEWNS
    if id_map is not None:
        flags |= cf.NEWUSER
    if subreaper:  # no namespace at all: a plain fork that becomes a child subreaper
        flags, id_map = 0, None
    gate_read, gate_write = os.pipe() if id_map is not None and id_map.needs_helpers else (-1, -1)
    proc_dir = options.mount_proc if isinstance(options.mount_proc, str) else "/proc"
    environment = dict(os.environ) if env is None else env
    # raises FileNotFoundError, PermissionError; under another root, the init looks it up
    path = spawn.resolve(argv[0], environment) if options.root is None and argv else ""
    plan = Plan(
        argv,
        path,
        environment,
        cwd=cwd,
        stdio=stdio,
        terminal=terminal,
        job_control=job_control,
        as_pid_1=options.as_pid_1,
        mount_ns=options.mount_ns and not subreaper,
        proc_dir=proc_dir if options.mount_proc and not subreaper else None,
        propagation=options.propagation,
        root=options.root,
        ids=options.ids,
        id_map=id_map,
        maps_gate=(gate_read, gate_write),
        wait_all=options.wait_all,
        grace=options.grace,
        forward_to_group=options.forward_to_group,
        parent_death_signal=parent_death_signal,
        pass_fds=pass_fds,
        new_group=new_group,
        kill_signal=options.kill_signal,
        launcher_death_signal=options.launcher_death_signal,
        timeout=options.timeout,
        rewrite=options.rewrite,
        verbose=options.verbose,
        pid_file=pid_file,
        namespace_inodes=namespace_inodes,
        inherited=spawn.Inherited.from_caller() if inherited is None else inherited,
        subreaper=subreaper,
        pause=options.pause,
    )
    if options.as_pid_1 and signal.getsignal(SIGCHLD) == signal.SIG_IGN:
        # pid 1 is then the command itself, and an exec'd child's exit signal is SIGCHLD
        # again whatever clone3 was told: the kernel would reap it for this caller, and
        # its status would be lost (kernel/signal.c:do_notify_parent).
        raise SetupError(
            errno.EINVAL, "as_pid_1 needs SIGCHLD not ignored (the kernel would reap pid 1)"
        )
    try:
        launcher_pidfd = syscalls.pidfd_open(os.getpid())
    except OSError as exc:
        raise preparation_failure("pidfd_open", exc, "pid 1 to watch the launcher") from None
    try:
        # for NS_GET_PID_IN_PIDNS; without /proc the launcher finds the pid itself
        host_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        host_pidns = -1
    try:
        read_end, write_end = os.pipe()
    except OSError as exc:
        for fd in (launcher_pidfd, host_pidns):
            if fd >= 0:
                os.close(fd)
        raise preparation_failure("pipe", exc) from None
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
    try:
        if subreaper:
            pid, pidfd = _fork_subreaper(threads)
        elif threads == 1:
            # exit signal 0: a caller that ignores SIGCHLD (inherited through exec) would
            # have a SIGCHLD child reaped for it, and lose its status; the kernel autoreaps
            # only children whose exit signal is SIGCHLD (kernel/signal.c:do_notify_parent).
            pid, pidfd = syscalls.clone_bare(flags, exit_signal=0, want_pidfd=True)
        else:
            pid, pidfd = _fork_helper(), -1
        if pid == 0:
            try:
                if threads > 1 and not subreaper:  # the helper: the init is the caller's child
                    init_pid, _ = syscalls.clone_bare(flags | cf.PARENT)
                    if init_pid:
                        status_channel.send(write_end, status_channel.HelperSpawned(init_pid))
                        os._exit(0)
                become_init(plan, write_end, launcher_pidfd, host_pidns)
            except OSError as exc:
                status_channel.send(write_end, status_channel.CloneFailed(exc.errno or errno.EIO))
            finally:
                os._exit(exits.EXIT_SETUP)
    except OSError as exc:
        for fd in (launcher_pidfd, host_pidns, read_end, write_end, gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        raise clone_failure(exc.errno or errno.EIO, flags) from None
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for fd in (launcher_pidfd, host_pidns, write_end, gate_read):
        if fd >= 0:
            os.close(fd)
    ns = RunningNamespace(argv, pid, pidfd, read_end, direct=options.as_pid_1)
    ns.remap_exit = options.remap_exit
    ns.subreaper = subreaper
    if gate_write >= 0 and id_map is not None:
        ns.maps = (id_map, uid, gid, gate_write)
    if pidfd < 0:
        _reap_helper(pid)
        ns.init_pid = ns.pid = 0
    try:
        ns.await_ready(flags)
    except BaseException:
        ns.close()
        raise
    if namespace_ids:
        ns.collect_namespace_ids()
    return ns


def preparation_failure(call: str, exc: OSError, needed_for: str = "") -> SetupError:
    """A SetupError for a call the launcher makes before clone3: the feature named when the
    kernel lacks it (or a seccomp filter refuses it), else the call and its errno."""
    from pidns.linux import diagnose  # noqa: PLC0415 (only once something failed)

    err = exc.errno or errno.EIO
    text = diagnose.missing_call(call, err, needed_for)
    if text is not None:
        return SetupError(err, text)
    return SetupError(err, f"cannot set the namespace up: {call}: {os.strerror(err)}")


def _reap_helper(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        return  # reaped for us: the caller ignores SIGCHLD


def _fork_subreaper(threads: int) -> tuple[int, int]:
    """The fallback's init: a plain child, cloned as above where clone3 is allowed, else
    os.fork (a seccomp filter may refuse clone3 itself: Docker's answers ENOSYS; the
    child's exit signal is then SIGCHLD, which a caller ignoring SIGCHLD would lose)."""
    if threads == 1:
        try:
            return syscalls.clone_bare(0, exit_signal=0, want_pidfd=True)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM):
                raise
    pid = os.fork()
    return pid, syscalls.pidfd_open(pid) if pid else -1


def _fork_helper() -> int:
    """os.fork for a multi-threaded caller: glibc's fork takes malloc's locks and CPython
    re-initialises its own, so the single-threaded helper may clone the init safely; it
    uses CLONE_PARENT, so the init is the caller's child all the same (kernel/fork.c:
    copy_process gives it the helper's parent)."""
    return os.fork()


def clone_failure(err: int, flags: int) -> SetupError:
    from pidns.linux import diagnose  # noqa: PLC0415 (only once something failed)

    why = diagnose.refusal("clone", err, user=bool(flags & cf.NEWUSER))
    return _setup_error(err, str(why), "clone")


def setup_failure(failure: status_channel.Failed, argv: list[str], flags: int) -> OSError:
    """The exception for an ``F`` message of the init."""
    from pidns.linux import diagnose  # noqa: PLC0415 (only once something failed)

    err, stage, text = failure.errno, failure.stage, failure.text
    if stage == "exec":
        return OSError(err, text, argv[0])
    if stage == "setup":  # not an OSError in the init: its text says what
        return SetupError(err or errno.EIO, f"cannot set the namespace up: {text}")
    why = diagnose.refusal(stage, err, user=bool(flags & cf.NEWUSER))
    return _setup_error(err, str(why), stage)
