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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pidns.core import errnos, signals
from pidns.model import signal as sig
from pidns.model.errors import KernelError, Unmodeled, WouldBlock
from pidns.model.namespace import PidNamespace, nr_in, release_numbers
from pidns.model.task import Disposition, Task, TaskState

if TYPE_CHECKING:
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
    task.move_to(TaskState.EXITING)
    task.exit_status = status
    task.stopped = False
    if is_reaper:
        # find_child_reaper: the namespace's init is leaving
        zap_pid_ns_processes(kernel, ns, task)
        if ns.allocated > 1:
            ns.zap_waiter = task  # sleeps until release_numbers wakes it
            return
    exit_notify(kernel, task)


def zap_pid_ns_processes(kernel: Kernel, ns: PidNamespace, init: Task) -> None:
    """kernel/pid_namespace.c:zap_pid_ns_processes, up to the final sleep."""
    ns.adding = False  # disable_pid_allocation
    init.set_disposition(signals.CHLD, Disposition.IGNORE)
    for nr in sorted(ns.idr):
        victim = ns.idr[nr]
        if nr >= 2 and victim.state is TaskState.RUNNING:
            sig.send(kernel, victim, signals.KILL, 0, force=True)  # SEND_SIG_PRIV
    sig.flush_fatal(kernel)
    # kernel_wait4(-1) until ECHILD: reap the zombies made before SIGCHLD was ignored;
    # a child still exiting (a nested init waiting for its own namespace) keeps a pid
    # here, so the final sleep below covers it
    if init.children:
        for child in [c for c in init.children if c.state is TaskState.ZOMBIE]:
            release_task(kernel, child)


def exit_notify(kernel: Kernel, task: Task) -> None:
    """kernel/exit.c:exit_notify: hand the children over, become a zombie, tell the parent."""
    forget_original_parent(kernel, task)
    task.move_to(TaskState.ZOMBIE)
    parent = task.parent
    assert parent is not None
    parent.zombies += 1
    if notify_parent(kernel, task):
        release_task(kernel, task)


def notify_parent(kernel: Kernel, child: Task) -> bool:
    """kernel/signal.c:do_notify_parent: SIGCHLD to the parent, with si_pid in the
    parent's namespace. Returns True when the child is to be reaped at once (autoreap:
    the parent's SIGCHLD disposition is SIG_IGN)."""
    parent = child.parent
    assert parent is not None
    if parent.disposition(signals.CHLD) is Disposition.IGNORE:
        return True
    sig.send(kernel, parent, signals.CHLD, nr_in(child, parent.ns), force=False)
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
    for child in orphans:
        child.parent = reaper
        reaper.add_child(child)
    for child in orphans:
        # reparent_leader: a zombie is announced to its new parent, which may reap it
        if child.state is TaskState.ZOMBIE and notify_parent(kernel, child):
            release_task(kernel, child)


def release_task(kernel: Kernel, task: Task) -> None:
    """kernel/exit.c:release_task: unhash the task; free pids nobody uses any more."""
    parent = task.parent
    assert parent is not None
    parent.remove_child(task)
    task.move_to(TaskState.REAPED)
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
    for ns in release_numbers(owner):
        # free_pid: "When all that is left in the pid namespace is the reaper wake up
        # the reaper" sleeping in zap_pid_ns_processes
        init = ns.zap_waiter
        if init is not None and ns.allocated == 1:
            ns.zap_waiter = None
            exit_notify(kernel, init)


@dataclass(frozen=True, slots=True)
class WaitResult:
    child: Task
    pid: int  # the child's pid in the waiter's namespace
    exited: bool  # False: killed by a signal
    value: int  # the exit code, or the signal

    def describe(self) -> str:
        return f"exited {self.value}" if self.exited else f"killed {signals.name(self.value)}"


def do_wait(kernel: Kernel, task: Task, target: Task | None, nohang: bool) -> WaitResult | None:
    """kernel/exit.c:do_wait for WEXITED: reap the first zombie child in list order.

    ECHILD when there is no eligible child; None (WNOHANG) or WouldBlock when there
    are eligible children but none is a zombie yet.
    """
    children = task.children
    if target is not None:
        if children is None or target not in children:
            raise KernelError(ECHILD, "wait")
        found = target if target.state is TaskState.ZOMBIE else None
    elif children is None:
        raise KernelError(ECHILD, "wait")
    elif task.zombies:
        found = next(c for c in children if c.state is TaskState.ZOMBIE)
    else:
        found = None
    if found is None:
        if nohang:
            return None
        raise WouldBlock
    exited, value = found.exited_status()
    result = WaitResult(found, nr_in(found, task.ns), exited, value)
    release_task(kernel, found)
    return result
