"""Random valid scenarios, and shrinking a divergent one to a minimal reproducer.

A scenario is grown one step at a time on the model backend: each step is chosen among
the processes that are alive and not blocked there, so what comes out is valid as the
language defines it (it parses, and no step is made by a busy or ended process). The
real kernel may still disagree with the model about who is busy or alive: ``check``
runs the second backend non-strictly, and that disagreement is the divergence found.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from pidns.model import profiles
from pidns.model.task import Task, TaskState, Thread
from pidns.scenario.ast import Op, Step
from pidns.scenario.backend import Runner, ScenarioError, UnsupportedStep, writes_global_pid_max
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.ops import SPECS
from pidns.scenario.parser import parse

_NAMES = [chr(c) for c in range(ord("B"), ord("Z") + 1)]


def _render(lines: list[str], profile: str) -> str:
    return "".join(f"{line}\n" for line in [f"%profile {profile}", *lines])


def generate(
    rng: random.Random,
    steps: int = 14,
    processes: int = 6,
    profile: str = "6.18",
    world_level: int = 1,
    mapped_uids: frozenset[int] | None = None,
    unsupported: Callable[[Step], str | None] | None = None,
) -> str:
    """The text of one random, valid scenario of at most ``steps`` steps, grown on a model
    of the world it will be checked in (``world_level``, ``mapped_uids``: the real
    backend's, so that what is valid there is what the check's own model sees). A step
    ``unsupported`` refuses (the real backend's reason it cannot run one on this kernel)
    is never made."""
    lines: list[str] = []
    made: dict[int, Step] = {}  # the steps so far, by index
    created: list[str] = ["A"]  # processes and threads
    pidfds: list[str] = []
    backend, runner = _replay([], profile, world_level, mapped_uids)
    per_ns_pid_max = profiles.for_release(profile).per_ns_pid_max
    bound = 0  # names used so far (a failed fork uses its name too)
    ops = [spec for spec in SPECS.values() if spec.sample is not None and spec.weight > 0]
    weights = [spec.weight for spec in ops]
    attempts = 0
    while len(lines) < steps and attempts < steps * 20:
        attempts += 1
        alive = [n for n in created if backend.can_act(n) and n not in runner.busy]
        if not alive:
            break
        actor = rng.choice(alive)
        spec = rng.choices(ops, weights)[0]
        if spec.binds and (len(created) > processes or bound >= len(_NAMES)):
            continue
        if spec.on_pidfd and not pidfds:
            continue
        keep = 0.97 if len(alive) == 1 else 0.8
        if spec.op in (Op.EXIT, Op.KILL) and len(alive) < 3 and rng.random() < keep:
            continue  # keep the world alive long enough to be interesting
        fresh = _NAMES[bound]
        others = [n for n in created if n != actor]
        target = rng.choice(others) if others else actor
        if spec.on_pidfd:
            target = rng.choice(pidfds)
        assert spec.sample is not None
        line = f"{actor}: {spec.sample(rng, actor, target, fresh)}"
        try:
            scenario = parse(_render([*lines, line], profile), "<random>")
        except ScenarioError:
            continue
        step = scenario.steps[-1]
        if writes_global_pid_max(step, per_ns_pid_max):
            continue
        if unsupported is not None and unsupported(step) is not None:
            continue
        if (
            _races_a_sibling(step, backend, runner)
            or _queues_beside_a_sibling(step, backend, runner)
            or _names_a_thread_of_a_zap(step, backend)
            or _wakes_a_sibling_pgrp_wait(step, backend, runner, made)
            or _exec_unsettled(step, backend)
        ):
            continue
        sleepers = _sleeping_waiters(backend, runner, made)
        try:
            runner.step(step)
        except UnsupportedStep:
            continue
        if _children_die_together(sleepers):
            backend.close()  # the step ran on the model: grow on from before it
            backend, runner = _replay(lines, profile, world_level, mapped_uids)
            continue
        lines.append(line)
        made[step.index] = step
        if step.bind:
            bound += 1
            if step.bind in backend.tasks:
                created.append(step.bind)
        pidfds += [n for n in (step.bind, step.args.keep_pidfd) if n in backend.pidfds]
    backend.close()
    return _render(lines, profile)


def _races_a_sibling(step: Step, backend: ModelBackend, runner: Runner) -> bool:
    """A wait that may sleep while another thread of the actor's process is asleep in a
    call: two waits of one process for the same child race (the kernel wakes both, and
    which one reaps it is the scheduler's choice: docs/scenario-language.md, Blocking)."""
    if step.op not in (Op.WAIT, Op.WAITID) or step.args.nohang or step.args.nowait:
        return False
    group = backend.tasks[step.actor].group
    return any(backend.tasks[name].group is group for name in runner.busy)


def _queues_beside_a_sibling(step: Step, backend: ModelBackend, runner: Runner) -> bool:
    """A call queued by a thread of a stopped process while another of its threads has a
    call queued or asleep: when the process continues, both threads run at once, and
    which call the kernel makes first (a fork before a sibling's exit_group, or not) is
    the scheduler's choice (found as seed 52008: A's fork and C's exit, both queued)."""
    group = backend.tasks[step.actor].group
    if not group.stopped:
        return False
    return any(n != step.actor and backend.tasks[n].group is group for n in runner.busy)


def _names_a_thread_of_a_zap(step: Step, backend: ModelBackend) -> bool:
    """A step naming a thread of an init whose group exit is under way: the thread that
    exits last makes the zap (kernel/exit.c:find_child_reaper takes any thread still
    alive) and stays visible, exiting, until its namespace is empty; whether the killed
    thread or the one that called exit is last is the scheduler's choice (found as seed
    61009: getpgid of the init's killed thread gave 1, not ESRCH). The model releases the
    other threads first."""
    target = backend.tasks.get(step.args.target) if step.args.target else None
    if not isinstance(target, Thread) or target.alive:
        return False
    group = target.group
    return group.state is TaskState.EXITING and group.ns.child_reaper is group


def _wakes_a_sibling_pgrp_wait(
    step: Step, backend: ModelBackend, runner: Runner, made: dict[int, Step]
) -> bool:
    """A ``signal`` or ``setuid`` while another thread of the actor's process sleeps in a
    wait for a process group. The puppet then wakes its other threads to make their
    signal masks anew (puppet.py: _sync_others), and a woken waitpid(0) or waitpid(-PGID)
    is made again, resolving its group anew: ECHILD if its children left the group,
    where the kernel's sleeping wait, woken by nothing, sleeps on (found as uid 65534,
    seed 72005). A limit of the real backend, not a rule: docs/scenario-language.md."""
    if step.op not in (Op.SIGNAL, Op.SETUID):
        return False
    group = backend.tasks[step.actor].group
    return any(
        name != step.actor
        and backend.tasks[name].group is group
        and made[index].op is Op.WAIT
        and made[index].args.pgrp
        for name, index in runner.busy.items()
    )


def _exec_unsettled(step: Step, backend: ModelBackend) -> bool:
    """An exec by a stopped actor: it would run during a later step, and the real
    backend refuses it (its sweeps would take the thread's tid going for its death)."""
    return step.op is Op.EXEC and backend.tasks[step.actor].group.stopped


def _replay(
    lines: list[str], profile: str, world_level: int, mapped_uids: frozenset[int] | None
) -> tuple[ModelBackend, Runner]:
    """A model world that has run ``lines`` (the model is deterministic)."""
    backend = ModelBackend(world_level=world_level, mapped_uids=mapped_uids)
    scenario = parse(_render(lines, profile), "<random>")
    runner = Runner(scenario, backend)
    runner.start()
    for step in scenario.steps:
        runner.step(step)
    return backend, runner


def _sleeping_waiters(
    backend: ModelBackend, runner: Runner, made: dict[int, Step]
) -> list[list[Task]]:
    """For each process with a thread asleep in a wait: its children still running."""
    groups = {
        backend.tasks[actor].group
        for actor, index in runner.busy.items()
        if made[index].op in (Op.WAIT, Op.WAITID)
    }
    return [[c for c in g.children or () if c.state is TaskState.RUNNING] for g in groups]


def _children_die_together(sleepers: list[list[Task]]) -> bool:
    """A step ended two children of a process asleep in a wait: signalled together (a
    kill of a group, of -1, a namespace's zap), they exit on their own CPUs, and the
    wait reaps whichever is a zombie when it scans (kernel/exit.c:do_wait_thread, the
    children in list order): the scheduler's choice, a race no scenario states
    (docs/scenario-language.md, Blocking). An init among them that waits in its zap for
    another of them dies after it, which is no race."""
    for children in sleepers:
        dying = [c for c in children if c.state is not TaskState.RUNNING]
        racing = [
            c
            for c in dying
            if not (
                c.ns.child_reaper is c
                and any(d is not c and c.ns.is_ancestor_of(d.ns) for d in dying)
            )
        ]
        if len(racing) > 1:
            return True
    return False


def _dependents(lines: list[str], index: int) -> set[int]:
    """The line at ``index`` and every later line that names what it created."""
    drop = {index}
    bound = lines[index].partition("->")[2].split("=>")[0].strip()
    if bound:
        for j in range(index + 1, len(lines)):
            words = lines[j].replace(":", " ").split("=>")[0].split()
            if bound in words:
                drop |= _dependents(lines, j)
    return drop


def shrink(text: str, still_fails: Callable[[str], bool], budget: int = 200) -> str:
    """Remove steps (and what depends on them) while ``still_fails`` holds: a 1-minimal
    reproducer within ``budget`` trials. The first line (the %profile header) stays."""
    header, *lines = [line for line in text.splitlines() if line.strip()]
    trials = 0
    changed = True
    while changed and trials < budget:
        changed = False
        chunk = max(1, len(lines) // 2)
        while chunk >= 1 and trials < budget:
            index = 0
            while index < len(lines) and trials < budget:
                drop: set[int] = set()
                for i in range(index, min(index + chunk, len(lines))):
                    drop |= _dependents(lines, i)
                candidate = [line for i, line in enumerate(lines) if i not in drop]
                trials += 1
                if candidate and still_fails(_render_plain(header, candidate)):
                    lines = candidate
                    changed = True
                else:
                    index += chunk
            chunk //= 2
    return _render_plain(header, lines)


def _render_plain(header: str, lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in [header, *lines])
