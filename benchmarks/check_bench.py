"""Scenario steps per second on each backend, measured on the same scenarios in one run.

The scenarios are the random ones ``pidns check --random`` uses (fixed seed), plus the
examples: every step of each is run on the model backend and on the real backend, and
each backend's whole run (world set-up and teardown included) is timed.

    python benchmarks/check_bench.py [--json] [--scenarios N] [--seed S]

Targets (issue 3): >= 500 steps/s on the real backend; the model >= 20x the real one.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pidns.scenario.ast import Scenario
from pidns.scenario.backend import Backend, run
from pidns.scenario.generate import generate
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse, parse_file
from pidns.scenario.real import RealBackend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def scenarios(count: int, seed: int, world_level: int) -> list[Scenario]:
    found = [parse_file(str(p)) for p in sorted(EXAMPLES.glob("*.pidns"))]
    found = [s for s in found if s.profile == "6.18"]
    for number in range(count):
        text = generate(random.Random(f"{seed}:{number}"), world_level=world_level)
        found.append(parse(text, f"random-{seed}-{number}"))
    return found


def steps_per_second(batch: list[Scenario], make: Callable[[], Backend]) -> tuple[float, int]:
    steps = 0
    start = time.perf_counter()
    for scenario in batch:
        trace = run(scenario, make(), strict=False)
        if trace.error:
            raise SystemExit(f"{scenario.path}: {trace.error}")
        steps += len(trace.records)
    return steps / (time.perf_counter() - start), steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--scenarios", type=int, default=200, help="random scenarios")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    probe = RealBackend()
    level = int(getattr(probe, "world_level", 1))
    batch = scenarios(args.scenarios, args.seed, level)

    def model() -> ModelBackend:
        return ModelBackend(world_level=level)

    real_rate, steps = steps_per_second(batch, RealBackend)
    model_rate, _ = steps_per_second(batch, model)
    result = {
        "scenarios": len(batch),
        "steps": steps,
        "real_steps_per_s": round(real_rate),
        "model_steps_per_s": round(model_rate),
        "model_vs_real_speedup": round(model_rate / real_rate, 1),
    }
    print(f"{len(batch)} scenarios, {steps} steps on each backend")
    print(f"real kernel: {real_rate:10,.0f} steps/s (target >= 500)")
    print(f"model:       {model_rate:10,.0f} steps/s")
    print(f"model vs real: {result['model_vs_real_speedup']}x (target >= 20x)")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
