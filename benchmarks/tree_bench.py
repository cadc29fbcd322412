"""Benchmark of ``pidns tree --json`` and ``pidns ls --json`` against ``lsns -t pid -J``.

All three are whole commands, start-up included, run alternately on the same host in one
run, after making the host non-trivial: NAMESPACES pid namespaces (every other one with
a nested namespace inside), each holding PROCS ``sleep`` processes. Prints the median
wall time of each and the ratios; with --json the last line is one JSON object holding
``tree_vs_lsns`` and ``ls_vs_lsns``.

    python benchmarks/tree_bench.py [--json] [--namespaces N] [--procs M] [--runs R]

Target (issue 5): each ratio at most 3. Needs root (or unprivileged user namespaces) and
lsns (util-linux). Every process it starts dies with it: each namespace's init has
PR_SET_PDEATHSIG=SIGKILL, and killing an init kills its whole namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from pidns.core import flags as cf
from pidns.linux import syscalls

TARGET = 3.0


def _populate(procs: int, nested: bool, ready: int) -> None:
    """In a new namespace's init: start ``procs`` sleepers (or a nested namespace that
    does), report on ``ready``, then reap until killed."""
    syscalls.set_parent_death_signal(signal.SIGKILL)
    if nested:
        half = procs // 2
        pid, _ = syscalls.clone(cf.NEWPID)
        if pid == 0:
            try:
                _populate(procs - half, False, ready)
            finally:
                os._exit(1)
        procs = half
    for _ in range(procs):
        os.posix_spawn("/bin/sleep", ["sleep", "3600"], {})
    os.write(ready, b"+")
    while True:
        try:
            os.wait()
        except ChildProcessError:
            signal.pause()


def make_namespaces(count: int, procs: int) -> list[int]:
    """``count`` pid namespaces of ``procs`` processes each; returns their inits' pids."""
    flags = cf.NEWPID if os.geteuid() == 0 else cf.NEWPID | cf.NEWUSER
    inits: list[int] = []
    read_end, write_end = os.pipe()
    try:
        for i in range(count):
            nested = i % 2 == 1
            pid, _ = syscalls.clone(flags)
            if pid == 0:
                try:
                    os.close(read_end)
                    _populate(procs, nested, write_end)
                finally:
                    os._exit(1)
            inits.append(pid)
            expected = 2 if nested else 1
            got = 0
            while got < expected:
                got += len(os.read(read_end, expected - got))
    except BaseException:
        kill(inits)
        raise
    finally:
        os.close(read_end)
        os.close(write_end)
    return inits


def kill(inits: list[int]) -> None:
    """SIGKILL each init (the kernel then kills its namespace) and reap it."""
    for pid in inits:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in inits:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def time_commands(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median wall seconds of each command, the commands run alternately."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # users run with bytecode caches
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv in commands.values():  # warm-up: caches, bytecode
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
    for _ in range(runs):
        for name, argv in commands.items():
            start = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def pidns_command() -> str:
    """The installed ``pidns`` command next to this Python (what users run)."""
    beside = os.path.join(os.path.dirname(sys.executable), "pidns")
    found = beside if os.access(beside, os.X_OK) else shutil.which("pidns")
    if found is None:
        raise SystemExit("pidns is not installed (pip install -e .)")
    return found


def output(argv: list[str]) -> Any:
    return json.loads(subprocess.run(argv, capture_output=True, check=True).stdout)


def check_outputs(pidns: str, lsns: str, inits: list[int]) -> tuple[int, int]:
    """Each command's JSON parses and sees the namespaces made; (processes, namespaces)."""
    ls, tree, peer = (
        output([pidns, "ls", "--json"]),
        output([pidns, "tree", "--json"]),
        output([lsns, "-t", "pid", "-J"]),
    )
    inits_seen = {ns["init"] for ns in ls["namespaces"]}
    missing = [pid for pid in inits if pid not in inits_seen]
    if missing:
        raise SystemExit(f"pidns ls did not list the namespaces of inits {missing}")
    processes = sum(len(ns["processes"]) for ns in _walk(tree["namespaces"]))
    peer_count = len(_walk(peer["namespaces"]))  # lsns nests child namespaces too
    if peer_count != len(ls["namespaces"]):
        print(f"note: lsns lists {peer_count} pid namespaces, pidns ls {len(ls['namespaces'])}")
    return processes, len(ls["namespaces"])


def _walk(namespaces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every namespace of a nested listing ("children")."""
    every: list[dict[str, Any]] = []
    stack = list(namespaces)
    while stack:
        ns = stack.pop()
        every.append(ns)
        stack.extend(ns.get("children", []))
    return every


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--namespaces", type=int, default=8, help="namespaces to make (8)")
    parser.add_argument("--procs", type=int, default=50, help="processes in each (50)")
    parser.add_argument("--runs", type=int, default=25, help="timed runs of each (25)")
    args = parser.parse_args()
    lsns = shutil.which("lsns")
    if lsns is None:
        print("tree_bench: lsns is not installed (apt install util-linux)", file=sys.stderr)
        return 2
    pidns = pidns_command()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup
    inits = make_namespaces(args.namespaces, args.procs)
    try:
        processes, namespaces = check_outputs(pidns, lsns, inits)
        medians = time_commands(
            {
                "lsns": [lsns, "-t", "pid", "-J"],
                "tree": [pidns, "tree", "--json"],
                "ls": [pidns, "ls", "--json"],
            },
            args.runs,
        )
    finally:
        kill(inits)
    result = {
        "processes": processes,
        "namespaces": namespaces,
        "runs": args.runs,
        "lsns_ms": round(medians["lsns"] * 1000, 2),
        "tree_ms": round(medians["tree"] * 1000, 2),
        "ls_ms": round(medians["ls"] * 1000, 2),
        "tree_vs_lsns": round(medians["tree"] / medians["lsns"], 2),
        "ls_vs_lsns": round(medians["ls"] / medians["lsns"], 2),
        "target": TARGET,
    }
    print(f"host: {processes} processes in {namespaces} pid namespaces, {args.runs} runs each")
    print(f"  lsns -t pid -J     {result['lsns_ms']:8.2f} ms")
    print(f"  pidns tree --json  {result['tree_ms']:8.2f} ms  {result['tree_vs_lsns']:.2f}x")
    print(f"  pidns ls --json    {result['ls_ms']:8.2f} ms  {result['ls_vs_lsns']:.2f}x")
    within = max(result["tree_vs_lsns"], result["ls_vs_lsns"]) <= TARGET
    print(f"target <= {TARGET}x: {'met' if within else 'missed'}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
