"""Real pid namespaces for the introspection tests, and the ground truth read from /proc.

``World`` builds, under the test process (the host, level 0):

    A   a namespace (level 1): its init and two ``sleep`` processes, and an "oddball":
        a process that a host helper put into A with setns, so its parent is outside A
    B   a namespace inside A (level 2): its init and one ``sleep``
    C   a namespace beside A (level 1): its init and one ``sleep``

Every init has PR_SET_PDEATHSIG=SIGKILL and ``close`` SIGKILLs the inits (the kernel then
kills their namespaces) and reaps everything it started, so nothing outlives a test.
``truth`` reads /proc the plain way (readlink, /proc/PID/status, the lead's
``nsfs.id_or_inode``) to compare the introspection code against.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from pidns.core import flags as cf
from pidns.linux import nsfs, proc, syscalls
from pidns.render.model_view import from_model
from pidns.render.proc_view import system_picture
from pidns.render.view import SystemView
from pidns.scenario.backend import Runner, run
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.real import RealBackend
from test_run_support import needs_root

pytestmark = pytest.mark.real


SLEEP = ["sleep", "1000"]


def _serve(sleepers: int, ready: int, nested_sleepers: int | None) -> None:
    """The body of an init: start sleepers (and a nested namespace), say ready, reap."""
    syscalls.set_parent_death_signal(signal.SIGKILL)
    if nested_sleepers is not None:
        start_init(nested_sleepers, ready=ready)
    for _ in range(sleepers):
        os.posix_spawn("/bin/sleep", SLEEP, {})
    os.write(ready, b"+")
    while True:
        try:
            os.wait()
        except ChildProcessError:
            signal.pause()


def start_init(
    sleepers: int,
    *,
    nested_sleepers: int | None = None,
    flags: int = cf.NEWPID,
    ready: int | None = None,
) -> int:
    """Clone an init of a new pid namespace; return its pid once it and its sleepers run.

    With ``ready`` (a pipe's write end) the caller waits itself: one byte per init.
    """
    read_end, write_end = os.pipe() if ready is None else (-1, ready)
    pid, _ = syscalls.clone(flags)
    if pid == 0:
        try:
            if read_end >= 0:
                os.close(read_end)
            _serve(sleepers, write_end, nested_sleepers)
        finally:
            os._exit(1)
    if read_end >= 0:
        os.close(write_end)
        wait_ready(read_end, 1 if nested_sleepers is None else 2)
        os.close(read_end)
    return pid


def wait_ready(read_end: int, count: int) -> None:
    got = 0
    while got < count:
        chunk = os.read(read_end, count - got)
        if not chunk:
            raise RuntimeError("a namespace init died before it was ready")
        got += len(chunk)


def stop(pids: list[int]) -> None:
    """SIGKILL and reap (children of this process only)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def ns_inode(pid: int) -> int:
    return proc.ns_inode(pid)


def ns_id_of(path: str) -> int:
    fd = os.open(path, os.O_RDONLY)
    try:
        return nsfs.id_or_inode(fd)
    finally:
        os.close(fd)


@dataclass
class World:
    a_init: int = 0
    b_init: int = 0
    c_init: int = 0
    helper: int = 0  # host process that made the oddball
    oddball: int = 0  # in A, parent outside A
    inits: list[int] = field(default_factory=list)

    def close(self) -> None:
        # The inits first: A's zap kills the oddball, its helper reaps it and exits (killing
        # the helper first would leave the oddball's zombie to the host's pid 1).
        stop(self.inits)
        if self.helper:
            stop([self.helper])


def _make_oddball(a_init: int) -> tuple[int, int]:
    """A host helper joins A for its children (setns) and forks a sleeper there."""
    read_end, write_end = os.pipe()
    helper = os.fork()
    if helper == 0:
        try:
            os.close(read_end)
            syscalls.set_parent_death_signal(signal.SIGKILL)
            fd = os.open(f"/proc/{a_init}/ns/pid", os.O_RDONLY)
            syscalls.setns(fd, cf.NEWPID)
            child = os.posix_spawn("/bin/sleep", SLEEP, {})
            os.write(write_end, child.to_bytes(4, "little"))
            os.waitpid(child, 0)
        finally:
            os._exit(0)
    os.close(write_end)
    raw = b""
    while len(raw) < 4:
        chunk = os.read(read_end, 4 - len(raw))
        if not chunk:
            raise RuntimeError("the oddball helper died")
        raw += chunk
    os.close(read_end)
    return helper, int.from_bytes(raw, "little")


@contextlib.contextmanager
def world() -> Iterator[World]:
    made = World()
    try:
        made.a_init = start_init(2, nested_sleepers=1)
        made.inits.append(made.a_init)
        made.c_init = start_init(1)
        made.inits.append(made.c_init)
        made.helper, made.oddball = _make_oddball(made.a_init)
        a_inode = ns_inode(made.a_init)
        for pid in proc.children(made.a_init):
            if ns_inode(pid) != a_inode:
                made.b_init = pid
        assert made.b_init, "the nested init is missing"
        yield made
    finally:
        made.close()


# ---- ground truth ------------------------------------------------------------------------


@dataclass
class TruthNs:
    inode: int
    members: list[int]
    level: int
    init: int | None
    id: int


def truth(inodes: list[int]) -> dict[int, TruthNs]:
    """For each namespace inode: its members (by /proc readlink), level, init and id."""
    members: dict[int, list[int]] = {inode: [] for inode in inodes}
    for pid in proc.pids():
        try:
            inode = ns_inode(pid)
        except OSError:
            continue
        if inode in members:
            members[inode].append(pid)
    found: dict[int, TruthNs] = {}
    for inode, pids in members.items():
        statuses = {pid: proc.status(pid) for pid in pids}
        level = len(next(iter(statuses.values())).nspid) - 1
        init = next((pid for pid, s in statuses.items() if s.nspid[-1] == 1), None)
        found[inode] = TruthNs(
            inode, sorted(pids), level, init, ns_id_of(f"/proc/{pids[0]}/ns/pid")
        )
    return found


def command_line(pid: int) -> str:
    argv = proc.cmdline(pid)
    return " ".join(argv) if argv else f"[{proc.status(pid).name}]"


# ---- the world itself is what it claims to be --------------------------------------------


@needs_root
def test_world_is_built_as_described_and_leaves_nothing_behind() -> None:
    with world() as w:
        a, b, c = ns_inode(w.a_init), ns_inode(w.b_init), ns_inode(w.c_init)
        assert len({a, b, c, ns_inode(os.getpid())}) == 4
        assert ns_inode(w.oddball) == a
        facts = truth([a, b, c])
        assert (facts[a].level, facts[b].level, facts[c].level) == (1, 2, 1)
        assert len(facts[a].members) == 4  # init, two sleepers, the oddball
        assert len(facts[b].members) == 2
        assert len(facts[c].members) == 2
        assert proc.status(w.oddball).ppid == w.helper

    def left() -> list[int]:
        found = []
        for pid in proc.pids():
            with contextlib.suppress(OSError):
                if ns_inode(pid) in (a, b, c):
                    found.append(pid)
        return found

    # killed processes take a moment to go under load: wait on the event, not a guess
    deadline = time.monotonic() + 10
    while left() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left() == []
    with pytest.raises(ChildProcessError):
        os.waitpid(w.helper, os.WNOHANG)


TREE_WORLD = (
    "A: clone NEWPID -> I\nI: fork -> C\nC: clone NEWPID -> J\nJ: fork -> K\n"
    "I: thread -> T\nC: exit 3\nA: fork -> B\n"
)


Shape = tuple[
    list[tuple[int, int | None, tuple[int, ...], int]],
    list[tuple[tuple[int, ...], tuple[int, ...], bool]],
]


def _shape(view: SystemView, skip: int) -> Shape:
    """A picture as both sides can draw it: namespaces (level, parent's level, init,
    members) and processes (pids, parent, zombie or not), pids counted from the world
    (the first ``skip`` levels of a /proc picture are the runner's)."""

    def rel(pid: int, by_host: dict[int, tuple[int, ...]]) -> tuple[int, ...]:
        return by_host[pid][skip:] if pid in by_host else ()

    by_root = {p.pids[0]: p.pids for p in view.processes}
    levels = {ns.id: ns.level - skip for ns in view.namespaces}
    namespaces = sorted(
        (
            levels[ns.id],
            None if ns.parent is None or levels.get(ns.parent, -1) < 0 else levels[ns.parent],
            rel(ns.init, by_root) if ns.init else (),
            ns.nprocs,
        )
        for ns in view.namespaces
    )
    processes = sorted(
        (p.pids[skip:], rel(p.ppid, by_root), p.state == "zombie") for p in view.processes
    )
    return namespaces, processes


@needs_root
def test_pidns_tree_from_the_model_and_from_proc_agree() -> None:
    """The model's NS_GET_* answers draw the same tree /proc shows for the same world:
    namespaces nested alike with the same inits and members, every process at the same
    pids under the same parent, the zombie a zombie (docs/introspection.md)."""
    scenario = parse(TREE_WORLD, "t.pidns")
    real = RealBackend()
    runner = Runner(scenario, real)
    try:
        runner.start()  # run() would close the world at its end: step it here
        for step in scenario.steps:
            runner.step(step)
        assert real.world is not None and real.world.root is not None
        root = real.world.root.host
        whole = system_picture()
        (world_root,) = [p for p in whole.processes if p.pids[0] == root]
        skip = len(world_root.pids) - 1
        seen = _shape(whole.subtree(world_root.ns), skip)
    finally:
        real.close()
    model = ModelBackend(world_level=real.world_level)
    run(scenario, model)
    drawn = _shape(from_model(model.kernel, model.names), 0)
    model.close()
    assert seen == drawn
    namespaces, processes = drawn
    assert len(namespaces) == 3 and sum(zombie for *_, zombie in processes) == 1
