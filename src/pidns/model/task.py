"""Tasks and threads: the data of a process, its threads, and the state machine of its life.

A ``Task`` is a thread group (gVisor's ThreadGroup / threadGroupNode, the kernel's
signal_struct) together with its leader thread; every other thread of the group is a
``Thread`` (gVisor's Task / taskNode). What the kernel keeps per thread lives on both
(``numbers``, the tid in every level; ``children_ns``, nsproxy->pid_ns_for_children;
``blocked``, the signal mask); everything else is per group: the tgid (the leader's
``numbers``), children and wait, dispositions, pending and caught signals, process
group and session, credentials (setuid(3) changes every thread's; unshare(NEWUSER)
needs a single thread), the stop state, and the life below. A caller of a system call
is a ``Task`` (its leader thread) or a ``Thread``; ``caller.group`` is its Task.

The group's life is an explicit, checked state machine:

    running --exit/fatal signal--> exiting --notify parent--> zombie --wait--> reaped

(a child whose parent ignores SIGCHLD is reaped at once from zombie: autoreap).

``exiting`` lasts only while an init sleeps in zap_pid_ns_processes until every other
pid of its namespace is released; every other task passes through it within one call.
"""

from __future__ import annotations

import enum
import itertools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pidns.model.exit import Sleeper
    from pidns.model.namespace import PidNamespace, UserNamespace


class TaskState(enum.IntEnum):
    RUNNING = 0
    EXITING = 1  # PF_EXITING, not yet EXIT_ZOMBIE
    ZOMBIE = 2  # EXIT_ZOMBIE: waits for its parent's wait()
    REAPED = 3  # EXIT_DEAD and released

    def __str__(self) -> str:
        return self.name.lower()


_NEXT: dict[TaskState, frozenset[TaskState]] = {
    TaskState.RUNNING: frozenset({TaskState.EXITING}),
    # an autoreaped task passes through ZOMBIE too (exit_notify, then release_task);
    # the kernel marks it EXIT_DEAD at once, which no observer can tell apart
    TaskState.EXITING: frozenset({TaskState.ZOMBIE}),
    TaskState.ZOMBIE: frozenset({TaskState.REAPED}),
    TaskState.REAPED: frozenset(),
}


class IllegalTransition(AssertionError):
    """A bug in the model: a task was moved along an edge its state machine lacks."""


class Disposition(enum.IntEnum):
    DEFAULT = 0
    IGNORE = 1
    CATCH = 2


_seq = itertools.count(1)


def next_seq() -> int:
    """A number later than every one handed out so far (creation and group joins)."""
    return next(_seq)


class Thread:
    """A thread other than its group's leader: per-thread state only (include/linux/sched.h:
    task_struct's thread_pid, nsproxy and blocked). Its life is live -> released: a
    non-leader thread is reaped by the kernel as it exits (exit_signal -1)."""

    __slots__ = ("alive", "blocked", "children_ns", "group", "numbers", "seq")

    def __init__(self, group: Task, numbers: tuple[int, ...], children_ns: PidNamespace) -> None:
        self.seq = next_seq()
        self.group = group
        self.numbers = numbers  # the tid in every level of group.ns.chain
        self.children_ns = children_ns  # nsproxy->pid_ns_for_children, per thread
        self.blocked = 0  # the signal mask, bit (sig - 1)
        self.alive = True  # False once exited: its numbers are released

    @property
    def ns(self) -> PidNamespace:
        """task_active_pid_ns: a thread is always in its group's (copy_process refuses
        CLONE_THREAD while pid_ns_for_children differs from it)."""
        return self.group.ns

    @property
    def state(self) -> TaskState:
        return TaskState.RUNNING if self.alive else TaskState.REAPED

    def __repr__(self) -> str:
        return f"<Thread {'/'.join(map(str, self.numbers))} of {self.group!r}>"


class Task:
    """One process (thread group) and its leader thread. Fields hold their invariant in
    the comment beside them."""

    __slots__ = (
        "awaiting_handler",
        "blocked",
        "blocked_everywhere",
        "caps",
        "caught",
        "children",
        "children_ns",
        "creator",
        "dispositions",
        "dumpable",
        "euid",
        "execed",
        "exit_signal",
        "exit_status",
        "has_child_subreaper",
        "is_subreaper",
        "leader_creds",
        "leader_exited",
        "ns",
        "numbers",
        "parent",
        "pgrp",
        "pgrp_joined",
        "pgrp_users",
        "queued_while_stopped",
        "seq",
        "session",
        "session_users",
        "sleepers",
        "state",
        "stopped",
        "suid",
        "threads",
        "uid",
        "unkillable",
        "user_ns",
        "wakeups",
        "zombies",
    )

    def __init__(
        self,
        ns: PidNamespace,
        numbers: tuple[int, ...],
        parent: Task | None,
        user_ns: UserNamespace,
    ) -> None:
        self.seq = next_seq()  # creation order: the kernel's task list order
        self.ns = ns  # task_active_pid_ns: fixed for life
        self.numbers = numbers  # numbers[d] is the pid in ns.chain[d]
        self.children_ns: PidNamespace = ns  # nsproxy->pid_ns_for_children
        self.parent = parent  # real_parent; None only for the model's boot init
        # children in the kernel's list order (new ones and reparented ones at the tail);
        # None while empty, to keep a million idle tasks small
        self.children: dict[Task, None] | None = None
        self.zombies = 0  # how many of ``children`` are zombies
        self.state = TaskState.RUNNING
        self.exit_status = 0  # wait status: code << 8, or the killing signal
        self.stopped = False
        # signals queued while stopped (signal -> si_pid of the first one: a standard
        # signal does not queue twice); acted on, lowest number first, when continued
        self.queued_while_stopped: dict[int, int] | None = None
        # process group and session leaders: tasks whose pid is the pgid / sid; their
        # numbers stay allocated while any unreaped task still uses them
        self.pgrp: Task = self
        # when it joined that group: the kernel walks a group newest member first
        # (attach_pid adds at the head of the pid's hlist)
        self.pgrp_joined = self.seq
        self.session: Task = self
        self.pgrp_users = 0  # unreaped tasks whose pgrp is this task
        self.session_users = 0  # unreaped tasks whose session is this task
        self.uid = 0
        self.euid = 0
        self.suid = 0
        self.user_ns = user_ns  # the credentials' user namespace
        self.caps = True  # the full capability set in user_ns (root) or none
        # SUID_DUMP_USER; lost when the euid changes (kernel/cred.c:commit_creds sets
        # suid_dumpable, 0 by default); inherited with the mm on fork
        self.dumpable = True
        # signal number -> disposition; shared with children until one of them changes
        # it (copy on write); None means every signal is at SIG_DFL
        self.dispositions: dict[int, Disposition] | None = None
        # (signal, si_pids) caught and not yet read: si_pids[0] is the sender's; more
        # than one when signals of one number from several senders merged before the
        # handler ran (which one the kernel keeps depends on who got there first)
        self.caught: list[tuple[int, tuple[int, ...]]] | None = None
        # caught signals whose handler has not run yet (signal -> index in ``caught``):
        # a second one of the same number merges with it (kernel/signal.c:legacy_queue);
        # cleared when the task runs
        self.awaiting_handler: dict[int, int] | None = None
        self.is_subreaper = False  # signal->is_child_subreaper
        self.has_child_subreaper = False  # some ancestor is (or was) a subreaper
        self.unkillable = False  # SIGNAL_UNKILLABLE: set on an init (pid 1 in its ns)
        self.threads: dict[Thread, None] | None = None  # live threads but the leader
        self.leader_exited = False  # the leader thread exit(2)ed; the group lives on
        # (uid, suid) the leader thread had when it exit(2)ed: creds are per thread, and a
        # later setuid changes only the live ones (kill's permission check reads these)
        self.leader_creds: tuple[int, int] | None = None
        self.blocked = 0  # the leader thread's signal mask, bit (sig - 1)
        # signals every thread blocked when they came (signal -> si_pid of the first
        # one: a standard signal does not queue twice), delivered on unblock
        self.blocked_everywhere: dict[int, int] | None = None
        self.exit_signal = 17  # SIGCHLD; another one makes the child a "clone" child
        self.execed = False  # not PF_FORKNOEXEC any more: setpgid by the parent is EACCES
        # how often a sleeping wait of this group was woken (__wake_up_parent on a child's
        # exit, stop or continue; a caught signal): it looks at its children again then
        self.wakeups = 0  # signal_wake_up of a caught signal: a sleeping wait restarts
        self.sleepers: list[Sleeper] | None = None  # waits asleep in the group
        # the thread of the parent whose children list holds it (real_parent); None: the
        # parent's leader. A wait scans the caller's own children first (do_wait).
        self.creator: Thread | None = None

    def __repr__(self) -> str:
        return f"<Task {'/'.join(map(str, self.numbers))} {self.state}>"

    @property
    def alive(self) -> bool:
        return self.state is TaskState.RUNNING

    @property
    def group(self) -> Task:
        return self

    def live_threads(self) -> list[Task | Thread]:
        """The group's threads that still run, the leader first (for_each_thread)."""
        threads: list[Task | Thread] = [] if self.leader_exited else [self]
        threads.extend(self.threads or ())
        return threads

    def move_to(self, new: TaskState) -> None:
        """The one place a task changes state; refuses edges the machine lacks."""
        if new not in _NEXT[self.state]:
            raise IllegalTransition(f"{self!r}: {self.state} -> {new}")
        self.state = new

    def disposition(self, sig: int) -> Disposition:
        table = self.dispositions
        if table is None:
            return Disposition.DEFAULT
        return table.get(sig, Disposition.DEFAULT)

    def set_disposition(self, sig: int, disposition: Disposition) -> None:
        table = dict(self.dispositions or {})
        if disposition is Disposition.DEFAULT:
            table.pop(sig, None)
        else:
            table[sig] = disposition
        self.dispositions = table or None

    def add_child(self, child: Task, creator: Thread | None = None) -> None:
        """CHILD joins the end of the children list of thread ``creator`` (None: the
        leader's; a leader that exit(2)ed hands them to its first live thread)."""
        if creator is None and self.leader_exited and self.threads:
            creator = next(iter(self.threads))
        child.creator = creator
        if self.children is None:
            self.children = {}
        self.children[child] = None
        if child.state is TaskState.ZOMBIE:
            self.zombies += 1

    def remove_child(self, child: Task) -> None:
        assert self.children is not None
        del self.children[child]
        if child.state is TaskState.ZOMBIE:
            self.zombies -= 1
        if not self.children:
            self.children = None

    def exited_status(self) -> tuple[bool, int]:
        """(True, code) for a normal exit, (False, signal) when killed."""
        if self.exit_status & 0x7F:
            return False, self.exit_status & 0x7F
        return True, (self.exit_status >> 8) & 0xFF


def capable(task: Task, target: UserNamespace) -> bool:
    """security/commoncap.c:cap_capable: does ``task`` hold capabilities over ``target``?

    It does in its own user namespace when it has them, in every namespace below it
    when it has them, and in a child namespace whose owner is its euid.
    """
    own = task.user_ns
    ns: UserNamespace | None = target
    while ns is not None:
        if ns is own:
            return task.caps
        if ns.level <= own.level:
            return False
        if ns.parent is own and ns.owner == task.euid:
            return True
        ns = ns.parent
    return False


Caller = Task | Thread
"""Who makes a system call: a group's leader thread (its Task) or another thread."""
