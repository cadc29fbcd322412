"""What ``pidns check`` costs as a scenario grows: N forks, for N = 100, 200, 400, 800.

Each size is one scenario (``A: fork -> Child0``, ``A: fork -> Child1``, ...), checked
as ``pidns check`` does it (the model, then the kernel, then the comparison), and measured against
two peers in the same run: the model alone, and a plain Python script that makes the
same N processes on the kernel (N forks from one parent, each child asleep on a pipe as
an idle puppet is, then all of them ended and reaped).

    python benchmarks/check_cost.py [--json] [--sizes 100,200,400,800] [--repeat R]

Printed: the seconds per size (best of R), the check's cost against the plain forks,
and the growth exponent of each (the least-squares slope of log time over log N: 1 is
linear, 2 quadratic). Target (issue 10, item 11): the check's exponent near 1, and the
ratio to the plain forks not growing with N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

from pidns.scenario.backend import run
from pidns.scenario.compare import judge
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.real import RealBackend


def forks(n: int) -> str:
    return "".join(f"A: fork -> Child{i}\n" for i in range(n))


def check_once(text: str) -> float:
    """The model, the kernel and the comparison, as ``pidns check`` runs one file."""
    scenario = parse(text, "forks.pidns")
    real = RealBackend()
    start = time.perf_counter()
    own = run(scenario, ModelBackend(world_level=real.world_level, mapped_uids=real.mapped_uids))
    trace = run(scenario, real, strict=False)
    verdict = judge([own, trace])
    took = time.perf_counter() - start
    if not verdict.ok:
        raise SystemExit(f"{len(scenario.steps)} forks: the check failed: {verdict.errors}")
    return took


def model_once(text: str) -> float:
    scenario = parse(text, "forks.pidns")
    start = time.perf_counter()
    trace = run(scenario, ModelBackend())
    took = time.perf_counter() - start
    if trace.error:
        raise SystemExit(trace.error)
    return took


def plain_once(n: int) -> float:
    """N forks by a plain Python parent; each child sleeps reading a pipe until it closes."""
    start = time.perf_counter()
    read_end, write_end = os.pipe()
    children = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            os.close(write_end)
            os.read(read_end, 1)
            os._exit(0)
        children.append(pid)
    os.close(write_end)
    os.close(read_end)
    for pid in children:
        os.waitpid(pid, 0)
    return time.perf_counter() - start


def exponent(sizes: list[int], times: list[float]) -> float:
    """The least-squares slope of log(time) over log(size)."""
    xs = [math.log(n) for n in sizes]
    ys = [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--sizes", default="100,200,400,800", help="numbers of forks")
    parser.add_argument("--repeat", type=int, default=2, help="runs per size (best kept)")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",")]
    rows: dict[str, list[float]] = {"check": [], "model": [], "plain": []}
    print(f"{'forks':>6} {'check s':>9} {'model s':>9} {'plain s':>9} {'check/plain':>12}")
    for n in sizes:
        text = forks(n)
        check = min(check_once(text) for _ in range(args.repeat))
        model = min(model_once(text) for _ in range(args.repeat))
        plain = min(plain_once(n) for _ in range(args.repeat))
        for key, value in (("check", check), ("model", model), ("plain", plain)):
            rows[key].append(value)
        print(f"{n:>6} {check:9.3f} {model:9.3f} {plain:9.3f} {check / plain:12.1f}")
    growth = {key: round(exponent(sizes, times), 2) for key, times in rows.items()}
    print(
        f"growth exponent: check {growth['check']}, model {growth['model']}, "
        f"plain forks {growth['plain']} (1 linear, 2 quadratic; target: check near 1)"
    )
    if args.json:
        print(json.dumps({"sizes": sizes, "seconds": rows, "exponent": growth}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
