"""The Kernel: the model's syscall surface (thin) and its observers.

Every syscall takes the caller first (a ``Task``, meaning its leader thread, or a
``Thread``) and raises ``KernelError`` (errno) on failure. Pid numbers cross this
boundary only as the caller sees them: a number in the caller's active namespace, 0 for
a task it cannot see. Everything inside works on task objects; a pidfd is a ``Pidfd``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence

from pidns.core import flags as cf
from pidns.core import signals
from pidns.model import create, nsfs, pidfd
from pidns.model import exit as exits
from pidns.model import signal as sig
from pidns.model.errors import KernelError, Unmodeled
from pidns.model.namespace import PidNamespace, UserNamespace, nr_in, publish_numbers
from pidns.model.pidfd import Pidfd, PidfdInfo
from pidns.model.profiles import (
    MAX_PID_NS_LEVEL,
    PID_MAX_DEFAULT,
    PID_MAX_LIMIT,
    PID_MAX_MIN,
    Profile,
)
from pidns.model.profiles import get as get_profile
from pidns.model.task import Caller, Disposition, Task, TaskState, Thread, capable, next_seq

WaitResult = exits.WaitResult
WaitFor = exits.WaitFor

# glibc's pthread_create: clone(VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|
# CHILD_CLEARTID); the flags the model gives meaning to
PTHREAD_FLAGS = cf.VM | cf.FS | cf.FILES | cf.SIGHAND | cf.THREAD | cf.SYSVSEM


class Kernel:
    """A running system: tasks and pid namespaces, booted with an init task.

    ``root_level`` places the model's root namespace at that kernel level (the real
    backend's world is one level below its runner's, so its level counts against the
    limit of 32 exactly as the kernel's would). ``pid_max`` is the root namespace's
    (default: 32768 at level 0, where the kernel boots; PID_MAX_LIMIT below it, since a
    new namespace starts there since 6.14). ``mapped_uids`` lists the uids the root user
    namespace maps (None: all of them) and ``user_level`` is its kernel level, for worlds
    made by an unprivileged user inside a user namespace of their own.
    """

    REAP_ALL = exits.WaitFor(all=True)  # an init's waitpid(-1, __WALL)

    def __init__(
        self,
        profile: str | Profile = "6.18",
        root_level: int = 0,
        pid_max: int | None = None,
        mapped_uids: frozenset[int] | None = None,
        user_level: int = 0,
    ) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        if not 0 <= root_level <= MAX_PID_NS_LEVEL:
            raise ValueError(f"root_level must be in 0..{MAX_PID_NS_LEVEL}")
        if pid_max is None:
            per_ns = self.profile.per_ns_pid_max and root_level > 0
            pid_max = PID_MAX_LIMIT if per_ns else PID_MAX_DEFAULT
        self.pid_max = pid_max  # the global pid_max (profiles without per-ns pid_max)
        self.mapped_uids = mapped_uids
        self.tasks: dict[Task, None] = {}  # every unreaped task, in creation order
        self.namespaces: dict[PidNamespace, None] = {}
        self.doomed: list[tuple[Task, int]] = []  # fatal signals sent, not yet acted on
        # tasks whose state or parent changed, for an observer that follows them (the
        # scenario backend's snapshots); None: not kept
        self.journal: list[Task] | None = None
        self.root_user_ns = UserNamespace(None, owner=0, mapped=mapped_uids, level=user_level)
        self.root_ns = PidNamespace(None, self.root_user_ns, root_level, pid_max)
        self.namespaces[self.root_ns] = None
        self.root_ns.cursor = 1
        self.init = Task(self.root_ns, (1,), None, self.root_user_ns)
        self.init.unkillable = True
        self.root_ns.child_reaper = self.init
        publish_numbers(self.init)
        self.init.pgrp_users = self.init.session_users = 1  # a session leader
        self.tasks[self.init] = None

    # ---- creation ---------------------------------------------------------------------

    def _enter(self, task: Caller) -> Caller:
        """The entry of every system call, and the one check of the model's invariant:

        **No fatal signal is left queued when a system call returns.** A fatal signal is
        queued (``doomed``) while the sending call reaches every target, and acted on
        (``signal.flush_fatal``) before that call returns, as the kernel acts on it on
        each victim's way back to user space (kernel/signal.c:get_signal). A call that
        returned with one still queued would let its victim make another call first.

        Then: the caller runs, so its group's pending handlers have run."""
        if self.doomed:
            raise AssertionError(f"fatal signals left queued by the last call: {self.doomed}")
        group = task.group
        if group.state is not TaskState.RUNNING:
            raise ValueError(f"{task!r} cannot make system calls: it is {group.state}")
        if task.leader_exited if isinstance(task, Task) else not task.alive:
            raise ValueError(f"{task!r} cannot make system calls: the thread has exited")
        group.awaiting_handler = None
        return task

    def fork(self, task: Caller) -> Task:
        child = create.copy_process(self, self._enter(task), 0, ())
        assert isinstance(child, Task)
        return child

    def clone(
        self,
        task: Caller,
        flags: int,
        set_tid: Sequence[int] = (),
        exit_signal: int | None = None,
    ) -> Task:
        """clone3(2) of a new process; CLONE_THREAD belongs to ``clone_thread``.
        ``exit_signal``: None is SIGCHLD (0 with CLONE_PARENT, as clone3 wants it);
        another signal with CLONE_PARENT is EINVAL (kernel/fork.c:clone3_args_valid)."""
        if flags & cf.THREAD:
            raise ValueError("clone with CLONE_THREAD makes a thread: use clone_thread")
        if exit_signal is None:
            exit_signal = signals.CHLD
        elif exit_signal and flags & cf.PARENT:
            raise KernelError(errno.EINVAL, "clone3")
        child = create.copy_process(self, self._enter(task), flags, tuple(set_tid), exit_signal)
        assert isinstance(child, Task)
        return child

    def clone_pidfd(
        self, task: Caller, flags: int, set_tid: Sequence[int] = ()
    ) -> tuple[Task | Thread, Pidfd]:
        """clone3 with CLONE_PIDFD: the child and a pidfd for it (a thread pidfd for a
        thread, as PIDFD_THREAD; 6.9)."""
        if not self.profile.has_pidfd:
            raise KernelError(errno.EINVAL, "clone3")
        if flags & cf.THREAD and not self.profile.has_pidfd_thread:
            raise KernelError(errno.EINVAL, "clone3")  # CLONE_PIDFD|CLONE_THREAD before 6.9
        if flags & cf.THREAD:
            child: Task | Thread = self.clone_thread(task, flags)
        else:
            child = self.clone(task, flags, set_tid)
        return child, Pidfd(child, bool(flags & cf.THREAD))

    def clone_thread(self, task: Caller, flags: int = PTHREAD_FLAGS) -> Thread:
        """A new thread of the caller's group (pthread_create: PTHREAD_FLAGS)."""
        if not flags & cf.THREAD:
            raise ValueError("clone_thread needs CLONE_THREAD")
        thread = create.copy_process(self, self._enter(task), flags, ())
        assert isinstance(thread, Thread)
        return thread

    def unshare(self, task: Caller, flags: int) -> None:
        create.unshare(self, self._enter(task), flags)

    def setns(self, task: Caller, target: Task | Thread, for_children: bool = False) -> None:
        """setns(open("/proc/TARGET/ns/pid[_for_children]"), CLONE_NEWPID)."""
        ns = create.open_ns_link(self, self._enter(task).group, target, for_children)
        create.setns(self, task, ns)

    def ns_of(self, task: Caller, target: Task | Thread) -> PidNamespace:
        """The namespace of open("/proc/TARGET/ns/pid"): ESRCH once reaped, EACCES
        without ptrace read access."""
        return create.open_ns_link(self, self._enter(task).group, target, False)

    def setns_pidfd(self, task: Caller, fd: Pidfd) -> None:
        """setns(pidfd, CLONE_NEWPID): the target's active namespace (EPERM without
        ptrace access to it; ESRCH once it has no nsproxy)."""
        caller = self._enter(task)
        target = fd.target
        if not self.profile.has_pidfd_setns:
            raise KernelError(errno.EINVAL, "setns")  # not an nsfs file
        # kernel/nsproxy.c:validate_nsset: the task, then ptrace read access, then its
        # nsproxy (a zombie has none): a zombie the caller may not inspect is EPERM
        if not has_task(fd):
            raise KernelError(errno.ESRCH, "setns")
        if not create.may_inspect(self, caller.group, target.group):
            raise KernelError(errno.EPERM, "setns")
        if not create.has_nsproxy(target):
            raise KernelError(errno.ESRCH, "setns")
        create.setns(self, caller, pidfd.setns_target(fd))

    def execve(self, task: Caller) -> None:
        """A successful execve(2) of the same program (fs/exec.c:de_thread)."""
        exits.do_exec(self, self._enter(task))

    # ---- exit and wait ----------------------------------------------------------------

    def exit(self, task: Caller, code: int) -> None:
        """exit_group(2) (what _exit(2) calls): every thread of the group ends."""
        exits.do_exit(self, self._enter(task).group, (code & 0xFF) << 8)
        sig.flush_fatal(self)

    def exit_thread(self, task: Caller, code: int) -> None:
        """exit(2), as pthread_exit makes it: the calling thread ends; the group with it
        only when it is the last."""
        exits.exit_thread(self, self._enter(task), (code & 0xFF) << 8)
        sig.flush_fatal(self)

    def wait(
        self,
        task: Caller,
        target: Task | None = None,
        nohang: bool = False,
        how: exits.WaitFor = exits.ANY_CHILD,
    ) -> exits.WaitResult | None:
        """waitpid(TARGET or -1): None with ``nohang`` when nothing is ready; raises
        WouldBlock instead when the call would sleep. ``how`` selects a process group,
        __WALL and WNOWAIT."""
        return exits.do_wait(self, self._enter(task).group, target, nohang, how, task)

    def wait_pid(
        self, task: Caller, pid: int, nohang: bool = False, all: bool = False, nowait: bool = False
    ) -> exits.WaitResult | None:
        """waitpid(PID) with PID as the caller sees it: -1 any child, 0 the caller's
        process group, -PGID that group (ECHILD when no such pid), >0 that child.
        ``nowait`` is WNOWAIT, which only waitid(2) takes: its own refusals come first
        (kernel/exit.c:kernel_waitid checks the options, then the id)."""
        how = self.wait_for(task, pid, all, nowait)
        return exits.do_wait(self, task.group, how.target, nohang, how, task)

    def wait_for(
        self, task: Caller, pid: int, all: bool = False, nowait: bool = False
    ) -> exits.WaitFor:
        """What waitpid(PID) waits for, resolved as the call begins (kernel/exit.c:
        kernel_wait4: pid 0 is the caller's process group at that moment)."""
        group = self._enter(task).group
        if nowait and (
            (all and not self.profile.waitid_takes_wall)
            or (pid == 0 and not self.profile.waitid_pgid_zero)
        ):
            raise KernelError(errno.EINVAL, "waitid")  # before 4.7 / 5.4 (profiles.md)
        target: Task | None = None
        pgrp: Task | Thread | None = None
        if pid > 0 or pid < -1:
            entry = group.ns.idr.get(abs(pid))
            if entry is None:
                raise KernelError(errno.ECHILD, "wait")
            if pid > 0:
                if not isinstance(entry, Task):
                    raise KernelError(errno.ECHILD, "wait")  # a thread is never a child
                target = entry
            else:
                pgrp = entry
        elif pid == 0:
            pgrp = group.pgrp
        return exits.WaitFor(target, pgrp, all, nowait)

    def wait_again(
        self, task: Caller, how: exits.WaitFor, nohang: bool = True
    ) -> exits.WaitResult | None:
        """A sleeping wait woken by a child, scanning again for what it waits for."""
        return exits.do_wait(self, self._enter(task).group, how.target, nohang, how, task)

    def sleep(self, task: Caller, how: exits.WaitFor) -> exits.Sleeper:
        """A wait that found nothing sleeps on its group's queue (kernel/exit.c:do_wait:
        add_wait_queue) until a child it waits for wakes it (``exits.wake_parent``)."""
        group = task.group
        sleeper = exits.Sleeper(how)
        if group.sleepers is None:
            group.sleepers = []
        group.sleepers.append(sleeper)
        return sleeper

    def wake(self, task: Caller, sleeper: exits.Sleeper) -> None:
        """The wait returned (or its thread died): off the queue."""
        group = task.group
        if group.sleepers is not None and sleeper in group.sleepers:
            group.sleepers.remove(sleeper)
            if not group.sleepers:
                group.sleepers = None

    def waitid_pidfd(
        self, task: Caller, fd: Pidfd, nohang: bool = False, nowait: bool = False
    ) -> exits.WaitResult | None:
        """waitid(P_PIDFD, fd, WEXITED): ECHILD unless the pidfd's process is a child."""
        how = self.waitid_pidfd_for(task, fd, nowait)
        return exits.do_wait(self, task.group, how.target, nohang, how, task)

    def waitid_pidfd_for(self, task: Caller, fd: Pidfd, nowait: bool = False) -> exits.WaitFor:
        """What waitid(P_PIDFD) waits for: the pidfd's process (ECHILD once it is gone)."""
        self._enter(task)
        if not self.profile.has_pidfd_wait:
            raise KernelError(errno.EINVAL, "waitid")  # an unknown idtype
        target = pidfd.wait_target(self, fd)
        if target is None or target.state is TaskState.REAPED:
            raise KernelError(errno.ECHILD, "waitid")
        return exits.WaitFor(target=target, nowait=nowait)

    # ---- signals ----------------------------------------------------------------------

    def kill(self, task: Caller, pid: int, signo: int) -> None:
        """kill(2) with a pid number as the caller sees it (0, -1 and -PGID included)."""
        sig.kill(self, self._enter(task).group, pid, signo)

    def kill_task(self, task: Caller, target: Task | Thread, signo: int) -> None:
        """kill(2) of a task by name: ESRCH, with no call made, when the caller cannot see it."""
        pid = self.pid_seen_by(task, target)
        if pid == 0:
            raise KernelError(errno.ESRCH, "kill")
        self.kill(task, pid, signo)

    def pidfd_open(self, task: Caller, pid: int, flags: int = 0) -> Pidfd:
        """pidfd_open(2) of a pid as the caller sees it; flags PIDFD_THREAD, PIDFD_NONBLOCK."""
        return pidfd.pidfd_open(self._enter(task), pid, flags, self.profile)

    def pidfd_send_signal(self, task: Caller, fd: Pidfd, signo: int) -> None:
        """pidfd_send_signal(2) with no siginfo. Through a thread pidfd the signal is the
        thread's, with the same effect on the group as long as that thread does not block
        it (Unmodeled when it does)."""
        caller = self._enter(task).group
        if not self.profile.has_pidfd:
            raise KernelError(errno.ENOSYS, "pidfd_send_signal")
        if not has_task(fd):
            if not caller.ns.is_ancestor_of(fd.target.ns):
                raise KernelError(errno.EINVAL, "pidfd_send_signal")
            raise KernelError(errno.ESRCH, "pidfd_send_signal")
        target = fd.target
        if fd.thread and isinstance(target, Task) and target.leader_exited:
            # the thread is a leader that exit(2)ed: a thread-directed signal waits in its
            # own pending set, and complete_signal wakes no one (wants_signal refuses a
            # PF_EXITING thread): not even SIGKILL acts (6.18.44). The checks come first
            # (access_pidfd_pidns: EINVAL; check_kill_permission: EPERM; seed 51013).
            sig.pidfd_check(caller, target, signo)
            return
        if fd.thread and signo and target.blocked >> (signo - 1) & 1 and signo not in (9, 19):
            # a thread-directed signal the thread blocks waits in that thread's own
            # pending set, which the model does not keep (it keeps the group's)
            raise Unmodeled("a signal through a thread pidfd to a thread that blocks it")
        sig.pidfd_send_signal(self, caller, target.group, signo)

    def pidfd_info(self, task: Caller, fd: Pidfd) -> PidfdInfo:
        """ioctl(PIDFD_GET_INFO) for PIDFD_INFO_PID."""
        return pidfd.get_info(self._enter(task), fd, self.profile)

    def pidfd_nspid(self, fd: Pidfd, procfs: PidNamespace | None = None) -> tuple[int, ...]:
        """The NSpid line of the pidfd's fdinfo read through a procfs of ``procfs``
        (default: the model's root namespace)."""
        return pidfd.fdinfo_nspid(fd, self.root_ns if procfs is None else procfs)

    def sigaction(self, task: Caller, signo: int, disposition: Disposition) -> None:
        sig.set_disposition(self._enter(task).group, signo, disposition)

    def sigprocmask(
        self, task: Caller, block: Sequence[int] = (), unblock: Sequence[int] = ()
    ) -> None:
        """sigprocmask(SIG_BLOCK / SIG_UNBLOCK) of the calling thread."""
        add = sum({sig.sigmask(s) for s in block if 0 < s < 65})
        remove = sum({sig.sigmask(s) for s in unblock if 0 < s < 65})
        sig.sigprocmask(self, self._enter(task), add, remove)

    def pending(self, task: Caller) -> list[int]:
        """The signals pending for the caller's group that no thread took yet (ShdPnd)."""
        return sorted(task.group.blocked_everywhere or ())

    def caught(self, task: Caller) -> list[tuple[int, int]]:
        """The signals the task caught since the last call, with their si_pid."""
        return [(signo, pids[0]) for signo, pids in sig.take_caught(self._enter(task).group)]

    def caught_candidates(self, task: Caller) -> list[tuple[int, tuple[int, ...]]]:
        """As ``caught``, with every si_pid the kernel may have kept for each: signals of
        one number from several senders merge while pending, and which sender's si_pid
        stays depends on which of them ran first (two tasks dying at once, say)."""
        return sig.take_caught(self._enter(task).group)

    def run_handlers(self) -> None:
        """Let every task run: the handlers of its pending caught signals execute, so
        later signals of the same number are no longer merged with them."""
        for task in self.tasks:
            task.awaiting_handler = None

    # ---- ids ----------------------------------------------------------------------------

    def getpid(self, task: Caller) -> int:
        """The tgid: the same in every thread of a group."""
        return task.group.numbers[-1]

    def gettid(self, task: Caller) -> int:
        return task.numbers[-1]

    def getppid(self, task: Caller) -> int:
        group = task.group
        parent = group.parent
        return 0 if parent is None else nr_in(parent, group.ns)

    def getpgid(self, task: Caller, pid: int = 0) -> int:
        """getpgid(PID): ESRCH when the caller's namespace has no such pid; 0 when the
        group's leader is not visible there."""
        return nr_in(self._by_pid(task, pid, "getpgid").pgrp, task.ns)

    def getsid(self, task: Caller, pid: int = 0) -> int:
        return nr_in(self._by_pid(task, pid, "getsid").session, task.ns)

    def _by_pid(self, task: Caller, pid: int, call: str) -> Task:
        """find_task_by_vpid for calls taking a pid (0: the caller): the tid's group."""
        if pid == 0:
            return task.group
        entry = task.ns.idr.get(pid) if pid > 0 else None
        if entry is None or entry.state is TaskState.REAPED:
            raise KernelError(errno.ESRCH, call)
        return entry.group

    def setpgid(self, task: Caller, pid: int = 0, pgid: int = 0) -> None:
        """kernel/sys.c:setpgid, every check in the kernel's order."""
        caller = self._enter(task).group
        if pgid < 0:
            raise KernelError(errno.EINVAL, "setpgid")
        if pid == 0:
            target: Task | Thread = caller
        else:
            entry = caller.ns.idr.get(pid) if pid > 0 else None
            if entry is None or entry.state is TaskState.REAPED:
                raise KernelError(errno.ESRCH, "setpgid")
            target = entry
        if not isinstance(target, Task):
            raise KernelError(errno.EINVAL, "setpgid")  # not a thread-group leader
        if target.parent is caller:
            if target.session is not caller.session:
                raise KernelError(errno.EPERM, "setpgid")
            if target.execed:
                raise KernelError(errno.EACCES, "setpgid")  # !PF_FORKNOEXEC
        elif target is not caller:
            raise KernelError(errno.ESRCH, "setpgid")
        if target.session is target:
            raise KernelError(errno.EPERM, "setpgid")  # a session leader
        if pgid == 0 or pgid == nr_in(target, caller.ns):
            group: Task | Thread = target
        else:
            leader = caller.ns.idr.get(pgid)
            # pid_task(find_vpid(pgid), PIDTYPE_PGID): a group with a member, of the session
            if not isinstance(leader, Task) or not leader.pgrp_users:
                raise KernelError(errno.EPERM, "setpgid")
            if leader.session is not caller.session:
                raise KernelError(errno.EPERM, "setpgid")
            group = leader
        if target.pgrp is group:
            return
        old = target.pgrp
        assert isinstance(group, Task)
        old.pgrp_users -= 1
        target.pgrp = group
        target.pgrp_joined = next_seq()
        group.pgrp_users += 1
        exits.release_if_unused(self, old)

    def setsid(self, task: Caller) -> int:
        """kernel/sys.c:ksys_setsid: EPERM for a process-group leader."""
        task = self._enter(task).group
        if task.pgrp_users:
            # "Fail if task is already a process group leader" (a group uses its pid)
            raise KernelError(errno.EPERM, "setsid")
        old_pgrp, old_session = task.pgrp, task.session
        old_pgrp.pgrp_users -= 1
        old_session.session_users -= 1
        task.pgrp = task.session = task
        task.pgrp_joined = next_seq()
        task.pgrp_users += 1
        task.session_users += 1
        exits.release_if_unused(self, old_pgrp)
        exits.release_if_unused(self, old_session)
        return task.numbers[-1]

    def set_subreaper(self, task: Caller, on: bool) -> None:
        """prctl(PR_SET_CHILD_SUBREAPER) (kernel/sys.c)."""
        group = self._enter(task).group
        group.is_subreaper = on
        if on and self.profile.subreaper_propagates:
            _propagate_has_child_subreaper(group)

    def setuid(self, task: Caller, uid: int) -> None:
        """kernel/sys.c:__sys_setuid, as glibc's setuid(3) makes it: every thread of the
        group changes (the model keeps credentials per group).

        The model maps uids in its root user namespace (all of them, or ``mapped_uids``)
        and none in user namespaces a task creates: there, setuid fails with EINVAL, as
        it does on the kernel until a uid_map is written.
        """
        task = self._enter(task).group
        if uid < 0 or not task.user_ns.maps(uid):
            raise KernelError(errno.EINVAL, "setuid")
        old_euid = task.euid
        if capable(task, task.user_ns):
            task.uid = task.euid = task.suid = uid
            task.caps = uid == 0  # cap_emulate_setxuid drops them with the last uid 0
        elif uid in (task.uid, task.suid):
            task.euid = uid
        else:
            raise KernelError(errno.EPERM, "setuid")
        if task.euid != old_euid:
            task.dumpable = False  # kernel/cred.c:commit_creds

    # ---- pid_max and the nsfs ioctls -----------------------------------------------------

    def read_pid_max(self, task: Caller) -> int:
        """/proc/sys/kernel/pid_max: the reader's active namespace's (6.14+; global in 3.8)."""
        return task.ns.pid_max if self.profile.per_ns_pid_max else self.pid_max

    def write_pid_max(self, task: Caller, value: int) -> None:
        """Writing /proc/sys/kernel/pid_max (kernel/pid.c:pid_table_root_permissions and
        proc_dointvec_minmax's range): EACCES without CAP_SYS_ADMIN over the owner of
        the writer's active namespace, or being its root (3.8: the initial one), then EINVAL
        outside PID_MAX_MIN..PID_MAX_LIMIT. Only later allocations see it."""
        group = self._enter(task).group
        per_ns = self.profile.per_ns_pid_max
        owner = group.ns.user_ns if per_ns else self.root_user_ns
        # "or uid_eq(current_euid(), make_kuid(ns->user_ns, 0))": the owner's root
        # writes it even without capabilities (after unshare(NEWUSER), say); of the
        # model's user namespaces only its root one maps uid 0
        owners_root = owner.parent is None and owner.maps(0) and group.euid == 0
        if not capable(group, owner) and not owners_root:
            raise KernelError(errno.EACCES, "open")
        if not PID_MAX_MIN <= value <= PID_MAX_LIMIT:
            raise KernelError(errno.EINVAL, "write")
        if per_ns:
            group.ns.pid_max = value
        else:
            self.pid_max = value
            for ns in self.namespaces:
                ns.pid_max = value

    def ns_parent(self, task: Caller, ns: PidNamespace) -> PidNamespace:
        """ioctl(NS_GET_PARENT) on a file of ``ns``."""
        self._has_ioctl(self.profile.has_ns_get_parent)
        return nsfs.get_parent(task, ns)

    def ns_pid_from(self, task: Caller, ns: PidNamespace, pid: int, tgid: bool = False) -> int:
        """ioctl(NS_GET_PID_FROM_PIDNS) (NS_GET_TGID_FROM_PIDNS with ``tgid``)."""
        self._has_ioctl(self.profile.has_ns_pid_ioctls)
        return nsfs.pid_from_pidns(task, ns, pid, tgid)

    def ns_pid_in(self, task: Caller, ns: PidNamespace, pid: int, tgid: bool = False) -> int:
        """ioctl(NS_GET_PID_IN_PIDNS) (NS_GET_TGID_IN_PIDNS with ``tgid``)."""
        self._has_ioctl(self.profile.has_ns_pid_ioctls)
        return nsfs.pid_in_pidns(task, ns, pid, tgid)

    @staticmethod
    def _has_ioctl(present: bool) -> None:
        if not present:
            raise KernelError(errno.ENOTTY, "ioctl")  # ns_ioctl: -ENOIOCTLCMD

    # ---- observers ----------------------------------------------------------------------

    def pid_in(self, task: Task | Thread, ns: PidNamespace) -> int:
        """The task's pid in ``ns`` (0 when not visible there)."""
        return nr_in(task, ns)

    def pid_seen_by(self, observer: Caller, task: Task | Thread) -> int:
        """The task's pid in the observer's active namespace; 0 if invisible or reaped."""
        if task.state is TaskState.REAPED:
            return 0
        return nr_in(task, observer.ns)

    def nspid(self, task: Task | Thread, from_ns: PidNamespace | None = None) -> tuple[int, ...]:
        """/proc/PID/status NSpid read through a procfs of ``from_ns`` (default: the root)."""
        start = 0 if from_ns is None else from_ns.depth
        if from_ns is not None and nr_in(task, from_ns) == 0:
            return ()
        return task.numbers[start:]

    def live_tasks(self) -> Iterator[Task]:
        return iter(self.tasks)

    def find(self, ns: PidNamespace, pid: int) -> Task | None:
        """The process whose pid in ``ns`` is ``pid`` (find_task_by_pid_ns), if unreaped;
        a tid finds its thread's group."""
        task = ns.idr.get(pid)
        if task is None or task.state is TaskState.REAPED:
            return None
        return task.group


def has_task(fd: Pidfd) -> bool:
    """The pidfd's struct pid still has its task (pid_has_task)."""
    return not fd.gone


def _propagate_has_child_subreaper(task: Task) -> None:
    """kernel/sys.c:propagate_has_child_subreaper over walk_process_tree: mark every
    descendant, skipping subtrees already marked and subtrees under a namespace init."""
    stack = list(task.children or ())
    while stack:
        child = stack.pop()
        if child.has_child_subreaper or child.numbers[-1] == 1:
            continue
        child.has_child_subreaper = True
        stack.extend(child.children or ())


__all__ = [
    "PTHREAD_FLAGS",
    "Disposition",
    "Kernel",
    "Pidfd",
    "TaskState",
    "Thread",
    "WaitFor",
    "WaitResult",
    "cf",
    "signals",
]
