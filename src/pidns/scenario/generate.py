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

from pidns.scenario.ast import BLOCKS
from pidns.scenario.backend import ScenarioError, UnsupportedStep
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse

# op -> weight
_OPS: dict[str, float] = {
    "fork": 5,
    "clone": 3,
    "unshare": 2,
    "setns": 1.5,
    "getpid": 1,
    "getppid": 1,
    "getpgid": 0.5,
    "getsid": 0.5,
    "setsid": 0.7,
    "pidof": 1,
    "nspid": 1,
    "exit": 3,
    "wait": 3,
    "kill": 3,
    "signal": 1.5,
    "caught": 1,
    "subreaper": 0.7,
    "state": 1,
    "setuid": 0.3,
}
_CLONE_FLAGS = ["0", "NEWPID", "NEWPID|NEWUSER", "PARENT", "NEWPID|PARENT", "NEWUSER"]
_UNSHARE_FLAGS = ["NEWPID", "NEWPID", "NEWPID|NEWUSER", "NEWUSER"]
_KILL_SIGNALS = ["KILL", "TERM", "USR1", "USR2", "CHLD", "0", "KILL", "TERM", "STOP", "CONT"]
_HANDLED_SIGNALS = ["USR1", "USR2", "TERM", "CHLD"]
_NAMES = [chr(c) for c in range(ord("B"), ord("Z") + 1)]


def _render(lines: list[str], profile: str) -> str:
    return "".join(f"{line}\n" for line in [f"%profile {profile}", *lines])


def _step_text(rng: random.Random, actor: str, op: str, names: list[str], fresh: str) -> str:
    """One step line by ``actor``; ``names`` are the other processes that exist."""
    target = rng.choice(names) if names else actor
    if op == "fork":
        return f"{actor}: fork -> {fresh}"
    if op == "clone":
        flags = rng.choice(_CLONE_FLAGS)
        if rng.random() < 0.25:  # numbers chosen at the innermost level(s): clone3 set_tid
            tids = [rng.choice([1, 2, 3, 5, 40, 299, 300])]
            if "NEWPID" in flags and rng.random() < 0.5:
                tids.append(rng.choice([1, 2, 7, 40, 300]))
            return f"{actor}: clone {flags} set_tid={','.join(map(str, tids))} -> {fresh}"
        return f"{actor}: clone {flags} -> {fresh}"
    if op == "unshare":
        return f"{actor}: unshare {rng.choice(_UNSHARE_FLAGS)}"
    if op == "setns":
        kind = rng.choice(["", " pid", " pid_for_children"])
        return f"{actor}: setns {target}{kind}"
    if op in ("pidof", "state"):
        return f"{actor}: {op} {target}"
    if op == "nspid":
        return f"{actor}: nspid" + (f" {target}" if rng.random() < 0.6 else "")
    if op == "exit":
        return f"{actor}: exit {rng.randrange(0, 6)}"
    if op == "wait":
        who = rng.choice(["", " any", f" {target}"])
        return f"{actor}: wait{who}" + (" nohang" if rng.random() < 0.5 else "")
    if op == "kill":
        sig = rng.choice(_KILL_SIGNALS)
        if rng.random() < 0.3:
            return f"{actor}: kill {rng.choice(['-1', '0', '1', '2', '3'])} {sig}"
        return f"{actor}: kill {target} {sig}"
    if op == "signal":
        how = rng.choice(["catch", "catch", "ignore", "default"])
        return f"{actor}: signal {rng.choice(_HANDLED_SIGNALS)} {how}"
    if op == "subreaper":
        return f"{actor}: subreaper {rng.choice(['on', 'off'])}"
    if op == "setuid":
        return f"{actor}: setuid {rng.choice([0, 1000, 65534])}"
    return f"{actor}: {op}"


def generate(
    rng: random.Random,
    steps: int = 14,
    processes: int = 6,
    profile: str = "6.18",
    world_level: int = 1,
) -> str:
    """The text of one random, valid scenario of at most ``steps`` steps."""
    backend = ModelBackend(world_level=world_level)
    lines: list[str] = []
    created: list[str] = ["A"]
    backend.start(parse(_render([], profile), "<random>"))
    busy: set[str] = set()
    bound = 0  # names used so far (a failed fork uses its name too)
    ops = list(_OPS)
    weights = [_OPS[o] for o in ops]
    attempts = 0
    while len(lines) < steps and attempts < steps * 20:
        attempts += 1
        alive = [n for n in created if backend.tasks[n].state.name == "RUNNING" and n not in busy]
        if not alive:
            break
        actor = rng.choice(alive)
        op = rng.choices(ops, weights)[0]
        if op in ("fork", "clone") and (len(created) > processes or bound >= len(_NAMES)):
            continue
        keep = 0.97 if len(alive) == 1 else 0.8
        if op in ("exit", "kill") and len(alive) < 3 and rng.random() < keep:
            continue  # keep the world alive long enough to be interesting
        fresh = _NAMES[bound]
        others = [n for n in created if n != actor]
        line = _step_text(rng, actor, op, others, fresh)
        try:
            scenario = parse(_render([*lines, line], profile), "<random>")
        except ScenarioError:
            continue
        step = scenario.steps[-1]
        try:
            outcome = backend.step(step)
        except UnsupportedStep:
            continue
        lines.append(line)
        if step.bind:
            bound += 1
            if step.bind in backend.tasks:
                created.append(step.bind)
        if outcome.result == BLOCKS:
            busy.add(actor)
        for done in outcome.completions:
            busy.discard(done.actor)
    backend.close()
    return _render(lines, profile)


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
