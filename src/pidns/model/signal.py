"""Signals: kill(2), dispositions, the protection of namespace inits, si_pid.

kernel/signal.c: kill_something_info, __kill_pgrp_info, check_kill_permission,
kill_ok_by_cred, send_signal_locked, sig_task_ignored, prepare_kill_siginfo.

- si_pid is the sender's pid in its own namespace, and 0 when the sender is not
  visible in the receiver's namespace (then the signal is also "forced").
- An init (SIGNAL_UNKILLABLE) drops every signal whose disposition is SIG_DFL, except
  SIGKILL and SIGSTOP when forced (sent from an ancestor namespace, or by the kernel).
- kill(-1) reaches every task whose pid in the sender's namespace is above 1, except
  the sender; kill(0) and kill(-PGID) reach a process group, across namespaces.

- A blocked signal is never ignored at send time (sig_ignored), not even by an init: it
  waits in the group's shared pending set while every thread blocks it, and is acted
  on when a thread unblocks it, with the disposition of that moment (an init then drops
  it if it is still SIG_DFL: get_signal).

Fatal signals are queued and acted on after the sending call has reached every target
(``flush_fatal``), as the kernel delivers them on the victims' way back to user space.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pidns.core import signals
from pidns.core.signals import Action
from pidns.model import exit as exits
from pidns.model.errors import KernelError
from pidns.model.namespace import nr_in
from pidns.model.task import Caller, Disposition, Task, TaskState, Thread, capable

if TYPE_CHECKING:
    from pidns.model.kernel import Kernel

_NSIG = 65


def send(kernel: Kernel, target: Task, signo: int, si_pid: int, force: bool) -> None:
    """kernel/signal.c:__send_signal_locked and the action the target then takes."""
    if target.state is not TaskState.RUNNING:
        return  # a dying or dead group drops every signal (prepare_signal)
    kernel_only = signo in (signals.KILL, signals.STOP)
    handler = Disposition.DEFAULT if kernel_only else target.disposition(signo)
    resumed = signo == signals.CONT and target.stopped
    if resumed:
        target.stopped = False  # prepare_signal resumes a stopped group for any SIGCONT
        _notify_parent_stop(kernel, target)
    if not kernel_only and (target.leader_exited or target.blocked >> (signo - 1) & 1):
        # sig_ignored: "Blocked signals are never ignored"; complete_signal then finds
        # a thread that does not block it, or it stays pending for the group (a leader
        # that exit(2)ed takes none: wants_signal refuses a PF_EXITING thread)
        if resumed and target.queued_while_stopped:
            _release_stopped_queue(kernel, target)
        if any(not t.blocked >> (signo - 1) & 1 for t in target.live_threads()):
            deliver(kernel, target, signo, si_pid)
        else:
            target.blocked_everywhere = target.blocked_everywhere or {}
            target.blocked_everywhere.setdefault(signo, si_pid)
        return
    # sig_task_ignored
    if target.unkillable:
        if target.parent is None and target.ns.level == 0 and kernel_only:
            return  # the global init never gets SIGKILL or SIGSTOP
        if handler is Disposition.DEFAULT and not (force and kernel_only):
            return
    if handler is Disposition.IGNORE:
        return
    if target.stopped and signo != signals.KILL:
        # a stopped task acts on nothing but SIGKILL and SIGCONT: the rest waits
        if signo != signals.STOP:
            target.queued_while_stopped = target.queued_while_stopped or {}
            target.queued_while_stopped.setdefault(signo, si_pid)
        return
    if resumed and target.queued_while_stopped:
        target.queued_while_stopped = {**target.queued_while_stopped, signo: si_pid}
        _release_stopped_queue(kernel, target)
        return
    _act(kernel, target, signo, si_pid, handler)


def _release_stopped_queue(kernel: Kernel, target: Task) -> None:
    """A continued task acts on what it queued while stopped, lowest number first."""
    queued = sorted((target.queued_while_stopped or {}).items())
    target.queued_while_stopped = None
    for number, sender in queued:
        _act(kernel, target, number, sender, target.disposition(number))


def deliver(kernel: Kernel, target: Task, signo: int, si_pid: int) -> None:
    """kernel/signal.c:get_signal for a signal that was pending: the disposition of now
    decides; an init drops a SIG_DFL one (SIGNAL_UNKILLABLE, not SIGKILL or SIGSTOP)."""
    if target.state is not TaskState.RUNNING:
        return
    handler = target.disposition(signo)
    if handler is Disposition.DEFAULT:
        action = signals.default_action(signo)
        if action in (Action.IGNORE, Action.CONTINUE) or target.unkillable:
            return
    if target.stopped and signo != signals.KILL:
        target.queued_while_stopped = target.queued_while_stopped or {}
        target.queued_while_stopped.setdefault(signo, si_pid)
        return
    _act(kernel, target, signo, si_pid, handler)


def sigprocmask(kernel: Kernel, caller: Caller, block: int, unblock: int) -> None:
    """rt_sigprocmask(2) for the calling thread (SIGKILL and SIGSTOP cannot be blocked,
    silently); an unblocked signal pending for the group is delivered to it at once."""
    mask = (caller.blocked | block) & ~unblock & ~_UNBLOCKABLE
    caller.blocked = mask
    group = caller.group
    pending = group.blocked_everywhere
    if not pending:
        return
    for signo in sorted(pending):  # next_signal: lowest number first
        if not mask >> (signo - 1) & 1:
            si_pid = pending.pop(signo)
            deliver(kernel, group, signo, si_pid)
    group.blocked_everywhere = group.blocked_everywhere or None
    flush_fatal(kernel)


def sigmask(signo: int) -> int:
    """sigmask(): the bit of a signal in a mask."""
    return 1 << (signo - 1)


_UNBLOCKABLE = sigmask(signals.KILL) | sigmask(signals.STOP)


def _act(kernel: Kernel, target: Task, signo: int, si_pid: int, handler: Disposition) -> None:
    """The delivered signal's effect: run the handler, or take the default action."""
    if handler is Disposition.IGNORE:
        return
    if handler is Disposition.CATCH:
        target.wakeups += 1  # signal_wake_up: a sleeping wait returns, and is made again
        if target.caught is None:
            target.caught = []
        if target.awaiting_handler is None:
            target.awaiting_handler = {}
        index = target.awaiting_handler.get(signo)
        if index is None:
            target.awaiting_handler[signo] = len(target.caught)
            target.caught.append((signo, (si_pid,)))
        elif si_pid not in target.caught[index][1]:  # merges with the pending one
            target.caught[index] = (signo, (*target.caught[index][1], si_pid))
        return
    action = signals.default_action(signo)
    if action in (Action.TERMINATE, Action.COREDUMP):
        kernel.doomed.append((target, signo))
    elif action is Action.STOP and not target.stopped:
        target.stopped = True
        _notify_parent_stop(kernel, target)


def _notify_parent_stop(kernel: Kernel, task: Task) -> None:
    """kernel/signal.c:do_notify_parent_cldstop: SIGCHLD unless the parent ignores it."""
    parent = task.parent
    if parent is not None:
        exits.wake_parent(parent, task)
    if parent is not None and parent.disposition(signals.CHLD) is not Disposition.IGNORE:
        send(kernel, parent, signals.CHLD, nr_in(task, parent.ns), force=False)


def flush_fatal(kernel: Kernel) -> None:
    """Let every task a fatal signal was sent to die, in the order they were hit."""
    doomed = kernel.doomed
    while doomed:
        task, signo = doomed.pop(0)
        if task.state is TaskState.RUNNING:
            exits.do_exit(kernel, task, signo)


def _may_signal(sender: Task, target: Task, signo: int, by_thread: bool = False) -> bool:
    """kernel/signal.c:check_kill_permission + kill_ok_by_cred, on the credentials of the
    task the pid named: the leader thread's for a tgid (pid_task(pid, PIDTYPE_PID)), which
    a leader that exit(2)ed keeps from before a later setuid of the threads left; the
    live threads' for a thread's tid (``by_thread``)."""
    if sender is target:
        return True
    uid, suid = (target.uid, target.suid)
    if target.leader_creds is not None and not by_thread:
        uid, suid = target.leader_creds
    if sender.euid in (suid, uid) or sender.uid in (suid, uid):
        return True
    if capable(sender, target.user_ns):
        return True
    return signo == signals.CONT and sender.session is target.session


class _Info:
    """The one kernel_siginfo a kill(2) prepares (prepare_kill_siginfo: si_pid is the
    sender's own pid) and hands to every target. Where the profile row
    ``group_kill_shares_siginfo`` says so (6.1.176 and 6.18.44 booted; it changed within
    6.1's stable line) send_signal_locked zeroes si_pid *in it* for a target whose
    namespace cannot see the sender, so every target after that one gets 0 too (kill(0),
    kill(-PGID), kill(-1)); elsewhere (3.8.13, 6.1.192, 6.12.117) only that target's own
    copy is zeroed."""

    __slots__ = ("si_pid",)

    def __init__(self, sender: Task) -> None:
        self.si_pid = sender.numbers[-1]


def _send_from(
    kernel: Kernel, sender: Task, target: Task, signo: int, info: _Info, by_thread: bool = False
) -> int:
    """group_send_sig_info from a user task: 0 or -EPERM; signal 0 only checks."""
    if not _may_signal(sender, target, signo, by_thread):
        return -errno.EPERM
    if signo:
        # send_signal_locked: "From an ancestor pid namespace?"
        visible = nr_in(sender, target.ns) != 0
        si_pid = info.si_pid if visible else 0
        if not visible and kernel.profile.group_kill_shares_siginfo:
            info.si_pid = 0
        send(kernel, target, signo, si_pid, force=not visible)
    return 0


def kill(kernel: Kernel, sender: Task, pid: int, signo: int) -> None:
    """kill(2): kernel/signal.c:kill_something_info."""
    if not 0 <= signo < _NSIG:
        raise KernelError(errno.EINVAL, "kill")
    try:
        if pid > 0:
            entry = sender.ns.idr.get(pid)
            if entry is None or entry.state is TaskState.REAPED:
                raise KernelError(errno.ESRCH, "kill")
            # a thread's tid signals its whole group (kill_proc_info -> group_send_sig_info)
            by_thread = entry is not entry.group
            err = _send_from(kernel, sender, entry.group, signo, _Info(sender), by_thread)
        elif pid == -1:
            err = _kill_all(kernel, sender, signo)
        else:
            leader = sender.pgrp if pid == 0 else sender.ns.idr.get(-pid)
            err = _kill_group(kernel, sender, leader, signo)
    finally:
        flush_fatal(kernel)
    if err:
        raise KernelError(-err, "kill")


def _kill_all(kernel: Kernel, sender: Task, signo: int) -> int:
    """kill(-1): every task with a pid above 1 in the sender's namespace, but the sender.
    EPERM from single targets is swallowed; ESRCH only when there was no target."""
    ns = sender.ns
    count = 0
    result = 0
    info = _Info(sender)
    for task in list(kernel.tasks):  # for_each_process: the task list, oldest first
        if task is sender or nr_in(task, ns) <= 1:
            continue
        count += 1
        err = _send_from(kernel, sender, task, signo, info)
        if err != -errno.EPERM:
            result = err
    return result if count else -errno.ESRCH


def pgrp_members(kernel: Kernel, leader: Task | Thread) -> list[Task]:
    """The members of the process group whose leader is LEADER, in the order
    do_each_pid_task(PIDTYPE_PGID) visits them: the newest to join first."""
    members = [t for t in kernel.tasks if t.pgrp is leader]
    members.sort(key=lambda t: t.pgrp_joined, reverse=True)
    return members


def _kill_group(kernel: Kernel, sender: Task, leader: Task | Thread | None, signo: int) -> int:
    """kernel/signal.c:__kill_pgrp_info: every member, inside the namespace or not."""
    if leader is None:
        return -errno.ESRCH
    members = pgrp_members(kernel, leader)
    if not members:
        return -errno.ESRCH
    success = False
    result = -errno.ESRCH
    info = _Info(sender)
    for task in members:
        result = _send_from(kernel, sender, task, signo, info)
        success = success or result == 0
    return 0 if success else result


def set_disposition(task: Task, signo: int, disposition: Disposition) -> None:
    """sigaction(2): SIGKILL and SIGSTOP cannot be caught or ignored (EINVAL). A
    disposition that ignores the signal drops it from the pending sets
    (kernel/signal.c:do_sigaction, sig_handler_ignored)."""
    if signo in (signals.KILL, signals.STOP) or not 0 < signo < _NSIG:
        raise KernelError(errno.EINVAL, "sigaction")
    task.set_disposition(signo, disposition)
    ignores = disposition is Disposition.IGNORE or (
        disposition is Disposition.DEFAULT and signals.default_action(signo) is Action.IGNORE
    )
    if ignores and task.blocked_everywhere:
        task.blocked_everywhere.pop(signo, None)
        task.blocked_everywhere = task.blocked_everywhere or None


def _pidfd_reaches(sender: Task, target: Task, signo: int) -> None:
    """pidfd_send_signal's first checks: the signal number, and the target's namespace,
    the sender's active one or below it (access_pidfd_pidns): EINVAL."""
    if not 0 <= signo < _NSIG or not sender.ns.is_ancestor_of(target.ns):
        raise KernelError(errno.EINVAL, "pidfd_send_signal")


def pidfd_check(sender: Task, target: Task, signo: int) -> None:
    """What pidfd_send_signal checks before it sends, for a call that then sends nothing
    the model keeps: also the permission (check_kill_permission on the creds of the task
    the pidfd names: EPERM)."""
    _pidfd_reaches(sender, target, signo)
    if not _may_signal(sender, target, signo):
        raise KernelError(errno.EPERM, "pidfd_send_signal")


def pidfd_send_signal(kernel: Kernel, sender: Task, target: Task, signo: int) -> None:
    """kernel/signal.c:pidfd_send_signal with no siginfo: the target's namespace must be
    the sender's active one or below it (access_pidfd_pidns: EINVAL); then as kill(2),
    si_pid and SI_USER included (ESRCH once the target is reaped)."""
    _pidfd_reaches(sender, target, signo)
    if target.state is TaskState.REAPED:
        raise KernelError(errno.ESRCH, "pidfd_send_signal")
    try:
        err = _send_from(kernel, sender, target, signo, _Info(sender))
    finally:
        flush_fatal(kernel)
    if err:
        raise KernelError(-err, "pidfd_send_signal")


def take_caught(task: Task) -> list[tuple[int, tuple[int, ...]]]:
    """The signals caught since the last call, each with its possible si_pids."""
    caught = task.caught or []
    task.caught = None
    return caught
