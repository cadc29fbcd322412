"""Benchmark of ``pidns run`` and the Python API against their peers, in one run.

1. Start-up of the command-line tool: ``pidns run -- true`` against
   ``unshare -fp --mount-proc true`` and ``python -c pass`` run by the same interpreter
   (the floor for any Python command-line tool).
2. In a warm interpreter: ``pidns.run(["true"])`` against
   ``subprocess.run(["unshare", "-fp", "--mount-proc", "true"])`` and
   ``subprocess.run(["true"])``.
3. A storm of 2,000 orphans reaped by the pid-1 init: ``pidns run -- sh -c STORM`` against
   ``unshare -fp --mount-proc tini -- sh -c STORM``. ``storm_vs_tini`` compares the storms
   less each launcher's own run of ``sh -c true`` (its start-up and teardown, which part 1
   compares); ``storm_with_startup_vs_tini`` the whole runs.
4. Idle memory (Pss) of the launcher plus the init, with ``unshare`` plus ``tini`` beside it.
5. The cost of the caller: ``pidns.run(["true"])`` from a fresh interpreter holding 4 GiB
   of touched memory and from a bare one, driven call by call and interleaved with each
   other (``inprocess_big_caller_vs_bare``); each one's first call, which starts its
   namespace server, is reported apart (``first_call_ms``).
6. Where a call's CPU time goes (``cpu_per_call_ms``, from /proc/PID/stat, so that a
   loaded machine shows it as well as an idle one): for ``pidns.run(["true"])`` the
   caller, the namespace server, and the inits with their commands (the server's reaped
   children); for the unshare peer the caller and ``unshare`` with its forks and ``true``.

Runs are interleaved (A, B, C, A, B, C, ...) and the medians compared. Peers come from
Debian packages (util-linux, tini); a missing one is skipped with a note and its ratio is
null. Without root, ``unshare`` gets ``--map-root-user`` (pidns makes a user namespace too).

Before measuring, the pidns package is byte-compiled (as an installed package is), and
the children run without PYTHONDONTWRITEBYTECODE: otherwise every start-up would
compile pidns from source.

    python benchmarks/run_bench.py [--json] [--rounds N] [--quick]

Targets (issue 4): in-process run <= 0.8x the unshare subprocess; the CLI <= 1.6x the
interpreter's bare start-up; the storm <= 1.1x tini. Issue 11: a 4 GiB caller <= 1.3x a
bare one.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pidns
from pidns.linux import userns

STORM = 'i=0; while [ "$i" -lt 2000 ]; do (true &); i=$((i+1)); done'
Command = Sequence[str]


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def pidns_command() -> tuple[list[str], str]:
    """The installed console script when there is one, else ``python -m pidns``."""
    script = Path(sys.executable).with_name("pidns")
    if script.exists():
        return [str(script)], str(script)
    return [sys.executable, "-m", "pidns"], f"{sys.executable} -m pidns"


def unshare_prefix() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    privileged, _ = userns.self_status()
    return [unshare, "-fp", "--mount-proc"] + ([] if privileged else ["--map-root-user"])


def timed_runs(commands: dict[str, Command], rounds: int) -> dict[str, float]:
    """Median wall time (ms) of each command, run interleaved ``rounds`` times."""
    env = environment()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            started = time.perf_counter()
            result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=False)
            samples[name].append((time.perf_counter() - started) * 1000)
            if result.returncode != 0:
                raise SystemExit(f"{name}: {' '.join(command)} exited {result.returncode}")
    return {name: statistics.median(values) for name, values in samples.items()}


def timed_calls(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median time (ms) of each call in this interpreter, interleaved, after a warm-up."""
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Pss for {pid}")


def children_of(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(x) for x in f.read().split()]


def idle_pss(command: Command, depth: int) -> int:
    """Pss (KiB) of ``command`` and its descendants ``depth`` levels down, once idle."""
    process = subprocess.Popen(
        [*command], env=environment(), stdout=subprocess.DEVNULL, start_new_session=True
    )
    try:
        chain = [process.pid]
        deadline = time.monotonic() + 10
        while len(chain) <= depth and time.monotonic() < deadline:
            below = children_of(chain[-1])
            if below:
                chain.append(below[0])
            else:
                time.sleep(0.01)
        if len(chain) <= depth:
            raise RuntimeError(f"{' '.join(command)} did not start")
        time.sleep(0.5)  # idle
        return sum(pss_kib(pid) for pid in chain[:depth])
    finally:
        process.terminate()
        process.wait()


BIG_CALLER_MIB = 4096


def caller_worker(mib: int) -> int:
    """``--caller MIB``: hold MIB of touched memory, then time one ``pidns.run(["true"])``
    per line read from stdin, writing the milliseconds back (the first: with the server's
    start)."""
    held = bytearray(mib << 20)
    held[::4096] = b"\1" * len(range(0, len(held), 4096))  # touch every page
    print("ready", flush=True)
    for _line in sys.stdin:
        started = time.perf_counter()
        pidns.run(["true"])
        print((time.perf_counter() - started) * 1000, flush=True)
    del held  # held until here
    return 0


def caller_costs(rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """Median and first-call ms of ``pidns.run(["true"])`` in a bare and a big caller."""
    workers = {}
    for name, mib in (("bare caller", 0), (f"{BIG_CALLER_MIB // 1024} GiB caller", BIG_CALLER_MIB)):
        command = [sys.executable, __file__, "--caller", str(mib)]
        worker = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment()
        )
        assert worker.stdout is not None and worker.stdin is not None
        if worker.stdout.readline() != "ready\n":
            raise SystemExit(f"{name}: the worker did not start")
        workers[name] = worker
    samples: dict[str, list[float]] = {name: [] for name in workers}
    try:
        for _ in range(rounds + 1):
            for name, worker in workers.items():
                assert worker.stdout is not None and worker.stdin is not None
                worker.stdin.write("call\n")
                worker.stdin.flush()
                samples[name].append(float(worker.stdout.readline()))
    finally:
        for worker in workers.values():
            assert worker.stdin is not None
            worker.stdin.close()
            worker.wait()
    first = {name: values[0] for name, values in samples.items()}
    return {name: statistics.median(values[1:]) for name, values in samples.items()}, first


def cpu_ms(pid: int) -> tuple[float, float]:
    """CPU time (ms) of ``pid`` itself and of its reaped children (proc(5): utime, stime,
    cutime, cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = 1000 / os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) * tick, (int(fields[13]) + int(fields[14])) * tick


def cpu_per_call(rounds: int, peer: Command | None) -> dict[str, float]:
    """Part 6: the CPU time of one call, split by process, averaged over ``rounds`` calls."""
    pidns.run(["true"])  # the server is started
    servers = []
    for pid in children_of(os.getpid()):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if b"pidns.linux.server" in f.read():
                servers.append(pid)
    split: dict[str, float] = {}
    if len(servers) == 1:
        (server,) = servers
        own, reaped = cpu_ms(server)
        before = time.process_time()
        for _ in range(rounds):
            pidns.run(["true"])
        split["pidns: caller"] = (time.process_time() - before) * 1000 / rounds
        own_after, reaped_after = cpu_ms(server)
        split["pidns: server"] = (own_after - own) / rounds
        split["pidns: inits and commands"] = (reaped_after - reaped) / rounds
    if peer is not None:
        before, start = time.process_time(), os.times()
        for _ in range(rounds):
            subprocess.run(peer, check=False)
        own, end = time.process_time() - before, os.times()
        children = (
            end.children_user + end.children_system - start.children_user - start.children_system
        )
        split["unshare: caller"] = own * 1000 / rounds
        split["unshare: unshare, its forks and true"] = children * 1000 / rounds
    return split


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a / b, 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--rounds", type=int, default=40, help="start-up runs of each command")
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test)")
    parser.add_argument("--caller", type=int, metavar="MIB", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.caller is not None:
        return caller_worker(args.caller)
    rounds = 5 if args.quick else args.rounds
    notes: list[str] = []
    compileall.compile_dir(str(Path(pidns.__file__).parent), quiet=1)

    cli, cli_name = pidns_command()
    unshare = unshare_prefix()
    tini = shutil.which("tini")
    if unshare is None:
        notes.append("unshare (util-linux) not found: its comparisons are skipped")
    if tini is None:
        notes.append("tini not found (apt-get install tini): the storm comparison is skipped")

    # 1. start-up of the command-line tool
    commands: dict[str, Command] = {
        "pidns run -- true": [*cli, "run", "--", "true"],
        "python -c pass": [sys.executable, "-c", "pass"],
    }
    if unshare:
        commands["unshare -fp --mount-proc true"] = [*unshare, "true"]
    startup = timed_runs(commands, rounds)

    # 2. in a warm interpreter
    calls: dict[str, Callable[[], object]] = {
        "pidns.run(['true'])": lambda: pidns.run(["true"]),
        "subprocess.run(['true'])": lambda: subprocess.run(["true"], check=False),
    }
    if unshare:
        peer = [*unshare, "true"]
        calls["subprocess.run(unshare ... true)"] = lambda: subprocess.run(peer, check=False)
    inprocess = timed_calls(calls, rounds * 5)
    cpu_split = cpu_per_call(rounds * 5, [*unshare, "true"] if unshare else None)

    # 3. the orphan storm, and each launcher's run of `sh -c true` (start-up and teardown,
    #    measured in part 1), so that the reaping itself can be compared
    storm_cmds: dict[str, Command] = {
        "pidns run": [*cli, "run", "--", "sh", "-c", STORM],
        "pidns run (sh -c true)": [*cli, "run", "--", "sh", "-c", "true"],
    }
    if unshare and tini:
        storm_cmds["unshare + tini"] = [*unshare, tini, "--", "sh", "-c", STORM]
        storm_cmds["unshare + tini (sh -c true)"] = [*unshare, tini, "--", "sh", "-c", "true"]
    storm = timed_runs(storm_cmds, 3 if args.quick else 9)
    reaping = {
        name: storm[name] - storm[f"{name} (sh -c true)"]
        for name in ("pidns run", "unshare + tini")
        if name in storm
    }

    # 4. idle memory
    pss = idle_pss([*cli, "run", "--", "sleep", "30"], depth=2)
    peer_pss = None
    if unshare and tini:
        peer_pss = idle_pss([*unshare, tini, "--", "sleep", "30"], depth=2)

    # 5. the caller's size
    callers, first_calls = caller_costs(rounds * 5)
    big = f"{BIG_CALLER_MIB // 1024} GiB caller"

    result = {
        "cli": cli_name,
        "startup_ms": {k: round(v, 3) for k, v in startup.items()},
        "inprocess_ms": {k: round(v, 3) for k, v in inprocess.items()},
        "cpu_per_call_ms": {k: round(v, 3) for k, v in cpu_split.items()},
        "caller_ms": {k: round(v, 3) for k, v in callers.items()},
        "first_call_ms": {k: round(v, 3) for k, v in first_calls.items()},
        "storm_ms": {k: round(v, 1) for k, v in storm.items()},
        "storm_less_startup_ms": {k: round(v, 1) for k, v in reaping.items()},
        "idle_pss_kib": pss,
        "peer_idle_pss_kib": peer_pss,
        "cli_vs_python_startup": ratio(startup["pidns run -- true"], startup["python -c pass"]),
        "cli_vs_unshare": ratio(
            startup["pidns run -- true"], startup.get("unshare -fp --mount-proc true")
        ),
        "inprocess_vs_unshare": ratio(
            inprocess["pidns.run(['true'])"], inprocess.get("subprocess.run(unshare ... true)")
        ),
        "inprocess_vs_subprocess_true": ratio(
            inprocess["pidns.run(['true'])"], inprocess["subprocess.run(['true'])"]
        ),
        "inprocess_big_caller_vs_bare": ratio(callers[big], callers["bare caller"]),
        "storm_vs_tini": ratio(reaping["pidns run"], reaping.get("unshare + tini")),
        "storm_with_startup_vs_tini": ratio(storm["pidns run"], storm.get("unshare + tini")),
        "notes": notes,
    }
    report(result)
    if args.json:
        print(json.dumps(result))
    return 0


def report(result: dict[str, Any]) -> None:
    def table(title: str, rows: dict[str, float], unit: str) -> None:
        print(title)
        for name, value in rows.items():
            print(f"  {value:10.3f} {unit}  {name}")

    print(f"pidns command line: {result['cli']}")
    table("start-up (median wall time per run)", result["startup_ms"], "ms")
    table("in a warm interpreter (median per call)", result["inprocess_ms"], "ms")
    table("CPU time of one call, by process (mean)", result["cpu_per_call_ms"], "ms")
    table("pidns.run(['true']) by the caller's size (median per call)", result["caller_ms"], "ms")
    table("the first call, which starts the namespace server", result["first_call_ms"], "ms")
    table("2,000 orphans (median wall time per run)", result["storm_ms"], "ms")
    table("2,000 orphans, less the launcher's own start-up", result["storm_less_startup_ms"], "ms")
    print(f"idle Pss, launcher + init: {result['idle_pss_kib']} KiB", end="")
    peer = result["peer_idle_pss_kib"]
    print("" if peer is None else f" (unshare + tini: {peer} KiB)")
    targets = (
        ("inprocess_vs_unshare", 0.8),
        ("inprocess_big_caller_vs_bare", 1.3),
        ("cli_vs_python_startup", 1.6),
        ("storm_vs_tini", 1.1),
    )
    print("ratios (target):")
    for key, target in targets:
        value = result[key]
        verdict = "skipped" if value is None else ("ok" if value <= target else "MISSED")
        print(f"  {key}: {value} (<= {target}) {verdict}")
    for key in ("cli_vs_unshare", "inprocess_vs_subprocess_true", "storm_with_startup_vs_tini"):
        print(f"  {key}: {result[key]}")
    for note in result["notes"]:
        print(f"note: {note}")


if __name__ == "__main__":
    sys.exit(main())
