"""Exit and wait: reparenting, the zap of a dying namespace, zombies and reaping.

kernel/exit.c (do_exit, exit_notify, forget_original_parent, find_child_reaper,
find_new_reaper, reparent_leader, release_task, do_wait) and
kernel/pid_namespace.c:zap_pid_ns_processes. The rules, in one place:

1. An exiting task's children go to the first live subreaper among its ancestors at
   its own pid level, else to its namespace's init; the namespace that decides is the
   exiting task's, so an outside creator's oddball children and inits go to the
   creator's reaper, outside (find_new_reaper).
2. An init's exit first disables allocation in its namespace (fork -> ENOMEM), ignores
   SIGCHLD, SIGKILLs every other task with a pid there (nested namespaces included),
   reaps its own children, and sleeps until every other pid of the namespace is
   released, zombies with an outside parent included; only then does it become a zombie.
3. A zombie is reaped by its parent's wait, or at once when the parent ignores SIGCHLD.
4. Threads: a group exit (exit_group, a fatal signal, exec) ends every thread; a thread
   that exit(2)s alone is released at once (a leader stays, as the group's tgid, until
   the group ends); the group ends with its last thread and reports the leader's code.
   While another thread runs, an init's namespace lives on (find_child_reaper moves
   child_reaper to a live thread; the model keeps it on the group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pidns.core import errnos, signals
from pidns.model import signal as sig
from pidns.model.errors import KernelError, Unmodeled, WouldBlock
from pidns.model.namespace import PidNamespace, nr_in, release_numbers
from pidns.model.task import Caller, Disposition, Task, TaskState, Thread

if TYPE_CHECKING:
    from collections.abc import Collection

    from pidns.model.kernel import Kernel

ECHILD = errnos.number("ECHILD")


def do_exit(kernel: Kernel, task: Task, status: int) -> None:
    """kernel/exit.c:do_exit with a wait status (code << 8, or the killing signal)."""
    ns = task.ns
    is_reaper = ns.child_reaper is task
    if is_reaper and task.parent is None:
        # the global init's exit panics the kernel; a world's init has its parent
        # outside the model
        raise Unmodeled("the model's boot init cannot exit")
    _move(kernel, task, TaskState.EXITING)
    task.exit_status = status
    task.stopped = False
    task.blocked_everywhere = None
    for thread in list(task.threads or ()):
        release_thread(kernel, thread)  # zap_other_threads: they exit and are released
    if is_reaper:
        # find_child_reaper: the namespace's init is leaving
        zap_pid_ns_processes(kernel, ns, task)
        if ns.allocated > 1:
            ns.zap_waiter = task  # sleeps until release_numbers wakes it
            return
    exit_notify(kernel, task)


def _move(kernel: Kernel, task: Task, state: TaskState) -> None:
    task.move_to(state)
    if kernel.journal is not None:
        kernel.journal.append(task)


def zap_pid_ns_processes(kernel: Kernel, ns: PidNamespace, init: Task) -> None:
    """kernel/pid_namespace.c:zap_pid_ns_processes, up to the final sleep."""
    ns.adding = False  # disable_pid_allocation
    init.set_disposition(signals.CHLD, Disposition.IGNORE)
    for nr in sorted(ns.idr):
        victim = ns.idr[nr].group  # a thread's number reaches its group
        if nr >= 2 and victim.state is TaskState.RUNNING and victim is not init:
            sig.send(kernel, victim, signals.KILL, 0, force=True)  # SEND_SIG_PRIV
    sig.flush_fatal(kernel)
    # kernel_wait4(-1) until ECHILD: reap the zombies made before SIGCHLD was ignored;
    # a child still exiting (a nested init waiting for its own namespace) keeps a pid
    # here, so the final sleep below covers it
    if init.children:
        for child in [c for c in init.children if c.state is TaskState.ZOMBIE]:
            release_task(kernel, child)


def exit_notify(kernel: Kernel, task: Task) -> None:
    """kernel/exit.c:exit_notify: hand the children over, become a zombie, tell the parent.
    A process group this exit orphans gets SIGHUP and SIGCONT if a member is stopped
    (kill_orphaned_pgrp); they act once the exit is done, as the kernel's wake later."""
    forget_original_parent(kernel, task)
    kill_orphaned_pgrp(kernel, task, None)
    _move(kernel, task, TaskState.ZOMBIE)
    parent = task.parent
    assert parent is not None
    parent.zombies += 1
    if notify_parent(kernel, task) or in_zap_wait(parent):
        release_task(kernel, task)
    sig.flush_fatal(kernel)


def kill_orphaned_pgrp(kernel: Kernel, task: Task, father: Task | None) -> None:
    """kernel/exit.c:kill_orphaned_pgrp. On exit (``father`` None): TASK's parent is in
    another group of the session and TASK was its group's last link outside. On
    reparenting (TASK a child of the exiting ``father``): the father was that link.
    Either way, a group left with no member whose parent is in another group of the same
    session (POSIX's orphaned process group) and with a stopped member gets SIGHUP, then
    SIGCONT, from the kernel (SEND_SIG_PRIV: si_pid 0, forced), every member."""
    outside = task.parent if father is None else father
    pgrp = task.pgrp
    if outside is None or outside.pgrp is pgrp or outside.session is not task.session:
        return
    members = sig.pgrp_members(kernel, pgrp)
    if not any(t.stopped for t in members):  # has_stopped_jobs: SIGNAL_STOP_STOPPED
        return
    ignored = task if father is None else None
    for member in members:  # will_become_orphaned_pgrp
        parent = member.parent
        if member is ignored or parent is None:  # parent None: root, whose is outside
            continue
        if member.state is TaskState.ZOMBIE and not member.threads:
            continue
        if parent.pgrp is not pgrp and parent.session is member.session:
            return
    for signo in (signals.HUP, signals.CONT):
        for member in members:
            sig.send(kernel, member, signo, 0, force=True)


def in_zap_wait(task: Task) -> bool:
    """A dying init in zap_pid_ns_processes' kernel_wait4(-1, __WALL) loop: it reaps every
    child as it becomes a zombie, whatever the child's exit signal (an autoreap covers
    only SIGCHLD ones: the zap ignores SIGCHLD)."""
    return task.state is TaskState.EXITING and task.ns.zap_waiter is task


def notify_parent(kernel: Kernel, child: Task) -> bool:
    """kernel/signal.c:do_notify_parent: the child's exit signal (SIGCHLD unless clone
    chose another; none for 0) to the parent, with si_pid in the parent's namespace.
    Returns True when the child is to be reaped at once (autoreap: the exit signal is
    SIGCHLD and the parent's SIGCHLD disposition is SIG_IGN)."""
    parent = child.parent
    assert parent is not None
    wake_parent(parent, child)
    signo = child.exit_signal
    if signo == signals.CHLD and parent.disposition(signals.CHLD) is Disposition.IGNORE:
        return True
    if signo:
        sig.send(kernel, parent, signo, nr_in(child, parent.ns), force=False)
    return False


def find_new_reaper(kernel: Kernel, father: Task) -> Task:
    """kernel/exit.c:find_child_reaper + find_new_reaper for a single-threaded father.

    Profile: today the subreaper walk stays at the father's pid level; in 3.8 it went
    up until it met the namespace's child_reaper, which an outside-created father
    never meets.
    """
    reaper = father.ns.child_reaper
    assert reaper is not None
    if father.has_child_subreaper:
        candidate = father.parent
        bounded = kernel.profile.subreaper_walk_bounded_by_level
        depth = father.ns.depth
        while candidate is not None and candidate.parent is not None:
            if bounded and candidate.ns.depth != depth:
                break
            if not bounded and candidate is reaper:
                break
            if candidate.is_subreaper and candidate.state is TaskState.RUNNING:
                return candidate
            candidate = candidate.parent
    return reaper


def forget_original_parent(kernel: Kernel, father: Task) -> None:
    """kernel/exit.c:forget_original_parent + reparent_leader."""
    if not father.children:
        return
    reaper = find_new_reaper(kernel, father)
    orphans = list(father.children)
    father.children = None
    father.zombies = 0
    if kernel.journal is not None:
        kernel.journal.extend(orphans)
    for child in orphans:
        child.parent = reaper
        child.exit_signal = signals.CHLD  # reparent_leader: "We don't want people slaying init"
        reaper.add_child(child)
    for child in orphans:
        # reparent_leader: a zombie is announced to its new parent, which may reap it
        # (after the group check, as the kernel releases its dead list at the end)
        released = child.state is TaskState.ZOMBIE and notify_parent(kernel, child)
        kill_orphaned_pgrp(kernel, child, father)
        if released:
            release_task(kernel, child)


def release_task(kernel: Kernel, task: Task) -> None:
    """kernel/exit.c:release_task: unhash the task; free pids nobody uses any more."""
    parent = task.parent
    assert parent is not None
    parent.remove_child(task)
    _move(kernel, task, TaskState.REAPED)
    del kernel.tasks[task]
    pgrp = task.pgrp
    session = task.session
    pgrp.pgrp_users -= 1
    session.session_users -= 1
    for owner in {task: None, pgrp: None, session: None}:
        release_if_unused(kernel, owner)


def release_if_unused(kernel: Kernel, owner: Task) -> None:
    """kernel/pid.c:free_pid once no task uses the pid as pid, pgid or sid."""
    if owner.state is not TaskState.REAPED or owner.pgrp_users or owner.session_users:
        return
    if not owner.numbers or owner.ns.idr.get(owner.numbers[-1]) is not owner:
        return  # already released
    _wake_zap_waiters(kernel, release_numbers(owner))


def _wake_zap_waiters(kernel: Kernel, namespaces: list[PidNamespace]) -> None:
    """free_pid: "When all that is left in the pid namespace is the reaper wake up the
    reaper" sleeping in zap_pid_ns_processes."""
    for ns in namespaces:
        init = ns.zap_waiter
        if init is not None and ns.allocated == 1:
            ns.zap_waiter = None
            exit_notify(kernel, init)


def release_thread(kernel: Kernel, thread: Thread) -> None:
    """A non-leader thread's exit: release_task at once (its exit_signal is -1)."""
    group = thread.group
    assert group.threads is not None
    del group.threads[thread]
    if not group.threads:
        group.threads = None
    thread.alive = False
    _wake_zap_waiters(kernel, release_numbers(thread))


def exit_thread(kernel: Kernel, caller: Caller, status: int) -> None:
    """exit(2) (pthread_exit): only the calling thread ends, unless it is the last one.

    A leader that leaves before its threads stays a zombie thread holding the tgid; its
    children (as a thread's that leaves) go to another live thread (find_new_reaper's
    find_alive_thread), which matters to the order of a wait's scan. The group's wait
    status is the last thread's code (checked on 6.18.44: leader exit(5), then its thread
    exit(9): "exited 9").
    """
    group = caller.group
    last = len(group.live_threads()) == 1
    if isinstance(caller, Thread):
        release_thread(kernel, caller)
        if last:
            do_exit(kernel, group, status)
    elif last:
        do_exit(kernel, group, status)
    else:
        group.leader_exited = True
        group.leader_creds = (group.uid, group.suid)
    if not last:
        _to_alive_thread(group, None if isinstance(caller, Task) else caller)


def _to_alive_thread(group: Task, gone: Thread | None) -> None:
    """kernel/exit.c:find_new_reaper's find_alive_thread: the children of a thread that
    exit(2)ed join the end of the first live thread's list (the leader's unless it left)."""
    moved = [c for c in group.children or () if c.creator is gone]
    for child in moved:
        group.remove_child(child)
        group.add_child(child)


def do_exec(kernel: Kernel, caller: Caller) -> None:
    """fs/exec.c:de_thread and flush_signal_handlers for a successful execve.

    Every other thread is killed and released; a non-leader caller takes the leader's
    pid (its own tid is released) and keeps its own nsproxy and signal mask; caught
    signals go back to SIG_DFL, ignored ones stay ignored, and what the old program's
    handlers took goes with its mm (``caught``). The new mm is dumpable when the
    caller's uid is its euid (fs/exec.c:begin_new_exec), whatever setuid did before;
    the capabilities are root's or none.
    Every pidfd is O_CLOEXEC (kernel/fork.c:pidfd_prepare), so none survives: the
    caller's descriptor table is its observer's (pidns.scenario.model_backend).
    """
    group = caller.group
    for thread in list(group.threads or ()):
        if thread is not caller:
            release_thread(kernel, thread)
    if isinstance(caller, Thread):
        group.children_ns = caller.children_ns
        group.blocked = caller.blocked
        group.leader_exited = False
        group.leader_creds = None  # de_thread: the caller becomes the leader
        release_thread(kernel, caller)
    group.execed = True
    group.caught = None
    group.awaiting_handler = None
    group.dumpable = group.euid == group.uid
    # security/commoncap.c:cap_bprm_creds_from_file (handle_privileged_root): the new
    # image has every capability only if its uid or euid is root of its user namespace,
    # else (no file capabilities, no ambient set) none. A namespace a task made maps no
    # uid (make_kuid(ns, 0) is invalid), so an exec there drops the creator's full set.
    user_ns = group.user_ns
    group.caps = user_ns.parent is None and user_ns.maps(0) and 0 in (group.uid, group.euid)
    table = group.dispositions
    if table:
        kept: dict[int, Disposition] = {
            signo: d for signo, d in table.items() if d is Disposition.IGNORE
        }
        group.dispositions = kept or None


@dataclass(frozen=True, slots=True)
class WaitResult:
    child: Task
    pid: int  # the child's pid in the waiter's namespace
    exited: bool  # False: killed by a signal
    value: int  # the exit code, or the signal

    def describe(self) -> str:
        return f"exited {self.value}" if self.exited else f"killed {signals.name(self.value)}"


@dataclass(frozen=True, slots=True)
class WaitFor:
    """Which children a wait considers (kernel/exit.c:eligible_pid, eligible_child).

    ``target``: one child (waitpid(PID), waitid(P_PID or P_PIDFD)); ``pgrp``: the
    children in the process group whose leader's pid that is (waitpid(0), waitpid(-PGID));
    neither: any child. ``all``: __WALL, which also takes children whose exit signal is
    not SIGCHLD (without it such "clone" children are not eligible). ``nowait``: WNOWAIT,
    report a zombie and leave it unreaped.
    """

    target: Task | None = None
    pgrp: Task | Thread | None = None
    all: bool = False
    nowait: bool = False

    def eligible(self, child: Task) -> bool:
        if self.target is not None and child is not self.target:
            return False
        if self.pgrp is not None and child.pgrp is not self.pgrp:
            return False
        return self.all or child.exit_signal == signals.CHLD

    def wakes(self, child: Task) -> bool:
        """kernel/exit.c:child_wait_callback (pid_child_should_wake): a child's exit or
        stop wakes a wait asleep for it only when eligible_pid holds, __WALL aside."""
        if self.target is not None and child is not self.target:
            return False
        return self.pgrp is None or child.pgrp is self.pgrp


ANY_CHILD = WaitFor()


class Sleeper:
    """A wait asleep on its group's wait_chldexit queue: what it waits for (resolved when
    the call was made: waitpid(0) keeps the group it had then) and whether a child woke
    it since (``woken``; a caught signal wakes it through the group's ``wakeups``)."""

    __slots__ = ("how", "woken")

    def __init__(self, how: WaitFor) -> None:
        self.how = how
        self.woken = False


def wake_parent(parent: Task, child: Task) -> None:
    """kernel/signal.c:__wake_up_parent: wake the parent's sleeping waits CHILD is for."""
    for sleeper in parent.sleepers or ():
        if sleeper.how.wakes(child):
            sleeper.woken = True


def _scan_order(group: Task, children: Collection[Task], caller: Caller) -> list[Task]:
    """do_wait's order: the calling thread's children, then each other thread's, in
    thread-list order from the caller on (while_each_thread)."""
    threads: list[Thread | None] = [None, *(group.threads or ())]
    start = threads.index(caller if isinstance(caller, Thread) else None)
    order = threads[start:] + threads[:start]
    return [c for t in order for c in children if c.creator is t]


def do_wait(
    kernel: Kernel,
    task: Task,
    target: Task | None,
    nohang: bool,
    how: WaitFor = ANY_CHILD,
    caller: Caller | None = None,
) -> WaitResult | None:
    """kernel/exit.c:do_wait for WEXITED: reap the first eligible zombie child in list
    order (any thread of the group may wait for the group's children).

    ECHILD when there is no eligible child; None (WNOHANG) or WouldBlock when there
    are eligible children but none is a zombie yet.
    """
    children: Collection[Task] | None = task.children
    if children is not None and task.threads and caller is not None:
        children = _scan_order(task, children, caller)
    if target is not None:
        how = WaitFor(target, how.pgrp, how.all, how.nowait)
        if children is None or target not in children or not how.eligible(target):
            raise KernelError(ECHILD, "wait")
        found = target if target.state is TaskState.ZOMBIE else None
    elif children is None:
        raise KernelError(ECHILD, "wait")
    else:
        found = None
        if task.zombies:
            found = next(
                (c for c in children if c.state is TaskState.ZOMBIE and how.eligible(c)), None
            )
        if found is None and not any(how.eligible(c) for c in children):
            raise KernelError(ECHILD, "wait")
    if found is None:
        if nohang:
            return None
        raise WouldBlock
    exited, value = found.exited_status()
    result = WaitResult(found, nr_in(found, task.ns), exited, value)
    if not how.nowait:
        release_task(kernel, found)
    return result
