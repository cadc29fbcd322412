"""The namespace's pid 1: start the command, reap every orphan, forward signals, shut down.

``become_init`` runs in the child of the launcher's clone3(CLONE_NEWPID | ...), so it is
pid 1 of the new namespace and its child reaper (kernel/fork.c:copy_process,
is_child_reaper). It is a fork of the launcher, never exec'd, and it ends with os._exit.

Every catchable signal stays blocked in the init and arrives on a signalfd, as the
launcher blocked them all before clone3: a signal sent before the init is ready is queued,
not lost. (A blocked signal is queued even for a SIGNAL_UNKILLABLE init,
kernel/signal.c:sig_ignored, where an unblocked SIG_DFL one would be dropped.)

The loop (``Init.serve``) waits on that signalfd and on a pidfd of the launcher, opened by
the launcher before clone3, so the init learns of the launcher's death however early it
happens (a pidfd polls readable once its process has exited: kernel/pid.c:pidfd_poll).

Shutdown policy (one ``shutdown(sig)``: ``sig`` to every process left, then, unless it
was SIGKILL, SIGKILL to whatever remains ``grace`` seconds later, DEFAULT_GRACE without one):
- the command exits: ``kill_signal`` (SIGKILL unless set) to every other process of the
  namespace (kill(-1), kernel/signal.c:kill_something_info, reaches every process of the
  namespace and of the namespaces below it, not the init itself), unless ``wait_all``:
  then the init waits until the namespace is empty, after ``kill_signal`` (SIGTERM unless
  set) when a grace period is set;
- the ``timeout`` runs out: ``kill_signal`` (SIGTERM unless set) to every process, and the
  run counts as timed out (exit 124, as timeout(1));
- pidns stop's request (``stop_request``: a queued SIGTERM carrying a grace): SIGTERM to
  every process, the command's exit cutting nothing short, SIGKILL once that grace is
  over; the init waits for joined processes too (not its children) with kill(-1, 0);
- the launcher dies: ``launcher_death_signal`` (SIGKILL unless set) to everything; with
  SIGKILL the init exits at once (the kernel then kills the rest when pid 1 exits:
  kernel/pid_namespace.c:zap_pid_ns_processes);
- the init exits with the command's status (N, or 128+S), and reports the exact wait
  status to the launcher on the status channel.

Signals the init forwards go through ``rewrite`` first (FROM -> TO, TO 0 drops it, as
dumb-init's -r); with ``verbose`` it logs on its stderr what it forwards, reaps and
kills, as tini -v does.

The status channel to the launcher (``N`` namespaces, ``R`` ready, ``F`` failed, ``T``
stopped, ``X`` the end) has its wire format in pidns.linux.status_channel.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import select
import time

from pidns.core import exits
from pidns.linux import fastsignal as signal
from pidns.linux import features, mounts, nsfs, spawn, status_channel, syscalls, userns

TYPE_CHECKING = False  # typing costs `pidns run` milliseconds of start-up: annotations only
if TYPE_CHECKING:
    from typing import NoReturn

SIGCHLD = int(signal.SIGCHLD)
SIGKILL = int(signal.SIGKILL)
SIGTERM = int(signal.SIGTERM)
TERMINAL_STOPS = (int(signal.SIGTSTP), int(signal.SIGTTIN), int(signal.SIGTTOU))
CATCHABLE = spawn.CATCHABLE
MAX_LISTED = 1000  # pids and signals listed in the report; counts are always exact
DEFAULT_GRACE = 10.0  # seconds between a catchable shutdown signal and SIGKILL (docker's)
# what ends a paused init (catatonit -P, which exits 0 on these)
PAUSE_ENDS = (int(signal.SIGTERM), int(signal.SIGINT), int(signal.SIGHUP))
# pidns stop's request: a SIGTERM queued (SI_QUEUE) with the value STOP_TAG << 32 | the
# grace in milliseconds. The init then ends the namespace as a shutdown does: SIGTERM to
# every process, SIGKILL to what is left once that grace is over (a paused one's too).
STOP_TAG = 0x70696473  # "pids"
_STOP_GRACE_LIMIT_MS = 0xFFFFFFFF


def stop_request(grace: float) -> int:
    """The value pidns stop queues with its SIGTERM, asking for ``grace`` seconds."""
    return STOP_TAG << 32 | min(_STOP_GRACE_LIMIT_MS, max(0, round(grace * 1000)))


def requested_grace(info: syscalls.SigInfo) -> float | None:
    """The grace a signal asks for if it is pidns stop's request, else None."""
    if info.signo != SIGTERM or info.code != syscalls.SI_QUEUE or info.value >> 32 != STOP_TAG:
        return None
    return (info.value & _STOP_GRACE_LIMIT_MS) / 1000


_ARGV_LIMIT = 4096  # bytes of a survivor's command line reported


class Plan:
    """What the launcher asks of the init (or, with ``as_pid_1``, of the command itself).

    Everything that can be computed before clone3 is: the child's every write to memory
    copies a page of the launcher, so it should run as little Python as possible.
    """

    __slots__ = (
        "argv",
        "as_pid_1",
        "cwd",
        "env",
        "forward_to_group",
        "gid",
        "grace",
        "id_map",
        "ids",
        "inherited",
        "job_control",
        "kill_signal",
        "launcher_death_signal",
        "maps_gate",
        "mount_ns",
        "namespace_inodes",
        "new_group",
        "new_session",
        "parent_death_signal",
        "pass_fds",
        "path",
        "pause",
        "pid_file",
        "prepared",
        "proc_dir",
        "propagation",
        "rewrite",
        "root",
        "stdio",
        "subreaper",
        "terminal",
        "timeout",
        "uid",
        "verbose",
        "wait_all",
    )

    def __init__(
        self,
        argv: list[str],
        path: str,
        env: dict[str, str],
        *,
        cwd: str | None = None,
        stdio: tuple[int, int, int] = (-1, -1, -1),
        terminal: int = -1,
        job_control: bool = False,
        as_pid_1: bool = False,
        mount_ns: bool = True,
        proc_dir: str | None = "/proc",
        propagation: str = "private",
        root: str | None = None,
        ids: tuple[int | None, int | None] = (None, None),
        id_map: userns.IdMap | None = None,
        maps_gate: tuple[int, int] = (-1, -1),
        wait_all: bool = False,
        grace: float | None = None,
        forward_to_group: bool = False,
        parent_death_signal: bool = False,
        pass_fds: tuple[int, ...] | None = None,
        new_group: bool = True,
        kill_signal: int = 0,
        launcher_death_signal: int = SIGKILL,
        timeout: float | None = None,
        rewrite: dict[int, int] | None = None,
        verbose: bool = False,
        pid_file: int = -1,
        namespace_inodes: bool = False,
        inherited: spawn.Inherited = spawn.NOTHING_INHERITED,
        subreaper: bool = False,
        new_session: bool = False,
        pause: bool = False,
    ) -> None:
        self.argv = argv  # empty with ``pause``
        self.path = path  # argv[0] resolved on PATH ("": by the init, after the chroot)
        self.env = env
        self.cwd = cwd
        self.stdio = stdio  # fds that become the command's 0, 1, 2 (-1: inherit)
        self.terminal = terminal  # the terminal to give the command (-1: none)
        self.job_control = job_control  # report terminal stops of the command (T lines)
        self.as_pid_1 = as_pid_1
        self.mount_ns = mount_ns  # a new mount namespace (its propagation: ``propagation``)
        self.proc_dir = proc_dir  # where to mount a fresh /proc (None: nowhere)
        self.propagation = propagation  # a key of mounts.PROPAGATIONS
        self.root = root  # chroot there (unshare -R), before cwd and /proc
        self.ids = ids  # (uid, gid) the command runs as (unshare -S, -G); None: unchanged
        self.id_map = id_map  # the user namespace's maps (None: no user namespace)
        # with subordinate ranges, a pipe (read end, write end): "1" once the launcher has
        # written the maps, EOF if it could not (the init closes its copy of the write end)
        self.maps_gate = maps_gate
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.wait_all = wait_all
        self.grace = grace
        self.forward_to_group = forward_to_group
        self.parent_death_signal = parent_death_signal
        # None: the command inherits every inheritable fd; else only 0, 1, 2 and these
        self.pass_fds = pass_fds
        # the command leads a process group of its own (always with a terminal to give it,
        # or signals to forward to its group)
        self.new_group = new_group or terminal >= 0 or forward_to_group
        self.kill_signal = kill_signal  # 0: SIGKILL at the shutdown, SIGTERM at the timeout
        self.launcher_death_signal = launcher_death_signal  # to everything if the launcher dies
        self.timeout = timeout  # seconds from the command's start
        self.rewrite = rewrite or {}  # signal -> signal to forward instead (0: drop it)
        self.verbose = verbose
        self.pid_file = pid_file  # an fd open for writing: the command's host pid, before exec
        self.namespace_inodes = namespace_inodes  # report them (N line): the init may exit
        # as soon as the command does, and an exited process's /proc/PID/ns links go with it
        self.inherited = inherited  # the caller's signal state, for the command
        # no pid namespace: a child subreaper in the caller's (linux/subreaper.py)
        self.subreaper = subreaper
        self.new_session = new_session  # the command leads a session of its own (setsid)
        # no command: the init holds the namespace open until a TERM, INT or HUP
        # (catatonit -P), for ``pidns exec`` to join
        self.pause = pause
        # prepare_namespace has run already (a spare init): become_init skips it
        self.prepared = False


def become_init(plan: Plan, channel: int, launcher_pidfd: int, host_pidns: int) -> NoReturn:
    """The child side of clone3: set the namespace up, start the command, serve, exit."""
    gc.disable()  # a collection would touch (and copy on write) the whole inherited heap
    where = ["setup"]  # the stage a failure is reported at (prepare_namespace names its own)
    stage = "setup"
    try:
        if SIGCHLD in plan.inherited.ignored:
            # An init whose SIGCHLD is ignored has its children reaped for it
            # (kernel/signal.c:do_notify_parent autoreaps): it would never see the
            # command's status. Every other disposition is moot: all are blocked, and a
            # blocked signal is queued even when ignored (kernel/signal.c:sig_ignored).
            signal.signal(SIGCHLD, signal.SIG_DFL)
        if plan.new_group and not plan.as_pid_1:
            # Out of the launcher's process group: a kill(-PGID) of that group (timeout,
            # kill %1, a service manager) then reaches the init once, through the
            # launcher, rather than also directly (tini and dumb-init deliver it once).
            stage = "process group"
            os.setpgid(0, 0)
        if plan.subreaper:  # before the command exists: every orphan of it comes here
            from pidns.linux import subreaper as tree  # noqa: PLC0415 (the fallback only)

            syscalls.set_child_subreaper(True)
            _SUBREAPER[0] = True
            tree.enter_cgroup()  # where one is delegated: the command is born in it
        if not plan.prepared:
            stage = "namespace"  # prepare_namespace names its stages in where[0]
            prepare_namespace(plan, channel, where)
        if plan.pass_fds is not None:
            keep = {0, 1, 2, channel, launcher_pidfd, host_pidns, plan.terminal, plan.pid_file}
            keep |= set(plan.stdio)
            _close_fds_except(keep | set(plan.pass_fds))
            for fd in plan.pass_fds:
                os.set_inheritable(fd, True)
        stage = "exec"
        if not plan.path and not plan.pause:
            plan.path = spawn.resolve(plan.argv[0], plan.env)
        if plan.as_pid_1:
            spawn.exec_command(
                plan.path,
                plan.argv,
                plan.env,
                stdio=plan.stdio,
                new_group=plan.new_group,
                terminal=plan.terminal,
                # no init to watch the launcher: the only line
                parent_death_signal=plan.launcher_death_signal,
                watch_pidfd=launcher_pidfd,
                inherited=plan.inherited,
                ids=plan.ids,
            )
        with contextlib.suppress(OSError):  # only a name for ps
            syscalls.prctl(syscalls.PR_SET_NAME, _NAME_ADDRESS)
        stage = "signals"
        sfd = syscalls.signalfd(CATCHABLE)
        stage = "exec"
        if plan.pause:
            cmd, host_pid = 0, 0
            if host_pidns >= 0:
                os.close(host_pidns)
        else:
            cmd, host_pid = _start_command(plan, host_pidns)
        if plan.subreaper:
            _leave_cgroup()
    except OSError as exc:
        if stage == "namespace":
            stage = where[0]
        err = exc.errno or errno.EIO
        status = exits.for_exec_error(err) if stage == "exec" else exits.EXIT_SETUP
        text = exits.describe_exec_error(err) if stage == "exec" else os.strerror(err)
        failure = status_channel.Failed(status, err, stage.replace(" ", "_"), text)
        status_channel.send(channel, failure)
        os._exit(status)
    except BaseException as exc:  # never a traceback from pid 1
        text = f"{type(exc).__name__}: {exc}"
        status_channel.send(channel, status_channel.Failed(exits.EXIT_SETUP, 0, "setup", text))
        os._exit(exits.EXIT_SETUP)
    try:
        # The command keeps the caller's directory; the init moves to / so that it holds no
        # mount busy (as dumb-init does).
        os.chdir("/")
        status = _serve(plan, cmd, host_pid, sfd, channel, launcher_pidfd)
    except BaseException:  # a bug of ours after the command started: end it all
        _kill_all(SIGKILL)
        os._exit(exits.EXIT_SETUP)
    if plan.subreaper:
        tree.remove_cgroup()
    os._exit(exits.from_wait_status(status))


def prepare_namespace(plan: Plan, channel: int, where: list[str]) -> None:
    """The part of the init's setup that depends only on the namespace's shape (the user
    namespace's maps, the parent-death signal, mount propagation, the chroot and fresh
    /proc), not on the command: a spare init (``spare``) does it before any request.
    ``where[0]`` names the stage under way, for the report of a failure."""
    if plan.id_map is not None:
        where[0] = "user namespace"
        gate, gate_write = plan.maps_gate
        if gate >= 0:  # the launcher runs newuidmap/newgidmap on us
            os.close(gate_write)
            userns.write_setgroups(plan.id_map)
            status_channel.send(channel, status_channel.MapsWanted())
            if os.read(gate, 1) != b"1":
                os._exit(exits.EXIT_SETUP)  # the launcher reports why
            os.close(gate)
        else:
            userns.write_own_maps(plan.id_map, plan.uid, plan.gid)
    where[0] = "parent death signal"
    if plan.parent_death_signal and plan.launcher_death_signal == SIGKILL and not plan.subreaper:
        # (a catchable launcher_death_signal is the pidfd watch's alone: the kernel's
        # signal would kill the init, and with it the namespace, at once; and a
        # SIGKILLed subreaper would leave the command's processes behind)
        syscalls.set_parent_death_signal(SIGKILL)
    if plan.mount_ns:
        where[0] = "mount"
        mounts.set_propagation(plan.propagation)
    if plan.verbose:
        _name(SIGTERM)  # import the names now: a chroot may hide the package
    if plan.root is not None:
        where[0] = "root"
        os.chroot(plan.root)
        os.chdir("/")
    if plan.cwd is not None:
        where[0] = "cwd"
        os.chdir(plan.cwd)
    if plan.proc_dir is not None:
        where[0] = "proc"
        if plan.root is None and plan.propagation != "private":
            # the recursive change above left the old /proc shared or slave: a mount
            # over it would propagate (unshare makes it private first, too)
            mounts.make_private_recursive(plan.proc_dir)
        mounts.mount_proc(plan.proc_dir)


def _start_command(plan: Plan, host_pidns: int) -> tuple[int, int]:
    """Start the command: (its pid here, its pid in the launcher's namespace, 0 if unknown).

    posix_spawn unless code must run between fork and exec: giving it the terminal,
    changing its ids, or writing the pid file before it runs (the child then waits at a
    gate until it is).
    """
    host_pid = 0

    def ready(pid: int) -> None:
        nonlocal host_pid
        host_pid = _host_pid(host_pidns, pid)
        if plan.pid_file >= 0:
            try:
                os.write(plan.pid_file, f"{host_pid}\n".encode())
            finally:
                os.close(plan.pid_file)

    if (
        plan.terminal >= 0
        or plan.pid_file >= 0
        or plan.ids != (None, None)
        or spawn.needs_fork(plan.inherited)
    ):
        cmd = spawn.fork_exec(
            plan.path,
            plan.argv,
            plan.env,
            stdio=plan.stdio,
            terminal=plan.terminal,
            new_group=plan.new_group,
            ready=ready,
            inherited=plan.inherited,
            ids=plan.ids,
            new_session=plan.new_session,
        )
    else:
        cmd = spawn.spawn(
            plan.path,
            plan.argv,
            plan.env,
            stdio=plan.stdio,
            new_group=plan.new_group,
            inherited=plan.inherited,
            new_session=plan.new_session,
        )
        ready(cmd)
    if not plan.new_group:
        # The command stays in the caller's group (as with subprocess); the init leaves
        # it once the command is in it, for the reason given in become_init.
        os.setpgid(0, 0)
    if host_pidns >= 0:
        os.close(host_pidns)
    return cmd, host_pid


def _namespace_inodes() -> dict[str, int]:
    """The nsfs inode of each of the init's namespaces, by kind."""
    found = {}
    for kind in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"):
        try:
            found[kind] = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            continue
    return found


def _host_pid(host_pidns: int, pid: int) -> int:
    """``pid`` in the launcher's namespace, or 0: the launcher then finds it in /proc."""
    try:
        if host_pidns < 0 or not features.has("ns_get_pid"):
            return 0  # no /proc for the fd, or a kernel before 6.11
        return nsfs.pid_in(host_pidns, pid)
    except OSError:
        return 0


def _serve(plan: Plan, cmd: int, host_pid: int, sfd: int, channel: int, launcher_pidfd: int) -> int:
    """Report the command started, serve until the namespace is empty, report the end."""
    t_spawned = time.monotonic_ns()
    for fd in set(plan.stdio):  # stderr may be stdout's fd (STDOUT)
        if fd > 2:
            os.close(fd)
    if plan.namespace_inodes:
        status_channel.send(channel, status_channel.Namespaces(_namespace_inodes()))
    status_channel.send(channel, status_channel.Ready(cmd, host_pid, t_spawned))
    init = Init(plan, cmd, sfd, launcher_pidfd, channel)
    if plan.verbose and cmd:
        init.log(f"started {plan.argv[0]} as pid {cmd} (host pid {host_pid})")
    elif plan.verbose:  # --pause: no argv
        init.log("pausing: no command, until a TERM, INT or HUP, or pidns stop")
    status = init.serve()
    t_done = time.monotonic_ns()
    for survivor in init.survivors:
        status_channel.send(channel, survivor)
    report = status_channel.Report(
        status,
        t_spawned,
        init.t_exited,
        t_done,
        init.orphans,
        init.killed_count,
        init.killed[:MAX_LISTED],
        init.forwarded[:MAX_LISTED],
        init.timed_out,
    )
    status_channel.send(channel, report)
    if plan.verbose:
        init.log(f"the namespace is empty; exiting with {exits.from_wait_status(status)}")
    return status


# prctl(PR_SET_NAME) names the init for ps and /proc/PID/comm (kernel/sys.c:prctl); the
# buffer is made once, here, so that the child only makes the call.
_NAME = ctypes.create_string_buffer(b"pidns-init")
_NAME_ADDRESS = ctypes.addressof(_NAME)


def _close_fds_except(keep: set[int]) -> None:
    """Close every fd but ``keep``: a fork of the caller holds the caller's pipe ends, and a
    held write end would hide EOF from whoever reads the other (close_range(2)). Without
    close_range (before 5.9, or refused), os.closerange would try each of 2**31 numbers:
    then only the fds /proc/self/fd lists (or up to RLIMIT_NOFILE) are closed."""
    try:
        has_close_range = features.has("close_range")
    except OSError:
        has_close_range = False
    if not has_close_range:
        try:
            fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
        except OSError:
            fds = list(range(os.sysconf("SC_OPEN_MAX")))
        for fd in fds:
            if fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        return
    low = 0
    for fd in sorted(k for k in keep if k >= 0):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 2**31 - 1)


_SUBREAPER = [False]  # this process is the fallback's subreaper, not a pid 1


def _leave_cgroup() -> None:
    """Step out of the cgroup the command was born in, so that its cgroup.kill spares the
    init; if that fails, the cgroup is not used at all."""
    from pidns.linux import subreaper as tree  # noqa: PLC0415 (the fallback only)

    try:
        tree.leave_cgroup()
    except OSError:
        tree.forget_cgroup()


_refused: list[int] = []  # kill(2) failed otherwise than ESRCH (a seccomp filter): its errno


def _kill_all(sig: int) -> None:
    """kill(-1, sig): every process of the namespace and below except the init. A
    subreaper has no namespace to itself: its descendants, frozen first for SIGKILL."""
    if _SUBREAPER[0]:
        from pidns.linux import subreaper as tree  # noqa: PLC0415 (the fallback only)

        if sig == SIGKILL:
            tree.kill_tree(os.getpid())
            tree.remove_cgroup()
        else:
            tree.signal_tree(os.getpid(), sig)
        return
    try:
        os.kill(-1, sig)
    except ProcessLookupError:
        return  # nobody left (kernel/signal.c:kill_something_info returns ESRCH)
    except OSError as exc:
        # kill(2) refused: the init's own exit does what SIGKILL should have, as the
        # kernel kills every process of a namespace whose pid 1 exits
        # (kernel/pid_namespace.c:zap_pid_ns_processes); serve returns at once
        _refused.append(exc.errno or errno.EPERM)


LINGER_POLL_MS = 20.0


def _others_alive() -> bool:
    """Whether the namespace holds a process besides the init: kill(-1, 0) finds one
    (kernel/signal.c:kill_something_info returns ESRCH when it signalled none). Never
    for the fallback's subreaper, which has no namespace to itself."""
    if _SUBREAPER[0]:
        return False
    try:
        os.kill(-1, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # there is one, which the init may not signal
    return True


def _survivors(proc: str) -> list[status_channel.Survivor]:
    """Every live process of the namespace but the init, from its own /proc: for the
    report, and for the pytest plugin's list of leftovers. kill(-1, 0) first: ESRCH when
    no one is left (kernel/signal.c:kill_something_info), at no /proc cost."""
    try:
        os.kill(-1, 0)
    except ProcessLookupError:
        return []
    except OSError:
        pass
    found: list[status_channel.Survivor] = []
    now = time.clock_gettime(time.CLOCK_BOOTTIME)
    tick = os.sysconf("SC_CLK_TCK")
    try:
        names = sorted((n for n in os.listdir(proc) if n.isdigit() and n != "1"), key=int)
    except OSError:
        return []
    for name in names[:MAX_LISTED]:
        try:
            with open(f"{proc}/{name}/stat", "rb") as f:
                fields = f.read().rpartition(b")")[2].split()
            if fields[0] == b"Z":
                continue  # it has exited already
            with open(f"{proc}/{name}/cmdline", "rb") as f:
                cmdline = f.read(_ARGV_LIMIT).rstrip(b"\0")
        except OSError:
            continue  # gone meanwhile
        # field 22 of stat: the start time, clock ticks after boot (fs/proc/array.c)
        age_ms = max(0, int((now - int(fields[19]) / tick) * 1000))
        found.append(status_channel.Survivor(int(name), age_ms, cmdline))
    return found


def _kill_one(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return  # already reaped


class Init:
    """The reap-and-forward loop of pid 1, and what it saw for the report."""

    def __init__(self, plan: Plan, cmd: int, sfd: int, launcher_pidfd: int, channel: int):
        self.plan = plan
        self.cmd = cmd  # the command's pid in the namespace (2)
        self.sfd = sfd
        self.launcher_pidfd = launcher_pidfd
        self.channel = channel
        self.cmd_status: int | None = None  # its wait status once reaped
        self.t_exited = 0
        self.empty = False  # waitpid said ECHILD: no child left
        self.orphans = 0  # processes reaped that were not the command, before shutdown
        self.killed: list[int] = []  # pids reaped after the shutdown signal
        self.killed_count = 0
        self.forwarded: list[int] = []
        self.survivors: list[status_channel.Survivor] = []  # alive when the shutdown began
        self.shutting_down = False
        self.stopping = False  # pidns stop asked: its SIGTERM is out, SIGKILL at the deadline
        self.timed_out = False
        self.abandoned = False  # the launcher is gone
        self.deadline: float | None = None  # when the grace period ends (monotonic)
        self.timeout_at: float | None = None
        if plan.timeout is not None:
            self.timeout_at = time.monotonic() + plan.timeout

    def log(self, text: str) -> None:
        """One line on the init's stderr (``--verbose``); a closed stderr is no error."""
        try:
            os.write(2, f"pidns-init: {text}\n".encode())
        except OSError:
            return

    def serve(self) -> int:
        """Run until the command has exited and no child is left; its wait status."""
        poller = select.poll()
        poller.register(self.sfd, select.POLLIN)
        poller.register(self.launcher_pidfd, select.POLLIN)
        self.reap()
        while True:
            lingering = False
            if self.cmd_status is not None and (self.empty or (_refused and not _SUBREAPER[0])):
                # pidns stop's grace holds for the processes pidns exec put here too, which
                # are not the init's children (their parent is outside): until they are gone
                # or the grace is over
                lingering = self.stopping and self.deadline is not None and _others_alive()
                if not lingering:
                    return self.cmd_status
            if self.abandoned and self.empty:
                os._exit(exits.EXIT_SIGNAL_BASE + self.plan.launcher_death_signal)
            timeout = None
            wake = [t for t in (self.deadline, self.timeout_at) if t is not None]
            if wake:
                timeout = max(0.0, (min(wake) - time.monotonic()) * 1000)
            if lingering:  # nothing tells the init of a joined process's exit: look again
                timeout = min(LINGER_POLL_MS, timeout if timeout is not None else LINGER_POLL_MS)
            for fd, _events in poller.poll(timeout):
                if fd == self.launcher_pidfd:
                    poller.unregister(fd)
                    self.abandon()
            for info in syscalls.read_signals(self.sfd):
                self.on_signal(info)
            now = time.monotonic()
            if self.timeout_at is not None and now >= self.timeout_at:
                self.timeout_at = None
                self.timed_out = True
                if self.plan.verbose:
                    self.log(f"the timeout of {self.plan.timeout:g} s ran out")
                self.shutdown(self.plan.kill_signal or SIGTERM)
            if self.deadline is not None and now >= self.deadline:
                self.deadline = None
                if self.plan.verbose:
                    self.log("the grace period is over: SIGKILL to every process left")
                _kill_all(SIGKILL)
                self.reap()

    def on_signal(self, info: syscalls.SigInfo) -> None:
        if info.signo == SIGCHLD:
            self.reap()
        elif (grace := requested_grace(info)) is not None:
            self.stop(grace)
        elif info.code != syscalls.SI_KERNEL:
            # SI_KERNEL: a terminal's ^C or ^Z to the launcher's process group; the
            # launcher has it too and forwards it, so forwarding it here would double it.
            self.forward(info.signo)

    def forward(self, sig: int) -> None:
        """To the command (or its process group); once it is gone, to every process left.
        ``rewrite`` first: FROM becomes TO, and a TO of 0 drops it."""
        received = sig
        sig = self.plan.rewrite.get(sig, sig)
        if self.plan.verbose and sig != received:
            self.log(f"rewriting {_name(received)} to {_name(sig) if sig else 'nothing'}")
        if not sig:
            return
        self.forwarded.append(sig)
        if self.plan.pause and self.cmd_status is None:
            if sig in PAUSE_ENDS:  # no command to forward to: the end of the pause
                if self.plan.verbose:
                    self.log(f"{_name(sig)} ends the pause")
                self.command_exited(0)
                self.empty = False  # orphans may come now, as the joined processes die
                self.reap()
            return
        if self.cmd_status is not None:
            if self.plan.verbose:
                self.log(f"forwarding {_name(sig)} to every process left")
            _kill_all(sig)
            return
        target = -self.cmd if self.plan.forward_to_group else self.cmd
        if self.plan.verbose:
            whom = f"process group {self.cmd}" if target < 0 else f"pid {self.cmd}"
            self.log(f"forwarding {_name(sig)} to {whom}")
        try:
            os.kill(target, sig)
        except ProcessLookupError:
            if target != self.cmd:  # it left its group (setsid): to the command itself
                _kill_one(self.cmd, sig)

    def reap(self) -> None:
        """waitpid(-1) until nothing is pending (kernel/exit.c:do_wait)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG | os.WUNTRACED)
            except ChildProcessError:
                self.empty = True
                return
            if pid == 0:
                return
            if os.WIFSTOPPED(status):
                if pid == self.cmd and self.plan.job_control:
                    stop = os.WSTOPSIG(status)
                    if stop in TERMINAL_STOPS:
                        status_channel.send(self.channel, status_channel.Stopped(stop))
                continue
            if pid == self.cmd:
                if self.plan.verbose:
                    self.log(f"the command (pid {pid}) {_describe(status)}")
                self.command_exited(status)
            elif self.shutting_down:
                self.killed_count += 1
                self.killed.append(pid)
                if self.plan.verbose:
                    self.log(f"reaped pid {pid} ({_describe(status)}) at the shutdown")
            else:
                self.orphans += 1
                if self.plan.verbose:
                    self.log(f"reaped orphan pid {pid} ({_describe(status)})")

    def command_exited(self, status: int) -> None:
        self.cmd_status = status
        self.t_exited = time.monotonic_ns()
        self.timeout_at = None
        if self.plan.proc_dir is not None and not (self.plan.wait_all and self.plan.grace is None):
            self.survivors = _survivors(self.plan.proc_dir)
        if self.stopping:
            return  # the rest have pidns stop's grace, already running
        if not self.plan.wait_all:
            self.shutdown(self.plan.kill_signal or SIGKILL)
        elif self.plan.grace is not None:
            self.shutdown(self.plan.kill_signal or SIGTERM)

    def stop(self, grace: float) -> None:
        """pidns stop: SIGTERM to every process (the command among them), SIGKILL to what
        is left ``grace`` seconds later; a paused namespace ends with status 0."""
        if self.plan.verbose:
            self.log(f"pidns stop: SIGTERM to every process, SIGKILL after {grace:g} s")
        self.stopping = True
        if self.plan.pause and self.cmd_status is None:
            self.command_exited(0)
        self.timeout_at = None
        self.shutdown(SIGTERM, grace)
        self.empty = False  # orphans may come now, as the joined processes die
        self.reap()

    def shutdown(self, sig: int, grace: float | None = None) -> None:
        """``sig`` to every process left; unless it is SIGKILL, SIGKILL after the grace
        (``grace``, or the plan's)."""
        self.shutting_down = True
        if self.plan.verbose:
            self.log(f"shutdown: {_name(sig)} to every process left")
        _kill_all(sig)
        if sig != SIGKILL:
            if grace is None:
                grace = DEFAULT_GRACE if self.plan.grace is None else self.plan.grace
            end = time.monotonic() + grace
            self.deadline = end if self.deadline is None else min(self.deadline, end)

    def abandon(self) -> None:
        """The launcher is gone: nobody will collect a status, so end everything. With
        SIGKILL, at once; with a catchable signal, it first, SIGKILL after the grace."""
        sig = self.plan.launcher_death_signal
        if self.plan.verbose:
            self.log(f"the launcher died: {_name(sig)} to every process")
        if sig == SIGKILL:
            _kill_all(SIGKILL)
            os._exit(exits.EXIT_SIGNAL_BASE + SIGKILL)  # (the kernel kills what kill(2) could not)
        self.abandoned = True
        self.timeout_at = None
        self.shutdown(sig)


def _name(sig: int) -> str:
    """SIGTERM for 15 (the log only: the enum-based module is imported then)."""
    from pidns.core import signals  # noqa: PLC0415 (only with --verbose)

    return "SIG" + signals.name(sig)


def _describe(status: int) -> str:
    return exits.describe_wait_status(status, _name)
