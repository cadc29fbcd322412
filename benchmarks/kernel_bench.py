"""What `pidns check --kernel IMAGE` costs per kernel: the boot alone, and every example.

For each image: the time from qemu's start to its end for a guest that only probes the
kernel's features (the boot and the guest's Python start-up), and for a guest that runs
`pidns check` on every example (one boot). The peer, measured in the same run, is the
same `pidns check` of the examples on this machine's own kernel.

    python benchmarks/kernel_bench.py [--json] IMAGE...

`make bench` passes the images `make test` uses (Linux 3.8.13, Debian's 6.1).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pidns.linux import guest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.pidns"))


def host_check() -> float:
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pidns", "check", *EXAMPLES],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        check=True,
    )
    return time.monotonic() - started


def in_guest(image: str, argv: list[str], files: list[str]) -> tuple[int, float]:
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        return guest.run(image, argv, files, stdout=null, stderr=null)
    finally:
        os.close(null)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args()
    os.chdir(ROOT)
    accel, _cpu, note = guest.accelerator()
    host = host_check()
    print(f"accelerator: {accel}{' (' + note + ')' if note else ''}")
    print(f"host ({os.uname().release}): {len(EXAMPLES)} examples checked in {host:.1f} s")
    result: dict[str, object] = {"accel": accel, "host_check_s": round(host, 2), "kernels": {}}
    kernels: dict[str, object] = {}
    for image in args.images:
        _status, boot = in_guest(image, ["-m", "pidns.linux.features"], [])
        status, check = in_guest(image, ["-m", "pidns", "check", *EXAMPLES], EXAMPLES)
        print(
            f"{image}: boot {boot:.1f} s; {len(EXAMPLES)} examples in one boot {check:.1f} s "
            f"(status {status}), {check / host:.1f}x the host's check, "
            f"{(check - boot) / host:.1f}x without the boot"
        )
        kernels[image] = {
            "boot_s": round(boot, 2),
            "check_s": round(check, 2),
            "status": status,
            "vs_host": round(check / host, 2),
        }
    result["kernels"] = kernels
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
