"""Benchmark of the model against the real kernel, in one run.

Prints, for the model: fork+exit+wait cycles per second at nesting depth 1 and 32,
memory per live task with 1,000,000 live tasks, and per live task when half of them are
threads (500,000 processes with one extra thread each); for the kernel: the same fork+exit+wait
cycle (os.fork, os._exit, os.waitpid) run by an init at depth 1; then the ratios.
With --json the last line is one JSON object.

    python benchmarks/model_bench.py [--json] [--tasks N] [--seconds S]

Targets (issue 2): the model >= 20x the kernel's cycle rate; depth 32 <= 3x depth 1;
<= 1 KiB per live task.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import struct
import sys
import time

from pidns.core import flags as cf
from pidns.linux import syscalls
from pidns.model import Kernel, Task
from pidns.model.profiles import MAX_PID_NS_LEVEL, PID_MAX_LIMIT


def nest(kernel: Kernel, depth: int) -> Task:
    """An init at kernel level ``depth``: its children are created at that level."""
    task = kernel.init
    for _ in range(depth):
        task = kernel.clone(task, cf.NEWPID)
    return task


def model_cycles(depth: int, seconds: float) -> float:
    kernel = Kernel()
    parent = nest(kernel, depth)
    fork, exit_, wait = kernel.fork, kernel.exit, kernel.wait
    probe = fork(parent)
    assert len(probe.numbers) == depth + 1, "the child must live at the requested depth"
    exit_(probe, 0)
    wait(parent, probe)
    batch = 2000
    done = 0
    start = time.perf_counter()
    while True:
        for _ in range(batch):
            child = fork(parent)
            exit_(child, 0)
            wait(parent, child)
        done += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def model_bytes_per_task(count: int) -> float:
    # a million pids need pid_max raised at level 0 too (systemd sets 4194304 by default)
    kernel = Kernel(pid_max=PID_MAX_LIMIT)
    parent = nest(kernel, 1)
    gc.collect()
    gc.disable()
    before = rss_bytes()
    fork = kernel.fork
    for _ in range(count):
        fork(parent)
    after = rss_bytes()
    gc.enable()
    assert len(kernel.tasks) == count + 2
    return (after - before) / count


def kernel_cycles(seconds: float) -> float:
    """fork+exit+wait on the real kernel, by the init of a fresh pid namespace (depth 1)."""
    read_end, write_end = os.pipe()
    pid, _ = syscalls.clone(cf.NEWPID)
    if pid == 0:  # pid 1 of a new namespace: the same loop the model runs
        os.close(read_end)
        done = 0
        start = time.perf_counter()
        while True:
            for _ in range(200):
                child = os.fork()
                if child == 0:
                    os._exit(0)
                os.waitpid(child, 0)
            done += 200
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                os.write(write_end, struct.pack("d", done / elapsed))
                os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 8)
    os.waitpid(pid, 0)
    os.close(read_end)
    return float(struct.unpack("d", data)[0])


def model_bytes_per_task_with_threads(count: int) -> float:
    """Half processes, half threads: each fork also gets one thread of its own."""
    kernel = Kernel(pid_max=PID_MAX_LIMIT)
    parent = nest(kernel, 1)
    gc.collect()
    gc.disable()
    before = rss_bytes()
    fork, thread = kernel.fork, kernel.clone_thread
    for _ in range(count // 2):
        thread(fork(parent))
    after = rss_bytes()
    gc.enable()
    assert len(kernel.tasks) == count // 2 + 2
    return (after - before) / (count // 2 * 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--tasks", type=int, default=1_000_000, help="live tasks for memory")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per rate")
    args = parser.parse_args()
    if os.geteuid() != 0:
        try:
            syscalls.unshare(cf.NEWUSER)
        except OSError as err:
            print(f"model_bench: cannot make a pid namespace: {err}", file=sys.stderr)
            return 125
    kernel_rate = kernel_cycles(args.seconds)
    depth1 = model_cycles(1, args.seconds)
    depth32 = model_cycles(MAX_PID_NS_LEVEL, args.seconds)
    per_task = model_bytes_per_task(args.tasks)
    per_task_threads = model_bytes_per_task_with_threads(args.tasks)
    result = {
        "python": sys.version.split()[0],
        "kernel_cycles_per_s": round(kernel_rate),
        "model_cycles_per_s_depth1": round(depth1),
        "model_cycles_per_s_depth32": round(depth32),
        "live_tasks": args.tasks,
        "bytes_per_task": round(per_task, 1),
        "bytes_per_task_half_threads": round(per_task_threads, 1),
        "model_vs_kernel_speedup": round(depth1 / kernel_rate, 2),
        "depth32_vs_depth1_cost": round(depth1 / depth32, 2),
    }
    print(f"real kernel (pid-ns init, depth 1): {kernel_rate:12,.0f} fork+exit+wait/s")
    print(f"model, depth 1:                     {depth1:12,.0f} fork+exit+wait/s")
    print(f"model, depth 32:                    {depth32:12,.0f} fork+exit+wait/s")
    print(f"model memory at {args.tasks:,} live tasks: {per_task:,.0f} bytes per task")
    print(f"  ... half of them threads: {per_task_threads:,.0f} bytes per live task")
    print(f"model vs kernel: {result['model_vs_kernel_speedup']}x faster (target >= 20x)")
    print(f"depth 32 vs depth 1: {result['depth32_vs_depth1_cost']}x the cost (target <= 3x)")
    print(f"bytes per live task: {result['bytes_per_task']} (target <= 1024)")
    print(f"bytes per live task, threads included: {result['bytes_per_task_half_threads']}")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
