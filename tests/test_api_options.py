"""pidns run's signal and exit options in the Python API (pidns.Popen, pidns.run), on the
real kernel as root and as uid 65534: kill_signal (the shutdown's, and run's timeout
ended by the init), parent_death_signal, rewrite_signals, remap_exit."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

import pidns
from test_run_support import Marker, in_child, needs_root, wait_for

pytestmark = [pytest.mark.real, needs_root]

# a background process that needs a moment after TERM to clean up, and says so on stderr;
# the command exits once the process's trap is set (it makes the file "up")
CAREFUL_CHILD = (
    'd=$(mktemp -d); sh -c "trap \\"sleep 0.2; echo cleaned >&2; exit 0\\" TERM; '
    'touch $d/up; while :; do sleep 0.05; done" & '
    "while [ ! -e $d/up ]; do sleep 0.01; done; rm -r $d; exit 0"
)
TRAPS_USR1 = 'trap "exit 10" USR1; trap "exit 15" TERM; echo ready; while :; do sleep 0.05; done'
SAYS_BYE = 'trap "echo bye; exit 0" TERM; echo hi; while :; do sleep 0.05; done'


def _scenarios() -> dict[str, Any]:
    """Each option once; run as root and as 65534 (in_child)."""
    seen: dict[str, Any] = {}
    seen["remap"] = [
        pidns.run(["sh", "-c", f"exit {code}"], remap_exit=[3, 5]).returncode for code in (3, 4, 5)
    ]
    with pidns.Popen(
        ["sh", "-c", TRAPS_USR1],
        stdout=pidns.PIPE,
        text=True,
        rewrite_signals={signal.SIGTERM: signal.SIGUSR1, signal.SIGINT: 0},
    ) as process:
        assert process.stdout is not None
        ready = process.stdout.readline()
        process.send_signal(signal.SIGINT)  # dropped
        process.terminate()  # arrives as USR1
        seen["rewrite"] = (ready, process.wait(30))
    # the command exits: the process left gets kill_signal (TERM), and the grace to use it
    graceful = pidns.run(
        ["sh", "-c", CAREFUL_CHILD], capture_output=True, text=True,
        kill_signal=signal.SIGTERM, grace=20,
    )  # fmt: skip
    abrupt = pidns.run(["sh", "-c", CAREFUL_CHILD], capture_output=True, text=True)
    # ("Terminated" may come first: sh's word for its sleep, killed by the TERM too)
    seen["kill_signal"] = (graceful.returncode, graceful.stderr.endswith("cleaned\n"),
                           "cleaned" in abrupt.stderr)  # fmt: skip
    started = time.monotonic()
    try:
        pidns.run(
            ["sh", "-c", SAYS_BYE], timeout=0.5, kill_signal=signal.SIGTERM,
            capture_output=True, text=True,
        )  # fmt: skip
        seen["timeout"] = "no timeout"
    except pidns.TimeoutExpired as exc:
        seen["timeout"] = (exc.output, exc.timeout, time.monotonic() - started)
    try:
        pidns.run(["sh", "-c", SAYS_BYE], timeout=0.5, capture_output=True, text=True)
        seen["timeout_kill"] = "no timeout"
    except pidns.TimeoutExpired as exc:  # no kill_signal: SIGKILL, as subprocess kills
        seen["timeout_kill"] = exc.output
    return seen


def _check(seen: dict[str, Any]) -> None:
    assert seen["remap"] == [0, 4, 0]
    assert seen["rewrite"] == ("ready\n", 10)
    assert seen["kill_signal"] == (0, True, False)
    output, timeout, took = seen["timeout"]
    assert output in (b"hi\nbye\n", "hi\nbye\n") and timeout == 0.5 and took >= 0.5
    assert seen["timeout_kill"] in (b"hi\n", "hi\n")


def test_the_run_options_in_the_api_as_root() -> None:
    _check(_scenarios())


def test_the_run_options_in_the_api_as_65534() -> None:
    _check(in_child(_scenarios, nobody=True, timeout=90))


def _dying_caller(sig: int, note: str, cwd: str) -> int:
    """A child starts a namespace whose shell traps HUP, then is SIGKILLed; its status."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            script = (
                f'trap "echo hup > {note}; exit 0" HUP; echo ready; while :; do sleep 0.05; done'
            )
            process = pidns.Popen(
                ["sh", "-c", script], stdout=pidns.PIPE, cwd=cwd, parent_death_signal=sig
            )
            assert process.stdout is not None
            if process.stdout.readline() == b"ready\n":
                os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _parent_death() -> tuple[int, str, list[int], int, bool]:
    with Marker() as marker:
        note = os.path.join(marker.path, "note")
        status = _dying_caller(signal.SIGHUP, note, marker.path)
        trapped = Path(note).read_text() if wait_for(lambda: os.path.exists(note), 30) else ""
        left = marker.survivors()
        os.unlink(note)
        killed = _dying_caller(signal.SIGKILL, note, marker.path)  # the default's behaviour
        gone = marker.survivors() == []
        return status, trapped, left, killed, gone and not os.path.exists(note)


def test_a_catchable_parent_death_signal_reaches_the_namespace() -> None:
    for seen in (
        in_child(_parent_death, subreaper=True),
        in_child(_parent_death, subreaper=True, nobody=True),
    ):
        assert seen == (-signal.SIGKILL, "hup\n", [], -signal.SIGKILL, True)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"kill_signal": 99}, "kill_signal: no signal 99"),
        ({"parent_death_signal": 0}, "parent_death_signal: no signal 0"),
        ({"rewrite_signals": {signal.SIGKILL: 1}}, "rewrite_signals: SIGKILL cannot be caught"),
        ({"rewrite_signals": {15: -1}}, "rewrite_signals: no signal -1"),
        ({"remap_exit": [256]}, "remap_exit: an exit status is 0 to 255, not 256"),
        ({"kill_signal": signal.SIGTERM, "as_pid_1": True}, "as_pid_1 has no init"),
    ],
)
def test_bad_option_values_raise_before_anything_runs(kwargs: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        pidns.Popen(["true"], **kwargs)


def test_a_signal_number_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="kill_signal: a signal number"):
        pidns.Popen(["true"], kill_signal="TERM")  # type: ignore[arg-type]
