"""Settling the real backend's world after a step: waiting, without timeouts deciding
anything, until nothing is in flight (docs/scenario-language.md: "Snapshots and settling").

A world is settled when the step's own call has returned (or its actor stopped, or died
by its own call), no live process has a signal pending, no thread runs while another of
its process is stopped, no process is exiting but an
init asleep in zap_pid_ns_processes while its namespace still has members (or asleep
in the zap's do_wait on a child that is such an init), no zombie
waits for root, every puppet blocked in wait sleeps in do_wait, every continued puppet
has answered its queued call, and that sweep of /proc began after the call returned.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from dataclasses import dataclass, field

from pidns.linux import features, syscalls
from pidns.model import profiles
from pidns.scenario import ast, puppet
from pidns.scenario import puppet_protocol as wire
from pidns.scenario.ast import Completion, Op
from pidns.scenario.backend import BackendError
from pidns.scenario.real_call import CallState
from pidns.scenario.real_proc import SIGKILL_BIT, Seen, read, threads_where, wchan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pidns.scenario.real_world import Proc, World

WAKE_BIT = 1 << (puppet.WAKE - 1)


def zap_wait_state(release: str) -> str:
    """The state letter of an init asleep in zap_pid_ns_processes' last wait on kernel
    ``release`` (profile row ``zap_wait_state``: D on 3.8, I on 6.1, S on 6.18)."""
    try:
        return profiles.for_release(release).zap_wait_state
    except ValueError:  # no release the profiles know (older than 3.8): any of them
        return "SID"


# Any state of an init asleep in zap_pid_ns_processes: S (TASK_INTERRUPTIBLE, 6.18),
# I (TASK_IDLE, as 6.1 shows it) or D (TASK_UNINTERRUPTIBLE, 3.8).
ZAP = "SID"


# Calls that may end or stop their own caller, which then never answers (unblock: a
# pending fatal or stopping signal is acted on as the mask opens).
_SIGNALLING = frozenset({Op.KILL, Op.PIDFD_SEND_SIGNAL, Op.UNBLOCK})


@dataclass(slots=True)
class Settle:
    """What one step waits for while it settles."""

    actor: Proc | None
    result: str | None
    completions: list[Completion] = field(default_factory=list)
    # the processes the step can have touched (None: the whole world); the world was at
    # rest before the step, so only these can be in flight. A death among them widens it
    # to the world (an exit reparents, signals and wakes others).
    scope: list[Proc] | None = None


class Settler:
    """The settling of one world."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.zap_state = zap_wait_state(features.release())

    def settle(self, settle: Settle) -> None:
        """Wait until nothing is in flight; resolve the actor's call and any completions.

        Only a sweep of /proc begun after the actor's call returned can show the world
        settled: one begun earlier may have read a process before the call touched it.
        And only one that found nothing changed since the last: a sweep reads one process
        after another, so it can read A at rest and then B, whose exit was in flight, as
        a zombie, although B's exit signalled A after A was read (the SIGCHLD goes before
        the zombie state, kernel/exit.c:exit_notify). The next sweep, begun after B was
        read, sees what B did to A.
        """
        deadline = time.monotonic() + self.world.settle_timeout
        rounds = 0
        # (host pid, how) of puppets told to take their caught signals: an idle one by
        # drain, one blocked in wait by WAKE (which may end the wait without taking
        # them: the woken do_wait rescans and can return ECHILD; it is then told again)
        asked: set[tuple[int, bool]] = set()
        while True:
            self.await_actor(settle)
            self._read_messages(settle, 0)
            returned = settle.result is not None
            changed = self._sweep(settle)
            self._resolve_silent_actor(settle)
            reasons = self.unsettled(settle)
            if changed and not reasons:
                reasons.append(f"{', '.join(dict.fromkeys(changed))} changed during the sweep")
            if not returned:
                assert settle.actor is not None
                reasons.append(f"{settle.actor.name}'s call has not returned")
            if not reasons:
                # all else at rest: the puppets take their caught signals now, so that
                # signals of one number sent during the step merge as the kernel merges them
                reasons = self._take_caught_signals(settle, asked)
                if not reasons:
                    return
            if time.monotonic() > deadline:
                stuck = [p for p in self.procs(settle) if p.call is not None]
                if settle.actor is not None and settle.actor not in stuck:
                    stuck.insert(0, settle.actor)
                where = "".join(
                    f" [{p.name} {threads_where(p.host)}]" for p in stuck if not p.reaped
                )
                raise BackendError("the world did not settle: " + "; ".join(reasons) + where)
            if returned:
                rounds += 1
                self._read_messages(settle, 0 if rounds < 4 else 0.0002 if rounds < 20 else 0.002)

    def await_actor(self, settle: Settle) -> None:
        """Sleep until the actor answers or exits (its pidfd turns readable), briefly."""
        actor = settle.actor
        if actor is None or settle.result is not None or actor.channel is None:
            return
        channel = actor.channel.fileno()
        watched = [channel, actor.pidfd] if actor.pidfd >= 0 else [channel]
        ready, _, _ = select.select(watched, [], [], 0.001)
        if channel in ready:
            self.world.take_message(actor, settle)

    def procs(self, settle: Settle) -> list[Proc]:
        """The processes this settling reads: its scope, or every one not yet reaped."""
        if settle.scope is None:
            return list(self.world.by_host.values())
        return [p for p in settle.scope if not p.reaped]

    def _read_messages(self, settle: Settle, timeout: float) -> None:
        waiting = {
            p.channel.fileno(): p
            for p in self.procs(settle)
            if p.channel is not None and (p.call is not None or p.discard)
        }
        if not waiting and timeout <= 0:
            return
        if not waiting:
            time.sleep(timeout)
            return
        ready, _, _ = select.select(list(waiting), [], [], timeout)
        for fd in ready:
            self.world.take_message(waiting[fd], settle)

    def _resolve_silent_actor(self, settle: Settle) -> None:
        """The actor stopped or died without answering: only its own call can have done it."""
        actor = settle.actor
        if actor is None or settle.result is not None or actor.call is None:
            return
        op = actor.call.step.op
        if op in (Op.EXIT, Op.EXIT_THREAD) and (actor.reaped or actor.seen.dead):
            settle.result = ast.OK
            actor.call = None
        elif actor.reaped or actor.seen.dead:
            if op not in _SIGNALLING:
                raise BackendError(f"{actor.name} died during its {op.value} step")
            settle.result = ast.OK  # kill(2) succeeded: the signal it sent itself killed it
            actor.call = None
        elif actor.seen.stopped and op in _SIGNALLING:
            settle.result = ast.OK  # it stopped itself; the reply comes once continued
            actor.call = None
            actor.discard += 1
        elif actor.seen.stopped:
            settle.result = ast.BLOCKS  # it reads the command once continued
            actor.call.move_to(CallState.QUEUED)

    def _sweep(self, settle: Settle) -> list[str]:
        """Read the processes; the names of those found changed since their last read."""
        changed = self._read(settle)
        if settle.scope is not None and any(p.reaped or p.seen.dead for p in settle.scope):
            settle.scope = None  # what a death does reaches others: read the whole world
            changed += self._read(settle)
        return changed

    def _read(self, settle: Settle) -> list[str]:
        world = self.world
        changed: list[str] = []
        for p in self.procs(settle):
            seen = read(p.status_fd, p.stat_fd)
            if seen != p.seen:
                changed.append(p.name)
            world.dirty[p] = None
            if seen is None:
                p.reaped = True
                del world.by_host[p.host]
                world.forget(p)
            else:
                p.seen = seen
            if (
                (seen is None or seen.dead)
                and p.call is not None
                and p.call.state is not CallState.AWAITED
            ):
                p.call = None  # a call pending in a dead process never completes
        return changed

    def unsettled(self, settle: Settle) -> list[str]:
        """Why the world is not settled yet (empty: settled).

        A process is at rest when it is a zombie nobody is about to reap, an init asleep in
        zap_pid_ns_processes waiting for the other pids of its namespace (``exiting``),
        stopped, or alive with no signal pending, no call of its own on the way and, if it
        is blocked in wait, asleep in do_wait. The kernel's own wait channel
        (/proc/PID/wchan) tells a sleeping waiter or exiting init from one that was just
        woken, so no step result ever depends on timing.
        """
        reasons: list[str] = []
        for p in self.procs(settle):
            seen = p.seen
            if seen.state == "X":
                reasons.append(f"{p.name} is being reaped")
            elif seen.leader_gone:
                # the leader exit(2)ed, its group lives in its other threads: as long as
                # this sweep found one of them alive, or sleeping in the zap as the last
                if self.world.group_state(p) is None:
                    reasons.append(f"{p.name}'s other threads are exiting")
            elif seen.state == "Z":
                parent = self.world.by_host.get(seen.ppid)
                if seen.ppid == self.world.root_host:
                    reasons.append(f"{p.name} is a zombie root will reap")
                elif parent is not None and not parent.reaped and _dying(parent.seen):
                    # an exiting parent is an init in its zap, whose kernel_wait4(-1,
                    # __WALL) reaps every child (seed 51013: F, reparented to C as C died)
                    reasons.append(f"{p.name} is a zombie its dying init will reap")
            elif seen.exiting:
                if not self._exiting_at_rest(p):
                    reasons.append(f"{p.name} is exiting")
            elif seen.stopped:
                if seen.pending & SIGKILL_BIT:
                    reasons.append(f"{p.name} is stopped with SIGKILL pending")
            else:
                if seen.pending & ~seen.blocked:  # blocked ones: caught, taken at the end
                    reasons.append(f"{p.name} has signals pending")
                if seen.state in "RS" and self._group_stopping(p):
                    reasons.append(f"{p.name} has yet to join its group's stop")
                call = p.call
                if call is not None and call.state is CallState.QUEUED:
                    reasons.append(f"{p.name} was continued: its queued call runs")
                elif (
                    call is not None
                    and call.state is CallState.BLOCKED
                    and not asleep_in(p, "do_wait")
                ):
                    reasons.append(f"{p.name}'s wait is returning")
        return reasons

    def _group_stopping(self, p: Proc) -> bool:
        """Another live thread of P's group is stopped while P runs: a group stop is under
        way. The thread that dequeued the stop signal marks every other one
        (JOBCTL_STOP_PENDING) and stops at once; each other thread stops only when it next
        returns towards user space (kernel/signal.c:do_signal_stop), so a thread that sent
        the signal to its own group through another's tid may still be running, and would
        read the next command as if nothing were pending. A SIGCONT wakes every thread
        under the same lock (prepare_signal), so a group is never left half stopped."""
        return any(
            q is not p and q.seen.stopped and not q.reaped
            for q in (p.group, *self.world.threads_of.get(p.group.name, ()))
        )

    def _exiting_at_rest(self, p: Proc) -> bool:
        """An exiting process that waits for others, as only an exiting init does
        (kernel/pid_namespace.c:zap_pid_ns_processes): asleep in the last wait while
        another pid of its namespace remains, or asleep in do_wait (the zap's
        kernel_wait4 loop, TASK_INTERRUPTIBLE on every release) while a child of its is
        still exiting, which do_wait cannot reap yet: a nested init waiting in its own
        zap, perhaps for a zombie whose parent is outside both namespaces."""
        if asleep_in(p, "zap_pid_ns_processes", self.zap_state):
            return self._members(p)
        if asleep_in(p, "do_wait"):
            return any(
                c.seen.ppid == p.host and c.seen.exiting and c.seen.state not in ("Z", "X")
                for c in self.world.by_host.values()
            )
        return False

    def _members(self, init: Proc) -> bool:
        """Another process still has a pid in INIT's namespace (INIT's own threads aside:
        the zap may run in any of them). Without one, an init asleep in
        zap_pid_ns_processes is about to wake: a member's /proc entry goes before its pid
        is freed (kernel/exit.c:release_task, then free_pids)."""
        level, ns = init.level, init.nschain[-1]
        return any(
            p.group is not init.group and len(p.nschain) > level and p.nschain[level] == ns
            for p in self.world.by_host.values()
        )

    def _take_caught_signals(self, settle: Settle, asked: set[tuple[int, bool]]) -> list[str]:
        """Tell every running puppet with caught signals pending to take them: an idle one
        by the ``drain`` command, one blocked in wait by WAKE. Returns who has not yet."""
        reasons: list[str] = []
        held = self._blocked_by_every_thread()
        for p in self.procs(settle):
            seen = p.seen
            # blocked by every thread of the process (``block``): kept pending, as the kernel does
            taken = seen.pending & seen.blocked & ~held.get(p.group.host, 0)
            if seen.dead or seen.stopped or seen.exiting or not taken:
                continue
            reasons.append(f"{p.name} has caught signals to take")
            call = p.call
            if (p.host, call is None) in asked:
                continue
            asked.add((p.host, call is None))
            if call is None and p.channel is not None:
                wire.send(p.channel, wire.encode_command(wire.DRAIN))
            elif (
                call is not None and call.state is CallState.BLOCKED and not seen.pending & WAKE_BIT
            ):
                with contextlib.suppress(ProcessLookupError):
                    if p.waker >= 0:
                        syscalls.pidfd_send_signal(p.waker, puppet.WAKE)
                    else:  # before 5.3; not yet reaped (the sweep just read it), so its own
                        os.kill(p.host, puppet.WAKE)
        return reasons

    def _blocked_by_every_thread(self) -> dict[int, int]:
        """Per process (its leader's host pid): the signals every live thread of it
        blocked with ``block``. The puppet's signalfd leaves those pending."""
        held: dict[int, int] = {}
        for p in self.world.by_host.values():
            if not p.seen.dead:
                held[p.group.host] = held.get(p.group.host, -1) & p.user_blocked
        return held


def _dying(seen: Seen) -> bool:
    """A process on its way out as a whole, not a leader that exit(2)ed alone (a zombie
    thread while its group lives on: examples/54)."""
    return seen.exiting and seen.state not in ("Z", "X")


def asleep_in(p: Proc, function: str, states: str = "S") -> bool:
    """P sleeps in the kernel function ``function`` (its /proc/PID/wchan)."""
    return p.seen.state in states and wchan(p.host) == function


_wchan_checked = False


def check_wchan(root: Proc) -> None:
    """Settling reads wait channels: make sure this kernel shows them (CONFIG_KALLSYMS);
    once per runner process."""
    global _wchan_checked
    deadline = time.monotonic() + 2.0
    while not _wchan_checked and time.monotonic() < deadline:
        # root sleeps between its reaps
        _wchan_checked = wchan(root.host) not in ("", "0")
        time.sleep(0 if _wchan_checked else 0.0005)
    if not _wchan_checked:
        raise BackendError("/proc/PID/wchan shows no kernel symbols; the backend needs them")
