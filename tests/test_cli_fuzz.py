"""A fuzz test of the command line: random argv for every subcommand, built from the
options its own --help lists and from hostile values (huge and negative numbers, Unicode
digits, /dev/full, missing and unreadable files, empty strings). Every case must end
within its time limit with a documented status (docs/cli.md) and no traceback, and leave
nothing running.

The seed is printed and can be set: ``PIDNS_FUZZ_SEED=N pytest tests/test_cli_fuzz.py``
replays a run exactly; ``PIDNS_FUZZ_CASES`` sets the cases per subcommand.
"""

from __future__ import annotations

import os
import random
import re
import shlex

import pytest

from pidns.cli import COMMANDS
from test_run_support import Marker, cli_captured, in_child, needs_root

pytestmark = [pytest.mark.real, needs_root]

SEED = int(os.environ.get("PIDNS_FUZZ_SEED", "20261201"))
CASES = int(os.environ.get("PIDNS_FUZZ_CASES", "25"))
# docs/cli.md: every status a subcommand may exit with (128+N: a command killed by N)
DOCUMENTED = {0, 1, 2, 125, 126, 127, 130, 141} | {128 + n for n in range(1, 65)}
VALUES = [
    "",
    "-",
    "0",
    "1",
    "-5",
    "99999999999999999999",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: isdigit() but no pid
    "1.5",
    "nan",
    "inf",
    "x",
    "TERM",
    "SIGKILL",
    "64",
    "/dev/null",
    "/dev/full",
    "/nonexistent/pidns",
    "/etc",
    "/proc/self/status",
    "--",
    "x" * 5000,
    "5:STOP",
]
COMMAND_WORDS = ["true", "false", "sh -c 'exit 3'", "/nonexistent-pidns", "/etc"]
SAFE = {"login-test"}  # runs PAM for real: only its refusals are fuzzed (no valid service)


def _options(name: str) -> list[str]:
    status, out, _ = in_child(lambda: cli_captured([name, "--help"]))
    assert status == 0
    return sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z][-A-Za-z0-9]*)", out)))


def _argv(rng: random.Random, name: str, options: list[str]) -> list[str]:
    words: list[str] = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.random()
        if kind < 0.5 and options:
            option = rng.choice(options)
            if rng.random() < 0.3:
                option += "=" + rng.choice(VALUES)
            words.append(option)
        elif kind < 0.8:
            words.append(rng.choice(VALUES))
        else:
            words.append(rng.choice(options or VALUES) + rng.choice(["", "x", "=", "=="]))
    if name in ("run", "exec") and rng.random() < 0.7:
        words += ["--", *shlex.split(rng.choice(COMMAND_WORDS))]
    if name in SAFE:
        words += ["--service", "pidns-fuzz-no-such-service"]
    return words


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_random_argv_gives_a_documented_status_and_no_traceback(name: str) -> None:
    rng = random.Random(f"{SEED}:{name}")
    print(f"PIDNS_FUZZ_SEED={SEED} ({CASES} cases for {name})")
    options = _options(name)
    for case in range(CASES):
        argv = [name, *_argv(rng, name, options)]
        with Marker() as marker:

            def body(argv: list[str] = argv, where: str = marker.path) -> tuple[int, str, str]:
                os.chdir(where)
                os.close(0)  # nothing to read: a subcommand reading stdin sees EOF
                os.open("/dev/null", os.O_RDONLY)
                return cli_captured(argv)

            shown = shlex.join(["pidns", *argv[:8]])[:300]
            try:
                status, out, err = in_child(body, timeout=60)
            except AssertionError as exc:  # a traceback in the child, or a hang
                raise AssertionError(f"case {case}: {shown}: {exc}") from None
            assert "Traceback" not in out + err, f"case {case}: {shown}\n{err}"
            assert "internal error" not in err, f"case {case}: {shown}\n{err}"
            # run and exec exit with their command's own status (here 0, 1 or 3)
            allowed = DOCUMENTED | ({3} if name in ("run", "exec") else set())
            assert status in allowed, f"case {case}: {shown}: status {status}\n{err}"
            if status == 2:  # bad usage or unreadable input: said on stderr
                assert err.strip(), f"case {case}: {shown}: status 2 and nothing said"
            assert marker.survivors() == [], f"case {case}: {shown}: processes left"
