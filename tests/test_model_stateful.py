"""Random system calls across many namespaces, with the model's invariants checked after
every step (hypothesis stateful testing)."""

from __future__ import annotations

import contextlib
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pidns.core import flags as cf
from pidns.model import Disposition, Kernel, KernelError, Task, TaskState, WouldBlock
from pidns.model.namespace import nr_in

FLAG_WORDS = [0, cf.NEWPID, cf.NEWPID | cf.NEWUSER, cf.NEWUSER, cf.PARENT, cf.NEWPID | cf.PARENT]
SIGNALS = [9, 15, 10, 12, 17, 0]


class Syscalls(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.kernel = Kernel(profile="6.18", root_level=1, pid_max=400)
        self.kernel.fork(self.kernel.init)

    def _live(self, index: int) -> Task | None:
        tasks = [t for t in self.kernel.tasks if t.state is TaskState.RUNNING]
        return tasks[index % len(tasks)] if tasks else None

    def _any(self, index: int) -> Task:
        tasks = list(self.kernel.tasks)
        return tasks[index % len(tasks)]

    def _call(self, fn: object, *args: object) -> None:
        assert callable(fn)
        with contextlib.suppress(KernelError, WouldBlock):
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
        if task is not None and task is not self.kernel.init:
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

    # ---- invariants --------------------------------------------------------------------

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
