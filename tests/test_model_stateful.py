"""Random system calls across many namespaces, with the model's invariants checked after
every step (hypothesis stateful testing)."""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pidns.core import flags as cf
from pidns.model import (
    PIDFD_THREAD,
    Caller,
    Disposition,
    Kernel,
    KernelError,
    Pidfd,
    Task,
    TaskState,
    Unmodeled,
    WaitFor,
    WouldBlock,
)
from pidns.model.namespace import nr_in

FLAG_WORDS = [0, cf.NEWPID, cf.NEWPID | cf.NEWUSER, cf.NEWUSER, cf.PARENT, cf.NEWPID | cf.PARENT]
SIGNALS = [9, 15, 10, 12, 17, 0]


class Syscalls(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel(profile="6.18", root_level=1, pid_max=400)
        self.kernel.fork(self.kernel.init)
        self.pidfds: list[Pidfd] = []

    def _live(self, index: int) -> Caller | None:
        """A thread that can make a call: a running group's leader or another thread."""
        callers = [c for t in self.kernel.tasks if t.alive for c in t.live_threads()]
        return callers[index % len(callers)] if callers else None

    def _any(self, index: int) -> Task:
        tasks = list(self.kernel.tasks)
        return tasks[index % len(tasks)]

    def _call(self, fn: object, *args: object) -> None:
        assert callable(fn)
        # Unmodeled: a state the model says it does not keep (the scenario layer reports such
        # a step as unmodeled); the invariants must still hold after the refusal
        with contextlib.suppress(KernelError, WouldBlock, Unmodeled):
            fn(*args)

    @rule(i=st.integers(0, 1000), flags=st.sampled_from(FLAG_WORDS))
    def clone(self, i: int, flags: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.clone, task, flags)

    @rule(i=st.integers(0, 1000), flags=st.sampled_from([cf.NEWPID, cf.NEWPID | cf.NEWUSER]))
    def unshare(self, i: int, flags: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.unshare, task, flags)

    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), children=st.booleans())
    def setns(self, i: int, j: int, children: bool) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.setns, task, self._any(j), children)

    @rule(i=st.integers(0, 1000), code=st.integers(0, 255))
    def exit(self, i: int, code: int) -> None:
        task = self._live(i)
        if task is not None and task.group is not self.kernel.init:
            self.kernel.exit(task, code)

    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), anyone=st.booleans())
    def wait(self, i: int, j: int, anyone: bool) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.wait, task, None if anyone else self._any(j), True)

    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), signo=st.sampled_from(SIGNALS))
    def kill(self, i: int, j: int, signo: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.kill_task, task, self._any(j), signo)

    @rule(
        i=st.integers(0, 1000),
        number=st.sampled_from([-1, 0, 1, 2, 3]),
        signo=st.sampled_from(SIGNALS),
    )
    def kill_number(self, i: int, number: int, signo: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.kill, task, number, signo)

    @rule(
        i=st.integers(0, 1000),
        signo=st.sampled_from([10, 15, 17]),
        how=st.sampled_from(list(Disposition)),
    )
    def sigaction(self, i: int, signo: int, how: Disposition) -> None:
        task = self._live(i)
        if task is not None:
            self.kernel.sigaction(task, signo, how)

    @rule(i=st.integers(0, 1000))
    def setsid(self, i: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.setsid, task)

    @rule(i=st.integers(0, 1000), on=st.booleans())
    def subreaper(self, i: int, on: bool) -> None:
        task = self._live(i)
        if task is not None:
            self.kernel.set_subreaper(task, on)

    @rule(i=st.integers(0, 1000), uid=st.sampled_from([0, 1000, 65534]))
    def setuid(self, i: int, uid: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.setuid, task, uid)

    @rule(i=st.integers(0, 1000))
    def pthread_create(self, i: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.clone_thread, task)

    @rule(i=st.integers(0, 1000), code=st.integers(0, 255))
    def pthread_exit(self, i: int, code: int) -> None:
        task = self._live(i)
        if task is not None and task.group is not self.kernel.init:
            self.kernel.exit_thread(task, code)

    @rule(i=st.integers(0, 1000))
    def execve(self, i: int) -> None:
        task = self._live(i)
        if task is not None and task.group is not self.kernel.init:
            self.kernel.execve(task)

    @rule(
        i=st.integers(0, 1000),
        signo=st.sampled_from([10, 15, 17, 19, 20]),
        block=st.booleans(),
    )
    def sigprocmask(self, i: int, signo: int, block: bool) -> None:
        task = self._live(i)
        if task is not None:
            if block:
                self.kernel.sigprocmask(task, block=[signo])
            else:
                self.kernel.sigprocmask(task, unblock=[signo])

    @rule(i=st.integers(0, 1000), pid=st.integers(1, 12), thread=st.booleans())
    def pidfd_open(self, i: int, pid: int, thread: bool) -> None:
        task = self._live(i)
        if task is not None:
            with contextlib.suppress(KernelError):
                fd = self.kernel.pidfd_open(task, pid, PIDFD_THREAD if thread else 0)
                self.pidfds.append(fd)

    @rule(
        i=st.integers(0, 1000),
        j=st.integers(0, 1000),
        use=st.sampled_from(["signal", "wait", "setns", "info"]),
        signo=st.sampled_from(SIGNALS),
    )
    def use_pidfd(self, i: int, j: int, use: str, signo: int) -> None:
        task = self._live(i)
        if task is None or not self.pidfds:
            return
        fd = self.pidfds[j % len(self.pidfds)]
        k = self.kernel
        if use == "signal":
            self._call(k.pidfd_send_signal, task, fd, signo)
        elif use == "wait":
            self._call(k.waitid_pidfd, task, fd, True)
        elif use == "setns":
            self._call(k.setns_pidfd, task, fd)
        else:
            self._call(k.pidfd_info, task, fd)
            assert k.pidfd_nspid(fd)[0] != 0  # the root's procfs sees everything

    @rule(i=st.integers(0, 1000), pid=st.integers(0, 8), pgid=st.integers(0, 8))
    def setpgid(self, i: int, pid: int, pgid: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.setpgid, task, pid, pgid)

    @rule(i=st.integers(0, 1000), pid=st.integers(-8, 8), all_=st.booleans())
    def wait_pid(self, i: int, pid: int, all_: bool) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.wait_pid, task, pid, True, all_)

    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000), signo=st.sampled_from([0, 10, 17]))
    def clone_exit_signal(self, i: int, j: int, signo: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.clone, task, 0, (), signo)

    @rule(i=st.integers(0, 1000), value=st.sampled_from([301, 305, 400, 4194304, 5]))
    def pid_max(self, i: int, value: int) -> None:
        task = self._live(i)
        if task is not None:
            self._call(self.kernel.write_pid_max, task, value)

    @rule(i=st.integers(0, 1000), j=st.integers(0, 1000))
    def wait_nowait(self, i: int, j: int) -> None:
        task = self._live(i)
        if task is not None:
            how = WaitFor(nowait=True, all=True)
            self._call(self.kernel.wait, task, self._any(j), True, how)

    # ---- invariants --------------------------------------------------------------------

    @invariant()
    def threads_have_numbers_while_they_live(self) -> None:
        for task in self.kernel.tasks:
            if task.state is not TaskState.RUNNING:
                assert task.threads is None  # a dying group has no threads left
            for thread in task.threads or ():
                assert thread.alive and thread.group is task
                for depth, ns in enumerate(task.ns.chain):
                    assert ns.idr[thread.numbers[depth]] is thread
            if task.leader_exited and task.state is TaskState.RUNNING:
                assert task.threads  # a group lives only while a thread does
            assert not task.blocked_everywhere or task.state is TaskState.RUNNING

    @invariant()
    def visible_in_every_ancestor(self) -> None:
        for task in self.kernel.tasks:
            for depth, ns in enumerate(task.ns.chain):
                assert ns.idr[task.numbers[depth]] is task
                assert nr_in(task, ns) == task.numbers[depth]

    @invariant()
    def numbers_unique_and_counted(self) -> None:
        for ns in self.kernel.namespaces:
            assert ns.allocated == len(ns.idr)
            for nr, owner in ns.idr.items():
                assert owner.numbers[ns.depth] == nr and owner.ns.chain[ns.depth] is ns
                assert owner.state is not TaskState.REAPED or isinstance(owner, Task)

    @invariant()
    def live_tasks_have_live_parents(self) -> None:
        for task in self.kernel.tasks:
            if task is self.kernel.init:
                continue
            parent = task.parent
            assert parent is not None and parent.state in (TaskState.RUNNING, TaskState.EXITING)
            assert parent.children is not None and task in parent.children
            # G3: a parent lives in the same namespace or an ancestor
            assert parent.ns.is_ancestor_of(task.ns)

    @invariant()
    def an_init_is_the_last_of_its_namespace(self) -> None:
        for ns in self.kernel.namespaces:
            init = ns.child_reaper
            if init is not None and init.state in (TaskState.ZOMBIE, TaskState.REAPED):
                assert set(ns.idr.values()) <= {init}
                assert ns.dead

    @invariant()
    def every_zombie_has_a_reaper(self) -> None:
        for task in self.kernel.tasks:
            if task.state is TaskState.ZOMBIE:
                # its parent can still wait for it (an ignored SIGCHLD only stops
                # new zombies: those from before stay until waited for)
                assert task.parent is not None and task.parent.state is TaskState.RUNNING
            if task.state is TaskState.EXITING:
                assert task.ns.zap_waiter is task  # only a waiting init lingers

    @invariant()
    def counters_match(self) -> None:
        tasks = list(self.kernel.tasks)
        for task in tasks:
            zombies = sum(1 for c in task.children or () if c.state is TaskState.ZOMBIE)
            assert task.zombies == zombies
            assert task.pgrp_users == sum(1 for t in tasks if t.pgrp is task)
            assert task.session_users == sum(1 for t in tasks if t.session is task)


Syscalls.TestCase.settings = settings(
    max_examples=int(os.environ.get("PIDNS_STATEFUL_EXAMPLES", "150")),
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSyscalls = Syscalls.TestCase
