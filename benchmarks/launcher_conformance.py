"""The same behaviour checks against several pid-namespace launchers, side by side.

Launchers: ``pidns run``, ``unshare -fp --mount-proc``, ``unshare -fp --mount-proc tini --``
and ``bwrap --unshare-pid`` (with the host's / and a fresh /proc). A launcher whose
program is missing is skipped with a note. This informs; it is not a test, and nothing
depends on the peers being installed.

Checks, each run as ``LAUNCHER sh -c SCRIPT`` by root (or with a user namespace where the
launcher supports one):

- pid: the command's pid in the namespace ($$): 2 behind an init, 1 without;
- exit N: ``exit 3`` gives 3;
- killed by a signal: ``kill -TERM $$`` gives 143 (a pid 1 without a handler cannot be
  killed by its own SIG_DFL signal: the kernel drops it, sh then exits 0);
- forwards TERM: TERM to the launcher reaches a shell that traps it (exits 7);
- reaps orphans: no zombie left 0.2 s after an orphan exits;
- leaks, command exits: a background and a setsid'd sleep outlive the command?
- leaks, launcher TERMed / SIGKILLed: anything of the namespace left 2 s later?

Each check's processes run in a fresh directory, which names them (/proc/PID/cwd).

    python benchmarks/launcher_conformance.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

Result = str  # what the cell shows

SURVIVOR_WAIT = 2.0


def launchers() -> tuple[dict[str, list[str]], list[str]]:
    found: dict[str, list[str]] = {}
    notes: list[str] = []
    script = Path(sys.executable).with_name("pidns")
    pidns = [str(script)] if script.exists() else [sys.executable, "-m", "pidns"]
    found["pidns run"] = [*pidns, "run", "--"]
    unshare, tini, bwrap = (shutil.which(p) for p in ("unshare", "tini", "bwrap"))
    root = os.geteuid() == 0
    if unshare:
        base = [unshare, "-fp", "--mount-proc"] + ([] if root else ["--map-root-user"])
        found["unshare -fp --mount-proc"] = base
        if tini:
            found["unshare ... tini --"] = [*base, tini, "--"]
        else:
            notes.append("tini not found (apt-get install tini): 'unshare ... tini --' skipped")
    else:
        notes.append("unshare (util-linux) not found: the unshare launchers are skipped")
    if bwrap:
        found["bwrap --unshare-pid"] = [
            bwrap, "--unshare-pid", "--dev-bind", "/", "/", "--proc", "/proc",
        ]  # fmt: skip
    else:
        notes.append("bwrap not found (apt-get install bubblewrap): skipped")
    return found, notes


def marker() -> str:
    """A fresh directory to run a check's processes in: /proc/PID/cwd names them without
    reading their memory (scanning /proc/*/cmdline in a loop was seen to hold back the
    exit of processes being killed)."""
    path = tempfile.mkdtemp(prefix="pidns-conformance-")
    os.chmod(path, 0o755)
    return path


def alive_with(mark: str) -> list[int]:
    """Live processes whose working directory is ``mark``."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/cwd") == mark:
                    pids.append(int(name))
            except OSError:
                continue
    return pids


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def cleanup(mark: str) -> None:
    for pid in alive_with(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive_with(mark), 5)
    with contextlib.suppress(OSError):
        os.rmdir(mark)


def run(
    prefix: list[str], script: str, timeout: float = 20, output: bool = True, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a check; without ``output``, stdout is not a pipe (a leaked process holding its
    write end would keep the read waiting)."""
    return subprocess.run(
        [*prefix, "sh", "-c", script],
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        cwd=cwd,
        start_new_session=True,
        check=False,
    )


def check_pid(prefix: list[str]) -> Result:
    return run(prefix, 'echo "$$"').stdout.strip() or "?"


def check_exit(prefix: list[str]) -> Result:
    return str(run(prefix, "exit 3").returncode)


def check_killed(prefix: list[str]) -> Result:
    return str(run(prefix, "kill -TERM $$").returncode)


def check_forwards(prefix: list[str]) -> Result:
    mark = marker()
    script = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.02; done'
    process = subprocess.Popen(
        [*prefix, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=mark,
        start_new_session=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    process.send_signal(signal.SIGTERM)
    try:
        result = str(process.wait(3))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        result = "no (still running)"
    cleanup(mark)  # what a launcher that does not forward left running
    process.stdout.close()
    return result


def check_reaps(prefix: list[str]) -> Result:
    script = "(true &); sleep 0.2; grep -l zombie /proc/[0-9]*/status | wc -l"
    zombies = run(prefix, script).stdout.strip()
    return "yes" if zombies == "0" else f"no ({zombies} zombie)"


FAMILY = "sleep 1000 & setsid sleep 1000 & "


def check_leak_on_exit(prefix: list[str]) -> Result:
    mark = marker()
    run(prefix, FAMILY + "sleep 0.2; exit 0", output=False, cwd=mark)
    count = 0 if wait_until(lambda: not alive_with(mark), SURVIVOR_WAIT) else len(alive_with(mark))
    cleanup(mark)
    return f"LEAKS {count}" if count else "none"


def _leak_on_signal(prefix: list[str], sig: int) -> Result:
    mark = marker()
    process = subprocess.Popen(
        [*prefix, "sh", "-c", FAMILY + "exec sleep 1000"],
        stdout=subprocess.DEVNULL,
        cwd=mark,
        start_new_session=True,
    )
    if not wait_until(lambda: len(_sleepers(mark)) >= 3, 5):
        process.kill()
        process.wait()
        cleanup(mark)
        return "?"
    process.send_signal(sig)
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    count = 0 if wait_until(lambda: not alive_with(mark), SURVIVOR_WAIT) else len(alive_with(mark))
    cleanup(mark)
    return f"LEAKS {count}" if count else "none"


def _sleepers(mark: str) -> list[int]:
    found = []
    for pid in alive_with(mark):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sleep":
                    found.append(pid)
        except OSError:
            continue
    return found


def check_leak_on_term(prefix: list[str]) -> Result:
    return _leak_on_signal(prefix, signal.SIGTERM)


def check_leak_on_kill(prefix: list[str]) -> Result:
    return _leak_on_signal(prefix, signal.SIGKILL)


CHECKS: list[tuple[str, Callable[[list[str]], Result], str]] = [
    ("pid of the command", check_pid, "2 behind an init"),
    ("exit 3", check_exit, "3"),
    ("killed by TERM", check_killed, "143"),
    ("forwards TERM (trap exits 7)", check_forwards, "7"),
    ("reaps orphans", check_reaps, "yes"),
    ("leaks when the command exits", check_leak_on_exit, "none"),
    ("leaks when the launcher gets TERM", check_leak_on_term, "none"),
    ("leaks when the launcher is SIGKILLed", check_leak_on_kill, "none"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    args = parser.parse_args(argv)
    found, notes = launchers()
    table: dict[str, dict[str, Result]] = {name: {} for name in found}
    for name, prefix in found.items():
        for check, function, _ in CHECKS:
            try:
                table[name][check] = function(prefix)
            except (subprocess.TimeoutExpired, OSError) as exc:
                table[name][check] = f"error: {exc}"
    names = list(found)
    width = max(len(check) for check, _, _ in CHECKS)
    columns = [max(len(n), *(len(table[n][c]) for c, _, _ in CHECKS)) for n in names]
    header = f"{'check':<{width}}  {'wanted':<16}  " + "  ".join(
        f"{n:<{w}}" for n, w in zip(names, columns, strict=True)
    )
    print(header)
    print("-" * len(header))
    for check, _, wanted in CHECKS:
        cells = "  ".join(f"{table[n][check]:<{w}}" for n, w in zip(names, columns, strict=True))
        print(f"{check:<{width}}  {wanted:<16}  {cells}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        document = {"launchers": {n: found[n] for n in names}, "results": table, "notes": notes}
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
