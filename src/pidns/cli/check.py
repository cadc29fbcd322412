"""``pidns sim``, ``pidns check`` and ``pidns demo``: scenarios on the model and the kernel.

Exit statuses: 0 every scenario ran with no divergence and every expectation met;
1 a divergence, a failed expectation or a backend that could not run a scenario;
2 bad usage or a scenario that cannot be read (nothing runs then); 125 the real
backend could not make its world at all; 127 ``--svg``/``--png`` without graphviz.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from pidns.cli.options import HELP, UsageError, check_known, integer, last, scan, usage_error
from pidns.core.exits import (
    EXIT_FAIL,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_USAGE,
)
from pidns.linux import features
from pidns.model import profiles
from pidns.scenario import report
from pidns.scenario.ast import Scenario, Step
from pidns.scenario.backend import Backend, ScenarioError, WorldError, run
from pidns.scenario.compare import Verdict, judge, judge_release
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse, parse_file

_COMMON = """\
  --json         print one JSON document
  -v, --verbose  print every step
  -h, --help     show this help"""

USAGE = {
    "sim": f"""\
usage: pidns sim [--json] [-v] [--svg OUT] [--png OUT] [--world-level N] FILE...

Run scenarios on the model only.

options:
  --svg OUT          picture the model after the scenario (graphviz)
  --png OUT          the same picture as PNG
  --world-level N    kernel level of the world (default: 1)
{_COMMON}""",
    "check": f"""\
usage: pidns check [--json] [-v] [--random N] [--seed SEED] [--steps STEPS]
                   [--save DIR] [--profile RELEASE] [--kernel IMAGE] [FILE...]

Run scenarios on the model and on the kernel; report divergences.

options:
  --random N         check N random scenarios
  --seed SEED        seed of the random scenarios (default: time)
  --steps STEPS      steps per random scenario (default: 14)
  --save DIR         where shrunk reproducers of random divergences go
                     (default: pidns-divergences)
  --profile RELEASE  model the kernel as this release (default: the release it reports)
  --kernel IMAGE     boot this kernel image under qemu and check there, in one boot
{_COMMON}""",
    "demo": f"""\
usage: pidns demo [--json] [-v]

The seed's login flow on the model and the kernel, side by side.

options:
{_COMMON}""",
}
_FLAGS = ("--json", "-v", "--verbose", *HELP)
_VALUED = {
    "sim": ("--svg", "--png", "--world-level"),
    "check": ("--random", "--seed", "--steps", "--save", "--profile", "--kernel"),
    "demo": (),
}

SEED_LOGIN_FLOW = """\
# pidns: Support unsharing the pid namespace (v3.8): unshare takes effect for children
A: unshare NEWPID                 => 0
A: unshare NEWPID                 => EINVAL     # active ns != ns for children
A: getpid                         => 2          # the caller does not move
A: fork -> B
B: getpid                         => 1          # the first child is init of the new ns
B: getppid                        => 0          # its parent does not map
A: fork -> C
C: getpid                         => 2
C: getppid                        => 0          # an "oddball child of pid 0"
B: exit 0
A: state B                        => exiting    # init waits until its namespace is empty
A: wait B nohang                  => none
A: wait C                         => C killed KILL
A: wait B                         => B exited 0
A: fork -> D                      => ENOMEM     # the namespace is dead; D never exists
"""


class SetupError(Exception):
    """The real backend cannot make a world on this machine (one line says why)."""


class Args:
    """The options of sim, check or demo (each accepts only its own)."""

    def __init__(self, name: str, argv: list[str]) -> None:
        self.argv = argv
        options, self.files = scan(argv, _VALUED[name], command=False)
        check_known(options, _FLAGS + _VALUED[name])
        given = {n for n, _ in options}
        self.help = bool(given & set(HELP))
        self.json = "--json" in given
        self.verbose = bool(given & {"-v", "--verbose"})
        self.svg = last(options, "--svg")
        self.png = last(options, "--png")
        self.save = last(options, "--save") or "pidns-divergences"
        self.profile = last(options, "--profile")
        self.kernel = last(options, "--kernel")
        world_level = _number(options, "--world-level", 0)
        self.world_level = 1 if world_level is None else world_level
        self.random = _number(options, "--random", 0)
        self.seed = _number(options, "--seed")
        steps = _number(options, "--steps", 1)
        self.steps = 14 if steps is None else steps
        if name == "demo" and self.files:
            raise UsageError(f"unexpected argument {self.files[0]!r}")


def _number(options: list[tuple[str, str]], name: str, minimum: int | None = None) -> int | None:
    value = last(options, name)
    return None if value is None else integer(name, value, minimum)


class _Worlds:
    """Makes backends whose worlds sit at the same kernel level, and knows the profile of
    the kernel the real backend runs on (``profiles.select``: the running release, or
    ``--profile``)."""

    def __init__(self, override: str | None = None) -> None:
        self.world_level = 1
        self.mapped_uids: frozenset[int] | None = None
        self.probed = False
        self.release = features.release()  # upstream: the profile may turn on the patch
        self.kernel = profiles.select(self.release, override)

    def model(self, profile: str | None = None) -> ModelBackend:
        return ModelBackend(
            world_level=self.world_level, mapped_uids=self.mapped_uids, profile=profile
        )

    def unsupported(self, step: Step) -> str | None:
        """Why the real backend cannot run ``step`` on this kernel, or None."""
        from pidns.scenario import real_world  # noqa: PLC0415 - the kernel side loads on demand

        return real_world.unsupported(step)

    def probe(self) -> None:
        """Learn where the real backend's world sits (its level, the uids it maps) before
        a model is made without it: the random generator's model must be that world's."""
        if not self.probed:
            self.real().close()

    def real(self) -> Backend:
        try:
            from pidns.scenario import real  # noqa: PLC0415 - the kernel side loads on demand
        except ImportError as err:  # pragma: no cover - the module ships with the package
            raise SetupError(f"the real backend is not available: {err}") from None
        try:
            backend: Backend = real.RealBackend()
        except OSError as err:  # no /proc, most often
            raise SetupError(f"the kernel world cannot be made: {err}") from None
        self.probed = True
        self.world_level = int(getattr(backend, "world_level", self.world_level))
        self.mapped_uids = getattr(backend, "mapped_uids", self.mapped_uids)
        return backend


def _run_both(worlds: _Worlds, scenario: Scenario) -> Verdict:
    """The scenario on the model and on the kernel. When its ``%profile`` has other
    semantics than the kernel's release, the kernel is compared with the model of its
    release, and the file's expectations with the model of its profile."""
    real = worlds.real()  # first: it tells the model where its world sits
    own = run(scenario, worlds.model())  # strict: a busy actor is a scenario error
    try:
        if profiles.same_semantics(profiles.get(scenario.profile), worlds.kernel):
            return judge([own, run(scenario, real, strict=False)])
        own.backend = f"model {scenario.profile}"
        model = run(scenario, worlds.model(worlds.kernel.name), strict=False)
        return judge_release(own, model, run(scenario, real, strict=False), worlds.release)
    except WorldError as err:  # never a divergence: the kernel side could not start
        raise SetupError(str(err)) from None


def _emit(verdicts: list[Verdict], as_json: bool, verbose: bool, extra: dict[str, Any]) -> int:
    failed = sum(1 for v in verdicts if not v.ok)
    if as_json:
        document = {
            "scenarios": [report.verdict_json(v) for v in verdicts],
            "summary": {
                "scenarios": len(verdicts),
                "failed": failed,
                "unsupported": sum(1 for v in verdicts if v.ok and v.unsupported),
                "kernel": features.release(),
                **extra,
            },
        }
        print(json.dumps(document, indent=1))
    else:
        for verdict in verdicts:
            print(report.render_text(verdict, verbose))
        ran = len(verdicts)
        tail = f", {failed} failed" if failed else ""
        unsupported = sum(1 for v in verdicts if v.ok and v.unsupported)
        if unsupported:
            tail += f" ({unsupported} unsupported on this kernel)"
        print(f"{ran - failed} of {ran} scenario(s) passed{tail}")
    return EXIT_FAIL if failed else EXIT_OK


def _read_all(paths: list[str]) -> list[Scenario] | None:
    """Parse every file before anything runs (an unreadable file is a ScenarioError too):
    on the first error print it and return None."""
    scenarios = []
    for path in paths:
        try:
            scenarios.append(parse_file(path))
        except ScenarioError as err:
            print(err.render(), file=sys.stderr)
            return None
    return scenarios


def sim(args: Args) -> int:
    if not args.files:
        raise UsageError("give scenario files")
    scenarios = _read_all(args.files)
    if scenarios is None:
        return EXIT_USAGE
    verdicts = []
    for scenario in scenarios:
        try:
            backend = ModelBackend(world_level=args.world_level)
            trace = run(scenario, backend)
        except ScenarioError as err:
            print(err.render(), file=sys.stderr)
            return EXIT_USAGE
        verdicts.append(judge([trace]))
        several = len(scenarios) > 1
        for fmt, out in (("svg", args.svg), ("png", args.png)):
            if out and (status := _picture(backend, out, fmt, scenario.path, several)):
                return status
    return _emit(verdicts, args.json, True if not args.json else args.verbose, {})


def _picture(backend: ModelBackend, out: str, fmt: str, path: str, several: bool) -> int:
    """Draw the model after the scenario with the renderer ``pidns tree`` uses."""
    from pidns.render import graphviz  # noqa: PLC0415 - optional output
    from pidns.render.model_view import from_model  # noqa: PLC0415

    target = out
    if several:  # one picture per scenario: OUT-NAME.svg
        stem, ext = os.path.splitext(out)
        target = f"{stem}-{os.path.splitext(os.path.basename(path))[0]}{ext or '.' + fmt}"
    try:
        graphviz.draw(from_model(backend.kernel, backend.names), target, fmt, title=path)
    except graphviz.GraphvizMissing as err:
        print(f"pidns sim: {err}", file=sys.stderr)
        return EXIT_NOT_FOUND  # as pidns tree: the program `dot` is not found
    except graphviz.GraphvizFailed as err:
        print(f"pidns sim: {err}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as err:
        print(f"pidns sim: cannot write {target}: {err.strerror}", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK


def check(args: Args) -> int:
    if not args.files and args.random is None:
        raise UsageError("give scenario files, or --random N")
    scenarios = _read_all(args.files)
    if scenarios is None:
        return EXIT_USAGE
    if args.kernel is not None:
        return _in_guest(args.kernel, _without_kernel(args.argv), args)
    try:
        worlds = _Worlds(args.profile)
    except ValueError as err:
        raise UsageError(str(err)) from None
    verdicts: list[Verdict] = []
    extra: dict[str, Any] = {}
    try:
        for scenario in scenarios:
            try:
                verdicts.append(_run_both(worlds, scenario))
            except ScenarioError as err:
                print(err.render(), file=sys.stderr)
                return EXIT_USAGE
        if args.random is not None:
            seed = args.seed if args.seed is not None else int(time.time())
            if not args.json:
                print(f"random scenarios: {args.random}, seed {seed}", flush=True)
            found = _random_batch(worlds, args.random, seed, args.steps, args.save, verdicts)
            extra = {"seed": seed, "random": args.random, "reproducers": found}
    except SetupError as err:
        print(f"pidns check: {err}", file=sys.stderr)
        return EXIT_SETUP
    return _emit(verdicts, args.json, args.verbose, extra)


def _without_kernel(argv: list[str]) -> list[str]:
    """``argv`` minus its ``--kernel IMAGE`` (the guest runs the rest as it is)."""
    rest: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--kernel":
            skip = True
        elif not word.startswith("--kernel="):
            rest.append(word)
    return rest


def _in_guest(image: str, argv: list[str], args: Args) -> int:
    """The same check, run by the pidns of this tree inside a booted ``image``."""
    from pidns.linux import guest  # noqa: PLC0415 - only --kernel needs qemu

    save = args.save if args.random is not None else None
    try:
        status, seconds = guest.run(image, ["-m", "pidns", "check", *argv], args.files, save)
    except guest.GuestError as err:
        print(f"pidns check: {err}", file=sys.stderr)
        return EXIT_SETUP
    print(f"pidns check: {image}: {seconds:.1f} s in qemu", file=sys.stderr)
    return status


def _random_batch(
    worlds: _Worlds, count: int, seed: int, steps: int, save: str, verdicts: list[Verdict]
) -> list[str]:
    """Check ``count`` random scenarios; shrink and save each divergent one."""
    from pidns.scenario.generate import generate, shrink  # noqa: PLC0415

    saved: list[str] = []
    for number in range(count):
        rng = random.Random(f"{seed}:{number}")
        name = f"random-{seed}-{number}.pidns"
        worlds.probe()
        text = generate(
            rng,
            steps=steps,
            profile=worlds.kernel.name,
            world_level=worlds.world_level,
            mapped_uids=worlds.mapped_uids,
            unsupported=worlds.unsupported,
        )
        try:
            verdict = _run_both(worlds, parse(text, name))
        except ScenarioError as err:  # the generator's own bug: report, never hide
            raise SetupError(f"generated scenario {name} is invalid: {err}") from None
        if not verdict.ok:
            small = shrink(text, _fails_on(worlds))
            path = _save(save, name, small, seed, number, text)
            saved.append(path)
            again = _run_both(worlds, parse(small, path))
            # a divergence that did not recur on the reproducer is still one: the first
            # run's verdict says where it was
            verdict = again if not again.ok else verdict
        verdicts.append(verdict)
    return saved


def _fails_on(worlds: _Worlds) -> Callable[[str], bool]:
    def still_fails(text: str) -> bool:
        try:
            return not _run_both(worlds, parse(text, "<shrinking>")).ok
        except ScenarioError:
            return False

    return still_fails


def _save(directory: str, name: str, text: str, seed: int, number: int, original: str) -> str:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    steps = len(text.splitlines()) - 1
    before = len(original.splitlines()) - 1
    header = (
        f"# found by: pidns check --random {number + 1} --seed {seed} (scenario {number})\n"
        f"# shrunk from {before} to {steps} steps; rerun: pidns check {path}\n"
    )
    with open(path, "w", encoding="utf-8") as f:
        f.write(header + text)
    return path


def demo(args: Args) -> int:
    worlds = _Worlds()
    try:
        verdict = _run_both(worlds, parse(SEED_LOGIN_FLOW, "seed-login-flow.pidns"))
    except SetupError as err:
        print(f"pidns demo: {err}", file=sys.stderr)
        return EXIT_SETUP
    if args.json:
        print(json.dumps(report.verdict_json(verdict), indent=1))
        return EXIT_OK if verdict.ok else EXIT_FAIL
    print(
        "The seed: unshare(CLONE_NEWPID) moves only the caller's future children; its\n"
        "first child is pid 1 of the new namespace, later ones are oddball children of\n"
        "pid 0, and the creator reaps them. The same scenario, run on the model and on\n"
        "this machine's kernel:\n"
    )
    print(report.side_by_side(verdict))
    print()
    print(report.render_text(verdict))
    return EXIT_OK if verdict.ok else EXIT_FAIL


_COMMANDS: dict[str, Callable[[Args], int]] = {"sim": sim, "check": check, "demo": demo}


def main(name: str, argv: list[str]) -> int:
    prog = f"pidns {name}"
    try:
        args = Args(name, argv)
        if args.help:
            print(USAGE[name])
            return EXIT_OK
        return _COMMANDS[name](args)
    except UsageError as error:
        return usage_error(prog, error)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_FAIL
