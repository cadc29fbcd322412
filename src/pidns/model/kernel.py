"""The Kernel: the model's syscall surface (thin) and its observers.

Every syscall takes the calling task first and raises ``KernelError`` (errno) on
failure. Pid numbers cross this boundary only as the caller sees them: a number in the
caller's active namespace, 0 for a task it cannot see. Everything inside works on task
objects.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator, Sequence

from pidns.core import flags as cf
from pidns.core import signals
from pidns.model import create
from pidns.model import exit as exits
from pidns.model import signal as sig
from pidns.model.errors import KernelError
from pidns.model.namespace import PidNamespace, UserNamespace, nr_in, publish_numbers
from pidns.model.profiles import MAX_PID_NS_LEVEL, PID_MAX_DEFAULT, PID_MAX_LIMIT, Profile
from pidns.model.profiles import get as get_profile
from pidns.model.task import Disposition, Task, TaskState, capable, next_seq

WaitResult = exits.WaitResult


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

    def fork(self, task: Task) -> Task:
        return create.copy_process(self, _running(task), 0, ())

    def clone(self, task: Task, flags: int, set_tid: Sequence[int] = ()) -> Task:
        return create.copy_process(self, _running(task), flags, tuple(set_tid))

    def unshare(self, task: Task, flags: int) -> None:
        create.unshare(self, _running(task), flags)

    def setns(self, task: Task, target: Task, for_children: bool = False) -> None:
        """setns(open("/proc/TARGET/ns/pid[_for_children]"), CLONE_NEWPID)."""
        ns = create.open_ns_link(self, _running(task), target, for_children)
        create.setns(self, task, ns)

    # ---- exit and wait ----------------------------------------------------------------

    def exit(self, task: Task, code: int) -> None:
        exits.do_exit(self, _running(task), (code & 0xFF) << 8)
        sig.flush_fatal(self)

    def wait(
        self, task: Task, target: Task | None = None, nohang: bool = False
    ) -> exits.WaitResult | None:
        """waitpid(TARGET or -1): None with ``nohang`` when nothing is ready; raises
        WouldBlock instead when the call would sleep."""
        return exits.do_wait(self, _running(task), target, nohang)

    # ---- signals ----------------------------------------------------------------------

    def kill(self, task: Task, pid: int, signo: int) -> None:
        """kill(2) with a pid number as the caller sees it (0, -1 and -PGID included)."""
        sig.kill(self, _running(task), pid, signo)

    def kill_task(self, task: Task, target: Task, signo: int) -> None:
        """kill(2) of a task by name: ESRCH, with no call made, when the caller cannot see it."""
        pid = self.pid_seen_by(task, target)
        if pid == 0:
            raise KernelError(errno.ESRCH, "kill")
        self.kill(task, pid, signo)

    def sigaction(self, task: Task, signo: int, disposition: Disposition) -> None:
        sig.set_disposition(_running(task), signo, disposition)

    def caught(self, task: Task) -> list[tuple[int, int]]:
        """The signals the task caught since the last call, with their si_pid."""
        return [(signo, pids[0]) for signo, pids in sig.take_caught(_running(task))]

    def caught_candidates(self, task: Task) -> list[tuple[int, tuple[int, ...]]]:
        """As ``caught``, with every si_pid the kernel may have kept for each: signals of
        one number from several senders merge while pending, and which sender's si_pid
        stays depends on which of them ran first (two tasks dying at once, say)."""
        return sig.take_caught(_running(task))

    def run_handlers(self) -> None:
        """Let every task run: the handlers of its pending caught signals execute, so
        later signals of the same number are no longer merged with them."""
        for task in self.tasks:
            task.undelivered = None

    # ---- ids ----------------------------------------------------------------------------

    def getpid(self, task: Task) -> int:
        return task.numbers[-1]

    def getppid(self, task: Task) -> int:
        parent = task.parent
        return 0 if parent is None else nr_in(parent, task.ns)

    def getpgid(self, task: Task) -> int:
        return nr_in(task.pgrp, task.ns)

    def getsid(self, task: Task) -> int:
        return nr_in(task.session, task.ns)

    def setsid(self, task: Task) -> int:
        """kernel/sys.c:ksys_setsid: EPERM for a process-group leader."""
        _running(task)
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

    def set_subreaper(self, task: Task, on: bool) -> None:
        """prctl(PR_SET_CHILD_SUBREAPER) (kernel/sys.c)."""
        _running(task).is_subreaper = on
        if on and self.profile.subreaper_propagates:
            _propagate_has_child_subreaper(task)

    def setuid(self, task: Task, uid: int) -> None:
        """kernel/sys.c:__sys_setuid for a single-threaded task.

        The model maps uids in its root user namespace (all of them, or ``mapped_uids``)
        and none in user namespaces a task creates: there, setuid fails with EINVAL, as
        it does on the kernel until a uid_map is written.
        """
        _running(task)
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

    # ---- observers ----------------------------------------------------------------------

    def pid_in(self, task: Task, ns: PidNamespace) -> int:
        """The task's pid in ``ns`` (0 when not visible there)."""
        return nr_in(task, ns)

    def pid_seen_by(self, observer: Task, task: Task) -> int:
        """The task's pid in the observer's active namespace; 0 if invisible or reaped."""
        if task.state is TaskState.REAPED:
            return 0
        return nr_in(task, observer.ns)

    def nspid(self, task: Task, from_ns: PidNamespace | None = None) -> tuple[int, ...]:
        """/proc/PID/status NSpid read through a procfs of ``from_ns`` (default: the root)."""
        start = 0 if from_ns is None else from_ns.depth
        if from_ns is not None and nr_in(task, from_ns) == 0:
            return ()
        return task.numbers[start:]

    def live_tasks(self) -> Iterator[Task]:
        return iter(self.tasks)

    def find(self, ns: PidNamespace, pid: int) -> Task | None:
        """The task whose pid in ``ns`` is ``pid`` (find_task_by_pid_ns), if unreaped."""
        task = ns.idr.get(pid)
        if task is None or task.state is TaskState.REAPED:
            return None
        return task


def _running(task: Task) -> Task:
    """The caller of a system call: it runs, so its pending handlers have run first."""
    if task.state is not TaskState.RUNNING:
        raise ValueError(f"{task!r} cannot make system calls: it is {task.state}")
    task.undelivered = None
    return task


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


__all__ = ["Disposition", "Kernel", "TaskState", "WaitResult", "cf", "signals"]
