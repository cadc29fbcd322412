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

Then the features users come to other launchers for (issue 15), each spelled as the peer
that has it spells it, "-" for a peer without it:

- status fd: bwrap's --json-status-fd JSON Lines (the first line's keys, the exit code);
- pid file written before the command runs (the command reads its own pid there);
- timeout: --timeout 0.3 on a command that sleeps (124 as timeout(1));
- rewrite TERM to USR1 (dumb-init's -r): TERM to the namespace's pid 1 (unshare
  forwards nothing to it), the command traps USR1;
- remap exit 3 to 0 (tini's -e);
- dies of the signal that killed the namespace's pid 1 (unshare's way; SIGKILL, the one
  a pid 1 cannot refuse): the launcher's own wait status;
- catchable parent-death signal (unshare --kill-child=HUP, tini -p SIGHUP, bwrap
  --die-with-parent is KILL only): the launcher is SIGKILLed, does the command's HUP
  trap run?
- verbose log of a forwarded signal (tini -vvv, dumb-init -v, pidns -v): TERM to pid 1;
  does the log (stderr; tini's is on stdout) name it?
- socket activation: catatonit rewrites LISTEN_PID only when it names catatonit itself,
  which under unshare (pid 1 inside, another pid outside) it cannot.
- socket activation: LISTEN_PID set to the launcher's pid; does the command see its own?
- unshare's option surface, each row the output of a probe under the options as unshare
  spells them (pidns run takes the same words): -Urpf, -R/-w, -S/-G, --map-user and
  --map-group, --setgroups deny, --propagation slave, --mount-proc=DIR, and
  --kill-child=SIGHUP (the parent-death row again, in unshare's spelling);
- pause (catatonit -P, pidns run --pause): no command; a process joined later (nsenter
  -t PID -p -m, or pidns exec -t PID -m, the joiner each side has) gets pid 2 there, and
  a TERM to pid 1 ends it all with status 0;
- named namespaces (pidns only): run --pause --name, exec --name, stop NAME;
- joining (nsenter, pidns exec), each spelled as nsenter spells it, into a namespace
  held by ``unshare -fp --mount-proc sleep``: -t PID -m, --pid=/proc/PID/ns/pid, -w DIR.

Each check's processes run in a fresh directory, which names them (/proc/PID/cwd).

    python benchmarks/launcher_conformance.py [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
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


def programs() -> dict[str, str | None]:
    names = ("unshare", "tini", "bwrap", "dumb-init", "catatonit")
    return {name: shutil.which(name) for name in names}


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
    paths = programs()
    for name in ("dumb-init", "catatonit"):
        path = paths[name]
        if unshare and path:
            base = [unshare, "-fp", "--mount-proc"] + ([] if root else ["--map-root-user"])
            found[f"unshare ... {name}"] = [*base, path] + (["--"] if name == "catatonit" else [])
        else:
            notes.append(f"{name} not found (apt-get install {name}): skipped")
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


def start_ready(
    prefix: list[str], script: str, cwd: str | None = None, stderr: int = subprocess.DEVNULL
) -> subprocess.Popen[str]:
    """PREFIX sh -c SCRIPT in a session of its own, once SCRIPT has printed its first line."""
    process = subprocess.Popen(
        [*prefix, "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )
    assert process.stdout is not None
    process.stdout.readline()
    return process


def check_killed(prefix: list[str]) -> Result:
    return str(run(prefix, "kill -TERM $$").returncode)


def check_forwards(prefix: list[str]) -> Result:
    mark = marker()
    script = 'trap "exit 7" TERM; echo ready; while :; do sleep 0.02; done'
    process = start_ready(prefix, script, mark)
    process.send_signal(signal.SIGTERM)
    try:
        result = str(process.wait(3))
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        result = "no (still running)"
    cleanup(mark)  # what a launcher that does not forward left running
    if process.stdout is not None:
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


# -- features, each in the spelling of the launchers that have it ---------------------------

Spellings = dict[str, list[str]]  # launcher name -> its prefix with the feature's options


def _pidns() -> list[str]:
    script = Path(sys.executable).with_name("pidns")
    return [str(script)] if script.exists() else [sys.executable, "-m", "pidns"]


def spellings(options: dict[str, list[str]]) -> Spellings:
    """The launchers, each with the options given for it (by the keys of ``launchers()``);
    a launcher without an entry does not have the feature."""
    found, _ = launchers()
    spelled: Spellings = {}
    for name, extra in options.items():
        if name not in found:
            continue
        prefix = found[name]
        if name == "pidns run":
            spelled[name] = [*_pidns(), "run", *extra, "--"]
        elif name.startswith("bwrap"):
            spelled[name] = [*prefix, *extra]
        elif name == "unshare -fp --mount-proc":
            rest = prefix[1:]
            if any(word.startswith("--mount-proc=") for word in extra):
                rest = [word for word in rest if word != "--mount-proc"]  # the row's own
            spelled[name] = [prefix[0], *extra, *rest]
        else:  # unshare ... INIT [--]: the init's options after its name
            init = name.split()[2]  # "unshare ... tini --": tini
            at = next(i for i, word in enumerate(prefix) if word.endswith("/" + init))
            spelled[name] = [*prefix[: at + 1], *extra, *prefix[at + 1 :]]
    return spelled


def _pid_1(launcher: int) -> int:
    """The launcher's child: the namespace's pid 1 (unshare forwards no signal, so a
    feature of the init under it is exercised by signalling the init itself)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{launcher}/task/{launcher}/children") as f:
                found = f.read().split()
        except OSError:
            found = []
        if found:
            return int(found[0])
        time.sleep(0.01)
    return launcher


def feature_status_fd(prefix: list[str]) -> Result:
    read_end, write_end = os.pipe()
    argv = [word.replace("{fd}", str(write_end)) for word in prefix]
    subprocess.run(
        [*argv, "sh", "-c", "exit 3"],
        pass_fds=(write_end,),
        timeout=20,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    os.close(write_end)
    with os.fdopen(read_end) as f:
        lines = [json.loads(line) for line in f.read().splitlines() if line.strip()]
    if not lines:
        return "no lines"
    keys = ",".join(k.replace("-namespace", "") for k in lines[0])
    return f"{keys}; {lines[-1].get('exit-code', '?')}"


def feature_pid_file(prefix: list[str]) -> Result:
    directory = tempfile.mkdtemp(prefix="pidns-conformance-")
    path = os.path.join(directory, "pid")
    argv = [word.replace("{file}", path) for word in prefix]
    script = f'read p < {path}; [ "$p" -gt 0 ] && echo written'
    out = subprocess.run(
        [*argv, "sh", "-c", script], capture_output=True, text=True, timeout=20, check=False
    ).stdout.strip()
    with contextlib.suppress(OSError):
        os.unlink(path)
    os.rmdir(directory)
    return "yes" if out == "written" else "no"


def feature_timeout(prefix: list[str]) -> Result:
    return str(run(prefix, "sleep 30").returncode)


def feature_rewrite(prefix: list[str]) -> Result:
    script = 'trap "exit 10" USR1; trap "exit 15" TERM; echo ready; while :; do sleep 0.02; done'
    process = start_ready(prefix, script)
    os.kill(_pid_1(process.pid), signal.SIGTERM)
    try:
        status = process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return "no (still running)"
    if process.stdout is not None:
        process.stdout.close()
    return "USR1 (10)" if status == 10 else f"no ({status})"


def feature_remap(prefix: list[str]) -> Result:
    return str(run(prefix, "exit 3").returncode)


def feature_die_by_signal(prefix: list[str]) -> Result:
    """SIGKILL to the namespace's pid 1 (the one signal a pid 1 cannot refuse): does the
    launcher die of it too, or exit 137?"""
    process = start_ready(prefix, "echo ready; exec sleep 30")
    os.kill(_pid_1(process.pid), signal.SIGKILL)
    try:
        status = process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        status = process.wait()
    if process.stdout is not None:
        process.stdout.close()
    return f"died of KILL ({status})" if status < 0 else f"exit {status}"


def feature_parent_death(prefix: list[str]) -> Result:
    mark = marker()
    note = os.path.join(mark, "note")
    script = f'trap "echo hup > {note}; exit 0" HUP; echo ready; while :; do sleep 0.02; done'
    process = start_ready(prefix, script, mark)
    process.kill()
    process.wait()
    trapped = wait_until(lambda: os.path.exists(note), SURVIVOR_WAIT)
    with contextlib.suppress(OSError):
        os.unlink(note)
    if process.stdout is not None:
        process.stdout.close()
    cleanup(mark)
    return "HUP trapped" if trapped else "no"


def feature_verbose(prefix: list[str]) -> Result:
    script = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.02; done'
    process = start_ready(prefix, script, stderr=subprocess.PIPE)
    assert process.stderr is not None
    os.kill(_pid_1(process.pid), signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    log = out + err  # tini logs on its stdout, the others on stderr
    named = any(w in log for w in ("TERM", "Terminated", "signal 15", " 15 "))
    return "names it" if named else "no"


def feature_socket_activation(prefix: list[str]) -> Result:
    inner = 'echo "$LISTEN_PID $$"'
    quoted = " ".join(shlex.quote(word) for word in [*prefix, "sh", "-c", inner])
    out = subprocess.run(
        ["sh", "-c", f"LISTEN_FDS=1 LISTEN_PID=$$ exec {quoted}"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout
    words = out.split()
    if len(words) != 2:
        return "?"
    return "own pid" if words[0] == words[1] else "launcher's pid"


def feature_probe(script: str) -> Callable[[list[str]], Result]:
    """A row whose cell is what ``script`` prints (one line) under the options."""

    def probe(prefix: list[str]) -> Result:
        done = run(prefix, script)
        words = " ".join(done.stdout.split())
        return words if done.returncode == 0 and words else f"fails ({done.returncode})"

    probe.__name__ = f"probe {script!r}"
    return probe


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _joiner(prefix: list[str], pid: int) -> list[str]:
    """How each side joins a namespace: pidns exec for pidns, nsenter for the others."""
    if "run" in prefix and prefix[prefix.index("run") - 1] in (*_pidns(), "pidns"):
        return [*_pidns(), "exec", "--target", str(pid), "--mount", "--"]
    return ["nsenter", "--target", str(pid), "--pid", "--mount", "--"]


def feature_pause(prefix: list[str]) -> Result:
    """No command: an init that holds the namespace. A process joined later sees itself
    as pid 2 and pid 1 as the pausing init; TERM to pid 1 ends everything, status 0."""
    mark = marker()
    process = subprocess.Popen(prefix, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               cwd=mark, start_new_session=True)  # fmt: skip
    try:
        init = _pid_1(process.pid)
        if not wait_until(lambda: _comm(init) in ("pidns-init", "catatonit"), 5):
            return f"no init ({_comm(init) or '?'})"
        joined = subprocess.run(
            [*_joiner(prefix, init), "sh", "-c",
             'sleep 1000 >/dev/null 2>&1 & echo "$$ $(cat /proc/1/comm)"'],
            capture_output=True, text=True, timeout=20, check=False, cwd=mark,
        )  # fmt: skip
        os.kill(init, signal.SIGTERM)
        status = process.wait(5)
        left = (
            0 if wait_until(lambda: not alive_with(mark), SURVIVOR_WAIT) else len(alive_with(mark))
        )
        pid, _, comm = joined.stdout.strip().partition(" ")
        return f"joined as {pid or '?'} ({comm or '?'}); TERM: {status}; left {left}"
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return "no (still running)"
    finally:
        cleanup(mark)


def feature_named(prefix: list[str]) -> Result:
    """pidns run --pause --name NAME; pidns exec --name NAME; pidns stop NAME."""
    mark = marker()
    runtime = tempfile.mkdtemp(prefix="pidns-conformance-runtime-")
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime}
    process = subprocess.Popen([*prefix[:-1], "--pause", "--name", "conf"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=mark,
                               env=env, start_new_session=True)  # fmt: skip
    try:
        joined = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not joined:
            done = subprocess.run([*prefix[:-2], "exec", "--name", "conf", "--", "sh", "-c",
                                   'sleep 1000 >/dev/null 2>&1 & echo "$$"'],
                                  capture_output=True, text=True, timeout=20, check=False,
                                  cwd=mark, env=env)  # fmt: skip
            joined = done.stdout.strip()
            if not joined:
                time.sleep(0.05)
        stopped = subprocess.run([*prefix[:-2], "stop", "conf"], capture_output=True,
                                 timeout=30, check=False, env=env).returncode  # fmt: skip
        status = process.wait(5)
        left = len(alive_with(mark))  # stop returned once nothing of the namespace was left
        return f"joined as {joined or '?'}; stop: {stopped}; left {left}; run: {status}"
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return "no (still running)"
    finally:
        cleanup(mark)
        shutil.rmtree(runtime, ignore_errors=True)


def joiners() -> dict[str, list[str]]:
    """The tools that join a namespace, each as its name's prefix (``{pid}``: the target)."""
    found = {"pidns exec": [*_pidns(), "exec"]}
    if shutil.which("nsenter"):
        found["nsenter"] = ["nsenter"]
    return found


def join_probe(options: list[str], script: str) -> Callable[[list[str]], Result]:
    """Join a namespace held by ``unshare -fp --mount-proc sleep`` with ``options``
    (nsenter's spelling, which pidns exec shares); the cell is what ``script`` prints."""

    def probe(prefix: list[str]) -> Result:
        unshare = shutil.which("unshare")
        if unshare is None:
            return "? (no unshare)"
        mark = marker()
        holder = subprocess.Popen([unshare, "-fp", "--mount-proc", "sleep", "1000"], cwd=mark,
                                  start_new_session=True)  # fmt: skip
        try:
            target = _pid_1(holder.pid)
            if not wait_until(lambda: _comm(target) == "sleep", 5):
                return "?"
            words = [word.replace("{pid}", str(target)) for word in options]
            if prefix[0] == "nsenter" and "--pid" not in " ".join(words):
                words = [*words, "--pid"]  # nsenter joins only what it is told to
            done = subprocess.run(
                [*prefix, *words, "--", "sh", "-c", script],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
            out = " ".join(done.stdout.split())
            return out if done.returncode == 0 and out else f"fails ({done.returncode})"
        finally:
            holder.kill()
            holder.wait()
            cleanup(mark)

    return probe


JOINS: list[tuple[str, Callable[[list[str]], Result], str]] = [
    ("join: -t PID -m; $$, pid 1's comm", join_probe(["-t", "{pid}", "-m"],
     'echo "$$ $(cat /proc/1/comm)"'), "2 sleep"),
    ("join: --pid=/proc/PID/ns/pid", join_probe(["--pid=/proc/{pid}/ns/pid"], 'echo "$$"'), "2"),
    # (nsenter's -w and -r take an optional value, given attached; its -r is pidns exec's
    # and unshare's -R: the long names are the same)
    ("join: -t PID -m -w/tmp", join_probe(["-t", "{pid}", "-m", "-w/tmp"], "pwd"), "/tmp"),
    ("join: -t PID -m --root=/ --wd=/usr", join_probe(
        ["-t", "{pid}", "-m", "--root=/", "--wd=/usr"], 'echo "$(pwd) $(cat /proc/1/comm)"'),
     "/usr sleep"),
    ("join: -t PID -m -U --preserve-credentials", join_probe(
        ["-t", "{pid}", "-m", "-U", "--preserve-credentials"], "id -u"), "0"),
]  # fmt: skip


PIDNS, UNSHARE, TINI, BWRAP = (
    "pidns run",
    "unshare -fp --mount-proc",
    "unshare ... tini --",
    "bwrap --unshare-pid",
)
DUMB_INIT, CATATONIT = "unshare ... dumb-init", "unshare ... catatonit"

FEATURES: list[tuple[str, Callable[[list[str]], Result], str, dict[str, list[str]]]] = [
    ("status fd (bwrap's JSON lines)", feature_status_fd, "keys; 3",
     {PIDNS: ["--json-status-fd", "{fd}"], BWRAP: ["--json-status-fd", "{fd}"]}),
    ("pid file before the command runs", feature_pid_file, "yes",
     {PIDNS: ["--pid-file", "{file}"]}),
    ("timeout 0.3 s (timeout(1)'s 124)", feature_timeout, "124",
     {PIDNS: ["--timeout", "0.3"]}),
    ("rewrite TERM to USR1", feature_rewrite, "USR1 (10)",
     {PIDNS: ["--rewrite-signal", "TERM:USR1"], DUMB_INIT: ["-r", "15:10"]}),
    ("remap exit 3 to 0", feature_remap, "0",
     {PIDNS: ["--remap-exit", "3"], TINI: ["-e", "3"]}),
    ("dies of pid 1's signal (KILL)", feature_die_by_signal, "died of KILL (-9)",
     {PIDNS: ["--die-by-signal"], UNSHARE: []}),
    ("catchable parent-death signal", feature_parent_death, "HUP trapped",
     {PIDNS: ["--parent-death-signal", "HUP"], UNSHARE: ["--kill-child=SIGHUP"],
      TINI: ["-p", "SIGHUP"]}),
    ("verbose log of a forwarded TERM", feature_verbose, "names it",
     {PIDNS: ["-v"], TINI: ["-vvv"], DUMB_INIT: ["-v"]}),
    ("socket activation: LISTEN_PID", feature_socket_activation, "own pid",
     {PIDNS: [], CATATONIT: [], TINI: [], DUMB_INIT: []}),
    ("-Urpf: uid, $$", feature_probe('echo "$(id -u) $$"'), "0 (1 or 2)",
     {PIDNS: ["-Urpf"], UNSHARE: ["-Urpf"]}),
    ("-R / -w /usr: pwd", feature_probe("pwd"), "/usr",
     {PIDNS: ["-R", "/", "-w", "/usr"], UNSHARE: ["-R", "/", "-w", "/usr"]}),
    ("-S 1 -G 1: uid gid", feature_probe('echo "$(id -u) $(id -g)"'), "1 1",
     {PIDNS: ["-S", "1", "-G", "1"], UNSHARE: ["-S", "1", "-G", "1"]}),
    ("--map-user=1000 --map-group=1000", feature_probe('echo "$(id -u) $(id -g)"'),
     "1000 1000", {PIDNS: ["--map-user=1000", "--map-group=1000"],
                   UNSHARE: ["--map-user=1000", "--map-group=1000"]}),
    ("-U --setgroups deny", feature_probe("cat /proc/self/setgroups"), "deny",
     {PIDNS: ["-U", "--setgroups", "deny"], UNSHARE: ["-U", "--setgroups", "deny"]}),
    ("-r --setgroups deny", feature_probe("cat /proc/self/setgroups"), "deny",
     {PIDNS: ["-r", "--setgroups", "deny"], UNSHARE: ["-r", "--setgroups", "deny"]}),
    # (a slave of a private mount is private: the host's / decides what a slave shows)
    ("--propagation slave: /'s tags", feature_probe(
        "awk '$5 == \"/\" { t = \"\"; for (i = 7; $i != \"-\"; i++) t = t $i \" \"; "
        "print (t == \"\") ? \"private\" : t }' /proc/self/mountinfo"),
     "as the host's /", {PIDNS: ["--propagation", "slave"],
                         UNSHARE: ["--propagation", "slave"]}),
    ("--mount-proc=/mnt: pid 1 there", feature_probe("cat /mnt/1/comm"), "pid 1's comm",
     {PIDNS: ["--mount-proc=/mnt"], UNSHARE: ["--mount-proc=/mnt"]}),
    ("--kill-child=SIGHUP (unshare's)", feature_parent_death, "HUP trapped",
     {PIDNS: ["--kill-child=SIGHUP"], UNSHARE: ["--kill-child=SIGHUP"]}),
    ("pause, joined later (catatonit -P)", feature_pause,
     "joined as 2 (the init); TERM: 0; left 0",
     {PIDNS: ["--pause"], CATATONIT: ["-P"]}),
    ("named: run --name, exec --name, stop", feature_named,
     "joined as 2; stop: 0; left 0; run: 0", {PIDNS: []}),
]  # fmt: skip


def join_table() -> dict[str, dict[str, Result]]:
    """Each joiner's cell of each JOINS row."""
    table: dict[str, dict[str, Result]] = {}
    for tool, prefix in joiners().items():
        table[tool] = {}
        for check, function, _ in JOINS:
            try:
                table[tool][check] = function(prefix)
            except (subprocess.TimeoutExpired, OSError) as exc:
                table[tool][check] = f"error: {exc}"
    return table


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
    rows = [(check, wanted) for check, _, wanted in CHECKS]
    for feature, function, wanted, options in FEATURES:
        rows.append((feature, wanted))
        spelled = spellings(options)
        for name in found:
            if name not in spelled:
                table[name][feature] = "-"
                continue
            try:
                table[name][feature] = function(spelled[name])
            except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
                table[name][feature] = f"error: {exc}"
    names = list(found)
    width = max(len(check) for check, _ in rows)
    columns = [max(len(n), *(len(table[n][c]) for c, _ in rows)) for n in names]
    wide = max(len(w) for _, w in rows)
    header = f"{'check':<{width}}  {'wanted':<{wide}}  " + "  ".join(
        f"{n:<{w}}" for n, w in zip(names, columns, strict=True)
    )
    print(header)
    print("-" * len(header))
    for check, wanted in rows:
        cells = "  ".join(f"{table[n][check]:<{w}}" for n, w in zip(names, columns, strict=True))
        print(f"{check:<{width}}  {wanted:<{wide}}  {cells}")
    joined = join_table()
    tools = list(joiners())
    width = max(len(check) for check, _, _ in JOINS)
    print()
    print(f"{'joining':<{width}}  {'wanted':<8}  " + "  ".join(f"{t:<14}" for t in tools))
    for check, _, wanted in JOINS:
        cells = "  ".join(f"{joined[t][check]:<14}" for t in tools)
        print(f"{check:<{width}}  {wanted:<8}  {cells}")
    for note in notes:
        print(f"note: {note}")
    if args.json:
        document = {"launchers": {n: found[n] for n in names}, "results": table, "notes": notes,
                    "joins": joined}  # fmt: skip
        print(json.dumps(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
