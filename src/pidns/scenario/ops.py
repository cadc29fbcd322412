"""The op registry: one entry per operation of the scenario language.

Each entry (``OpSpec``) holds everything about an op that is not the semantics of the
call itself:

- its argument grammar (``params``; the parser reads every op with it) and ``usage``;
- the kinds of value it yields (``results``; the parser checks expectations against it);
- whether it binds a new name (``binds``: fork and clone a process, thread a thread,
  pidfd a pidfd: ``makes``);
- its *answered without a call* rule (``no_call``; the runner applies it before any
  backend sees the step): lookups are observations, and a kill, wait or setns naming a
  process the actor cannot see, or one already reaped, has its result fixed by the
  language (docs/scenario-language.md: "Decided");
- the command the real backend sends a puppet for it (``puppet``; the puppet decodes
  its arguments with the same table), whether the call leaves a settled world
  settled (``quiet``), and the kernel features its call needs there (``needs``, rows of
  pidns.linux.features: without one the step is unsupported on that kernel, unless the
  kernel answers the lack itself, as the model of that release does: see
  pidns.scenario.real_world.unsupported);
- its weight and a sampler for the random generator;
- a one-line summary, for the docs' op table (tests/test_ops.py checks the docs list
  every op with its usage).

Adding an op is one entry here, an ``Op`` member in ast.py, and its semantics in each
backend: ``ModelBackend._perform`` and a ``Puppet`` handler (docs/architecture.md).
"""

from __future__ import annotations

import enum
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pidns.core import errnos
from pidns.core import flags as cf
from pidns.core.abi import WALL
from pidns.scenario import ast
from pidns.scenario.ast import Op, Step

ESRCH = errnos.name(errnos.number("ESRCH"))
ECHILD = errnos.name(errnos.number("ECHILD"))
EBADF = errnos.name(errnos.number("EBADF"))
PIDFD_THREAD = 0o200  # O_EXCL: include/uapi/linux/pidfd.h (6.9)


class Kind(enum.StrEnum):
    """The kinds of value a step can yield (``blocks`` and ``skipped`` fit every op)."""

    NUMBER = "a number"
    ERRNO = "an errno"
    LIST = "a list"
    WAIT = "a wait result"
    STATE = "a state"


# ---- argument grammar ---------------------------------------------------------------------


class P(enum.Enum):
    """What one argument is; the parser turns each into ``ast.Args`` fields."""

    TARGET = "a process or thread name (root too)"
    PIDFD = "a pidfd name (made by pidfd, or clone ... pidfd=NAME)"
    KEEP_PIDFD = "pidfd=NAME: CLONE_PIDFD, binding NAME to the child's pidfd"
    TARGET_OR_NUMBER = "a process name, or a number passed as it is"
    NUMBER = "an integer in a range"
    FLAGS = "clone flags joined by |, or 0"
    SET_TID = "set_tid=N,N,..."
    EXIT_SIGNAL = "exit_signal=SIG"
    SIGNAL = "a signal name or number"
    CHOICE = "one of a few words"
    KEYWORD = "a literal word that sets a flag"


@dataclass(frozen=True, slots=True)
class Param:
    """One argument: its kind, the ``Args`` field it sets, whether it may be left out.

    NUMBER: ``low``..``high``, named ``what`` in errors. SIGNAL: ``zero`` allows 0.
    CHOICE: ``words`` maps each word to the field's value. KEYWORD: the word in
    ``words`` sets the field to its value. TARGET: ``any_word`` is read as no target.
    """

    kind: P
    field: str
    optional: bool = False
    low: int = 0
    high: int = 0
    what: str = ""
    zero: bool = False
    words: tuple[tuple[str, object], ...] = ()
    any_word: str | None = None


def _choice(field: str, *words: tuple[str, object], optional: bool = False) -> Param:
    return Param(P.CHOICE, field, optional=optional, words=words)


# ---- answered without a call ----------------------------------------------------------------


class Observer(Protocol):
    """What the runner may ask a backend about its world, between steps."""

    def pid_seen_by(self, actor: str, target: str) -> int:
        """TARGET's pid in ACTOR's active pid namespace; 0 if invisible or reaped."""

    def state_of(self, name: str) -> str:
        """A ``State`` value (root: ``running``)."""

    def nspid_of(self, name: str) -> tuple[int, ...]:
        """NAME's pid at each level from the world's inwards (``()`` once reaped)."""

    def holds(self, actor: str, pidfd: str) -> bool:
        """ACTOR's process has the pidfd in its descriptor table (its opener's, copied by
        every later fork, shared by CLONE_FILES and by the process's threads)."""

    def fdinfo(self, actor: str, pidfd: str) -> tuple[int, ...]:
        """The NSpid line of the pidfd's /proc/PID/fdinfo read through the procfs of the
        world's parent level, from the world's level inwards; ``(-1,)`` once its task is
        gone (fs/pidfs.c:pidfd_show_fdinfo)."""


NoCall = Callable[[Step, Observer], str | None]


def _target(step: Step) -> str:
    assert step.args.target is not None
    return step.args.target


def _pidof(step: Step, world: Observer) -> str:
    return ast.pid_value(world.pid_seen_by(step.actor, _target(step)))


def _nspid(step: Step, world: Observer) -> str:
    name = step.args.target or step.actor
    if world.state_of(name) == ast.State.REAPED:
        return ESRCH  # Decided: its pids may belong to other processes by now
    return ast.list_value(world.nspid_of(name))


def _state(step: Step, world: Observer) -> str:
    return world.state_of(_target(step))


def _setns(step: Step, world: Observer) -> str | None:
    """A reaped TARGET has no /proc/PID/ns to open (its pid may be another's): ESRCH."""
    return ESRCH if world.state_of(_target(step)) == ast.State.REAPED else None


def _wait(step: Step, world: Observer) -> str | None:
    """A TARGET the actor cannot see, or one reaped, is not its child (nor its group's
    leader's pid a number to name): ECHILD."""
    if step.args.target is None:
        return None
    return ECHILD if world.pid_seen_by(step.actor, step.args.target) == 0 else None


def _kill(step: Step, world: Observer) -> str | None:
    """A TARGET (or other name) the actor cannot see, or one reaped, has no pid: ESRCH."""
    for name in (step.args.target, step.args.other):
        if name is not None and world.pid_seen_by(step.actor, name) == 0:
            return ESRCH
    return None


def _pidfd(step: Step) -> str:
    assert step.args.pidfd is not None
    return step.args.pidfd


def _held(step: Step, world: Observer) -> str | None:
    """A pidfd the actor's process does not hold is a descriptor it does not have: EBADF."""
    return None if world.holds(step.actor, _pidfd(step)) else EBADF


def _fdinfo(step: Step, world: Observer) -> str:
    return _held(step, world) or ast.list_value(world.fdinfo(step.actor, _pidfd(step)))


def _ns_file(step: Step, world: Observer) -> str | None:
    """TARGET's /proc/PID/ns/pid is opened (a reaped one: ESRCH, as setns); a WHO the
    actor cannot see has no pid to pass: ESRCH."""
    other = step.args.other
    if other is not None and world.pid_seen_by(step.actor, other) == 0:
        return ESRCH
    return _setns(step, world)


# ---- the puppet command -------------------------------------------------------------------


class Field(enum.Enum):
    """How a puppet command's argument travels (pidns.scenario.puppet_protocol)."""

    INT = "int"
    INTS = "ints"  # comma-separated, '-' when empty
    WORD = "word"


class CallContext(Protocol):
    """What the real backend knows that a command's arguments need."""

    def host_pid(self, name: str) -> int:
        """NAME's pid in the runner's /proc (where the puppet opens /proc/PID/ns)."""

    def pid_seen_by(self, actor: str, target: str) -> int: ...

    def pidfd_number(self, actor: str, pidfd: str) -> int:
        """The pidfd's descriptor number in ACTOR's process (which holds it)."""


PuppetArgs = Callable[[Step, CallContext], tuple[object, ...]]


@dataclass(frozen=True, slots=True)
class PuppetCall:
    """The command word a puppet gets for a step, its argument types, and how the real
    backend computes the arguments from the step."""

    word: str
    fields: tuple[Field, ...] = ()
    args: PuppetArgs = lambda _step, _ctx: ()


def _wait_args(step: Step, ctx: CallContext) -> tuple[object, ...]:
    a = step.args
    pid = -1 if a.target is None else ctx.pid_seen_by(step.actor, a.target)
    if a.pgrp:
        pid = -pid if a.target is not None else 0
    flags = (WALL if a.wall else 0) | (os.WNOWAIT if a.nowait else 0)
    return (pid, int(a.nohang or a.nowait), flags)


def _seen(step: Step, ctx: CallContext, name: str | None) -> int:
    return 0 if name is None else ctx.pid_seen_by(step.actor, name)


def _kill_args(step: Step, ctx: CallContext) -> tuple[object, ...]:
    a = step.args
    pid = (a.number or 0) if a.target is None else ctx.pid_seen_by(step.actor, a.target)
    return (pid, a.signal)


def _setns_args(step: Step, ctx: CallContext) -> tuple[object, ...]:
    kind = "pid_for_children" if step.args.pid_for_children else "pid"
    return (ctx.host_pid(_target(step)), kind)


def _signal_args(step: Step, _ctx: CallContext) -> tuple[object, ...]:
    assert step.args.disposition is not None
    return (step.args.signal, step.args.disposition.value)


def _on_pidfd(*more: Callable[[Step], int]) -> PuppetArgs:
    """The pidfd's descriptor number in the actor's process, then ``more`` of the step."""
    return lambda s, c: (c.pidfd_number(s.actor, _pidfd(s)), *(f(s) for f in more))


def _clone_args(step: Step, _ctx: CallContext) -> tuple[object, ...]:
    a = step.args
    signo = -1 if a.exit_signal is None else a.exit_signal
    return (a.flags, a.set_tid, signo, int(a.keep_pidfd is not None))


Needs = Callable[[Step], tuple[str, ...]]


def _needs(*names: str) -> Needs:
    return lambda _step: names


def _pidfd_open_needs(step: Step) -> tuple[str, ...]:
    return ("pidfd_open", "pidfd_thread") if step.args.thread else ("pidfd_open",)


def _clone_needs(step: Step) -> tuple[str, ...]:
    a = step.args
    found: tuple[str, ...] = ()
    if a.keep_pidfd is not None:  # CLONE_PIDFD is 5.2, pidfd_open 5.3: no kernel has one only
        found += ("pidfd_open",)
    if a.set_tid:
        found += ("set_tid",)
    if a.flags & (cf.PARENT | cf.THREAD) and a.exit_signal:
        found += ("clone3",)  # clone3_args_valid refuses it; clone(2) takes it (kernel/fork.c)
    return found


# ---- the random generator -------------------------------------------------------------------

Sampler = Callable[[random.Random, str, str, str], str]
"""``(rng, actor, target, fresh)`` -> the step after ``ACTOR: `` (``target``: another
process that exists, or the actor itself; ``fresh``: the next unused name)."""

CLONE_FLAGS = ["0", "NEWPID", "NEWPID|NEWUSER", "PARENT", "NEWPID|PARENT", "NEWUSER"]
UNSHARE_FLAGS = ["NEWPID", "NEWPID", "NEWPID|NEWUSER", "NEWUSER"]
KILL_SIGNALS = ["KILL", "TERM", "USR1", "USR2", "CHLD", "0", "KILL", "TERM", "STOP", "CONT"]
HANDLED_SIGNALS = ["USR1", "USR2", "TERM", "CHLD"]


def _sample_clone(rng: random.Random, _actor: str, _target: str, fresh: str) -> str:
    flags = rng.choice(CLONE_FLAGS)
    if rng.random() < 0.25:  # numbers chosen at the innermost level(s): clone3 set_tid
        tids = [rng.choice([1, 2, 3, 5, 40, 299, 300])]
        if "NEWPID" in flags and rng.random() < 0.5:
            tids.append(rng.choice([1, 2, 7, 40, 300]))
        return f"clone {flags} set_tid={','.join(map(str, tids))} -> {fresh}"
    if rng.random() < 0.1:  # CLONE_PIDFD: the child's pidfd gets a name of its own
        return f"clone {flags} pidfd=fd{fresh} -> {fresh}"
    return f"clone {flags} -> {fresh}"


def _sample_kill(rng: random.Random, _actor: str, target: str, _fresh: str) -> str:
    sig = rng.choice(KILL_SIGNALS)
    if rng.random() < 0.3:
        return f"kill {rng.choice(['-1', '0', '1', '2', '3'])} {sig}"
    return f"kill {target} {sig}"


def _sample_wait(rng: random.Random, _actor: str, target: str, _fresh: str) -> str:
    who = rng.choice(["", " any", f" {target}"])
    return f"wait{who}" + (" nohang" if rng.random() < 0.5 else "")


def _sample_signal(rng: random.Random, _actor: str, _target: str, _fresh: str) -> str:
    how = rng.choice(["catch", "catch", "ignore", "default"])
    return f"signal {rng.choice(HANDLED_SIGNALS)} {how}"


def _sample_wait_more(rng: random.Random, actor: str, target: str, fresh: str) -> str:
    if rng.random() < 0.6:
        return _sample_wait(rng, actor, target, fresh)
    who = rng.choice(["", " any", f" {target}", " pgrp", f" pgrp {target}"])
    words = [w for w, p in ((" nohang", 0.5), (" nowait", 0.2), (" wall", 0.3)) if rng.random() < p]
    return f"wait{who}" + "".join(words)


PID_MAX_VALUES = [301, 305, 310, 400, 4194304, 300, 4194305]


def _maybe_target(op: str) -> Sampler:
    return lambda rng, _a, target, _f: op + (f" {target}" if rng.random() < 0.5 else "")


def _with_signal(op: str) -> Sampler:
    return lambda rng, _a, _t, _f: f"{op} {rng.choice(HANDLED_SIGNALS)}"


def _sample_pidfd(rng: random.Random, actor: str, target: str, fresh: str) -> str:
    how = " thread" if rng.random() < 0.3 else ""
    return f"pidfd {rng.choice([target, target, actor, 'root'])}{how} -> {fresh}"


def _on(op: str, *words: list[str]) -> Sampler:
    """``op PIDFD WORD...``: the generator passes a pidfd name as the target of an op
    whose first parameter is a pidfd."""
    return lambda rng, _a, pidfd, _f: " ".join(
        word for word in [op, pidfd, *(rng.choice(w) for w in words)] if word
    )


def _bare(op: str) -> Sampler:
    return lambda _rng, _actor, _target, _fresh: op


# ---- the table ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpSpec:
    op: Op
    usage: str  # the arguments as errors and docs write them ("" for none)
    summary: str  # what it yields, for the docs' op table
    results: tuple[Kind, ...]
    params: tuple[Param, ...] = ()
    binds: bool = False  # needs ``-> NAME`` for what it makes
    makes: str = "process"  # what ``-> NAME`` names: a process, a thread or a pidfd
    no_call: NoCall | None = None
    puppet: PuppetCall | None = None  # None: the runner always answers it (a lookup)
    quiet: bool = False  # changes nothing outside its caller that a snapshot shows
    # changes no process but its caller and the child it makes (the real backend
    # settles those two only: kernel/fork.c:copy_process touches no other task)
    local: bool = False
    needs: Needs = lambda _step: ()  # the features (pidns.linux.features) its call needs
    weight: float = 1.0
    sample: Sampler | None = None

    @property
    def name(self) -> str:
        return self.op.value

    @property
    def doc_args(self) -> str:
        """The arguments column of the docs' op table."""
        text = " ".join(part for part in (self.usage, "-> NAME" if self.binds else "") if part)
        return text or "none"

    @property
    def on_pidfd(self) -> bool:
        """Its first argument is a pidfd name (the generator picks one as the target)."""
        return bool(self.params) and self.params[0].kind is P.PIDFD


_PID = Kind.NUMBER, Kind.ERRNO
_TARGET = Param(P.TARGET, "target")

SPECS: dict[Op, OpSpec] = {
    spec.op: spec
    for spec in (
        OpSpec(
            Op.FORK,
            "",
            "the child's pid as the actor sees it, or an errno",
            _PID,
            binds=True,
            puppet=PuppetCall("fork"),
            local=True,
            weight=5,
            sample=lambda _r, _a, _t, fresh: f"fork -> {fresh}",
        ),
        OpSpec(
            Op.CLONE,
            "FLAGS [set_tid=N,N,...] [exit_signal=SIG] [pidfd=NAME]",
            "as `fork`; `set_tid` lists pids from the innermost namespace outwards, "
            "as clone3(2) does; `exit_signal` the child's (`0`: none; default SIGCHLD); "
            "`pidfd=NAME` is CLONE_PIDFD, NAME the child's pidfd, held by the actor",
            _PID,
            params=(
                Param(P.FLAGS, "flags"),
                Param(P.SET_TID, "set_tid", optional=True),
                Param(P.EXIT_SIGNAL, "exit_signal", optional=True),
                Param(P.KEEP_PIDFD, "keep_pidfd", optional=True),
            ),
            binds=True,
            local=True,
            puppet=PuppetCall("clone", (Field.INT, Field.INTS, Field.INT, Field.INT), _clone_args),
            needs=_clone_needs,
            weight=3,
            sample=_sample_clone,
        ),
        OpSpec(
            Op.UNSHARE,
            "FLAGS",
            "`0` or an errno",
            _PID,
            params=(Param(P.FLAGS, "flags"),),
            puppet=PuppetCall("unshare", (Field.INT,), lambda s, _c: (s.args.flags,)),
            quiet=True,
            weight=2,
            sample=lambda rng, _a, _t, _f: f"unshare {rng.choice(UNSHARE_FLAGS)}",
        ),
        OpSpec(
            Op.SETNS,
            "TARGET [pid|pid_for_children]",
            "`0` or an errno; `ESRCH` with no call for a reaped TARGET",
            _PID,
            params=(
                _TARGET,
                _choice(
                    "pid_for_children", ("pid", False), ("pid_for_children", True), optional=True
                ),
            ),
            no_call=_setns,
            puppet=PuppetCall("setns", (Field.INT, Field.WORD), _setns_args),
            quiet=True,
            needs=lambda s: ("pid_for_children",) if s.args.pid_for_children else (),
            weight=1.5,
            sample=lambda rng, _a, target, _f: (
                f"setns {target}{rng.choice(['', ' pid', ' pid_for_children'])}"
            ),
        ),
        *(
            OpSpec(
                op,
                "",
                summary,
                _PID,
                puppet=PuppetCall(op.value),
                quiet=True,
                weight=weight,
                sample=_bare(op.value),
            )
            for op, summary, weight in (
                (Op.GETPID, "the actor's pid in its own namespace, or an errno", 1),
                (Op.GETPPID, "its parent's pid as the actor sees it, `0` if not visible", 1),
                (Op.SETSID, "the new session id, or an errno", 0.7),
            )
        ),
        *(
            OpSpec(
                op,
                "[TARGET]",
                f"TARGET's {what} id (default: the actor's) as the actor sees it, `0` when "
                "its leader is not visible; `ESRCH` with no call for a TARGET it cannot see",
                _PID,
                params=(Param(P.TARGET, "target", optional=True),),
                no_call=_kill,
                puppet=PuppetCall(
                    op.value, (Field.INT,), lambda s, c: (_seen(s, c, s.args.target),)
                ),
                quiet=True,
                weight=0.5,
                sample=_maybe_target(op.value),
            )
            for op, what in ((Op.GETPGID, "process group"), (Op.GETSID, "session"))
        ),
        OpSpec(
            Op.SETPGID,
            "TARGET TARGET",
            "setpgid(WHO, GROUP) with each pid as the actor sees it: `0` or an errno; "
            "`ESRCH` with no call for a name it cannot see",
            _PID,
            params=(_TARGET, Param(P.TARGET, "other")),
            no_call=_kill,
            puppet=PuppetCall(
                "setpgid",
                (Field.INT, Field.INT),
                lambda s, c: (_seen(s, c, s.args.target), _seen(s, c, s.args.other)),
            ),
            quiet=True,
            weight=0.7,
            sample=lambda rng, actor, target, _f: (
                f"setpgid {rng.choice([target, actor])} {rng.choice([target, actor])}"
            ),
        ),
        *(
            OpSpec(
                op,
                "SIG",
                f"`0`: sigprocmask({how}) of the actor",
                _PID,
                params=(Param(P.SIGNAL, "signal"),),
                puppet=PuppetCall(op.value, (Field.INT,), lambda s, _c: (s.args.signal,)),
                quiet=op is Op.BLOCK,  # unblocking delivers what was pending
                weight=1,
                sample=_with_signal(op.value),
            )
            for op, how in ((Op.BLOCK, "SIG_BLOCK"), (Op.UNBLOCK, "SIG_UNBLOCK"))
        ),
        OpSpec(
            Op.PENDING,
            "",
            "the signals pending for the actor (its own and its process's): blocked ones",
            (Kind.LIST,),
            puppet=PuppetCall("pending"),
            quiet=True,
            weight=0.5,
            sample=_bare("pending"),
        ),
        OpSpec(
            Op.PID_MAX,
            "[N]",
            "`/proc/sys/kernel/pid_max` of the actor's active namespace, or `0`/an errno "
            "for writing N",
            _PID,
            params=(
                Param(P.NUMBER, "number", optional=True, low=-(2**31), high=2**31 - 1, what="N"),
            ),
            puppet=PuppetCall(
                "pid_max",
                (Field.INT,),
                lambda s, _c: (-1 if s.args.number is None else s.args.number,),
            ),
            quiet=True,
            weight=0.4,
            sample=lambda rng, _a, _t, _f: (
                "pid_max" + (f" {rng.choice(PID_MAX_VALUES)}" if rng.random() < 0.5 else "")
            ),
        ),
        OpSpec(
            Op.NSPARENT,
            "TARGET",
            "ioctl(NS_GET_PARENT) on TARGET's /proc/PID/ns/pid: `0` or an errno",
            _PID,
            params=(_TARGET,),
            no_call=_setns,
            puppet=PuppetCall("nsparent", (Field.INT,), lambda s, c: (c.host_pid(_target(s)),)),
            quiet=True,
            needs=_needs("ns_get_parent"),
            weight=0.4,
            sample=lambda rng, actor, target, _f: f"nsparent {rng.choice([target, actor, 'root'])}",
        ),
        OpSpec(
            Op.NS_PID_IN,
            "TARGET WHO",
            "ioctl(NS_GET_PID_IN_PIDNS): WHO's pid in TARGET's namespace, or an errno",
            _PID,
            params=(_TARGET, Param(P.TARGET, "other")),
            no_call=_ns_file,
            puppet=PuppetCall(
                "ns_pid_in",
                (Field.INT, Field.INT),
                lambda s, c: (c.host_pid(_target(s)), _seen(s, c, s.args.other)),
            ),
            quiet=True,
            needs=_needs("ns_get_pid"),
            weight=0.4,
            sample=lambda rng, actor, target, _f: (
                f"ns_pid_in {rng.choice([target, actor])} {rng.choice([target, actor])}"
            ),
        ),
        OpSpec(
            Op.NS_PID_FROM,
            "TARGET NUMBER",
            "ioctl(NS_GET_PID_FROM_PIDNS): the task numbered NUMBER in TARGET's namespace, "
            "as the actor sees it, or an errno",
            _PID,
            params=(_TARGET, Param(P.NUMBER, "number", low=0, high=2**31 - 1, what="pid")),
            no_call=_setns,
            puppet=PuppetCall(
                "ns_pid_from",
                (Field.INT, Field.INT),
                lambda s, c: (c.host_pid(_target(s)), s.args.number),
            ),
            quiet=True,
            needs=_needs("ns_get_pid"),
            weight=0.4,
            sample=lambda rng, actor, target, _f: (
                f"ns_pid_from {rng.choice([target, actor])} {rng.choice([1, 2, 3, 4])}"
            ),
        ),
        OpSpec(
            Op.THREAD,
            "",
            "pthread_create(3): the new thread's tid as the actor sees it, or an errno",
            _PID,
            binds=True,
            makes="thread",
            puppet=PuppetCall("thread"),
            needs=_needs("pidfd_thread"),  # the runner watches each thread through one
            weight=2,
            sample=lambda _r, _a, _t, fresh: f"thread -> {fresh}",
        ),
        OpSpec(
            Op.GETTID,
            "",
            "the actor's tid in its own namespace",
            (Kind.NUMBER,),
            puppet=PuppetCall("gettid"),
            quiet=True,
            weight=0.5,
            sample=_bare("gettid"),
        ),
        OpSpec(
            Op.EXIT_THREAD,
            "CODE",
            "`0`: exit(2) of the calling thread only; its process ends with its last thread "
            "(CODE: 0..255)",
            (Kind.NUMBER,),
            params=(Param(P.NUMBER, "number", low=0, high=255, what="exit status"),),
            puppet=PuppetCall("exit_thread", (Field.INT,), lambda s, _c: (s.args.number,)),
            weight=1,
            sample=lambda rng, _a, _t, _f: f"exit_thread {rng.randrange(0, 6)}",
        ),
        OpSpec(
            Op.EXEC,
            "",
            "`0` or an errno: execve(2) of a fresh puppet by the calling thread; every "
            "other thread of its process ends, a thread takes the process's pid (its name "
            "acts for the process, the leader's makes no more steps), caught signals go "
            "back to SIG_DFL and every pidfd closes",
            _PID,
            puppet=PuppetCall("exec"),
            weight=1,
            sample=_bare("exec"),
        ),
        OpSpec(
            Op.PIDFD,
            "TARGET [thread]",
            "pidfd_open(2) of TARGET's pid as the actor sees it (`thread`: PIDFD_THREAD): "
            "`0` or an errno; `ESRCH` with no call for a TARGET it cannot see",
            _PID,
            params=(
                _TARGET,
                Param(P.KEYWORD, "thread", optional=True, words=(("thread", True),)),
            ),
            binds=True,
            makes="pidfd",
            no_call=_kill,
            puppet=PuppetCall(
                "pidfd",
                (Field.INT, Field.INT),
                lambda s, c: (_seen(s, c, s.args.target), PIDFD_THREAD if s.args.thread else 0),
            ),
            quiet=True,
            needs=_pidfd_open_needs,
            weight=1.5,
            sample=_sample_pidfd,
        ),
        OpSpec(
            Op.PIDFD_SEND_SIGNAL,
            "PIDFD SIG",
            "pidfd_send_signal(2) with no siginfo: `0` or an errno; `EBADF` with no call "
            "for a pidfd the actor's process does not hold (so for every pidfd op)",
            _PID,
            params=(Param(P.PIDFD, "pidfd"), Param(P.SIGNAL, "signal", zero=True)),
            no_call=_held,
            puppet=PuppetCall(
                "pidfd_send_signal", (Field.INT, Field.INT), _on_pidfd(lambda s: s.args.signal)
            ),
            needs=_needs("pidfd_open"),
            weight=1.2,
            sample=_on("pidfd_send_signal", KILL_SIGNALS),
        ),
        OpSpec(
            Op.WAITID,
            "PIDFD [nohang]",
            "waitid(P_PIDFD, WEXITED): as `wait`",
            (Kind.WAIT, Kind.ERRNO),
            params=(
                Param(P.PIDFD, "pidfd"),
                Param(P.KEYWORD, "nohang", optional=True, words=(("nohang", True),)),
            ),
            no_call=_held,
            puppet=PuppetCall(
                "waitid", (Field.INT, Field.INT), _on_pidfd(lambda s: int(s.args.nohang))
            ),
            needs=_needs("waitid_pidfd"),
            weight=1,
            sample=_on("waitid", ["", "nohang"]),
        ),
        OpSpec(
            Op.PIDFD_SETNS,
            "PIDFD",
            "setns(pidfd, CLONE_NEWPID): `0` or an errno",
            _PID,
            params=(Param(P.PIDFD, "pidfd"),),
            no_call=_held,
            puppet=PuppetCall("pidfd_setns", (Field.INT,), _on_pidfd()),
            quiet=True,
            needs=_needs("setns_pidfd"),
            weight=0.8,
            sample=_on("pidfd_setns"),
        ),
        OpSpec(
            Op.PIDFD_INFO,
            "PIDFD",
            "ioctl(PIDFD_GET_INFO): `[pid, tgid, ppid]` as the actor's namespace numbers "
            "them, or an errno",
            (Kind.LIST, Kind.ERRNO),
            params=(Param(P.PIDFD, "pidfd"),),
            no_call=_held,
            puppet=PuppetCall("pidfd_info", (Field.INT,), _on_pidfd()),
            quiet=True,
            needs=_needs("pidfd_get_info"),
            weight=0.8,
            sample=_on("pidfd_info"),
        ),
        OpSpec(
            Op.FDINFO,
            "PIDFD",
            "the pidfd's fdinfo `NSpid` from the world's level inwards (read through the "
            "procfs one level up); `[-1]` once its task is gone",
            (Kind.LIST, Kind.ERRNO),
            params=(Param(P.PIDFD, "pidfd"),),
            no_call=_fdinfo,
            weight=0.8,
            sample=_on("fdinfo"),
        ),
        OpSpec(
            Op.PIDOF,
            "TARGET",
            "TARGET's pid in the actor's active namespace, `0` if not visible or reaped",
            (Kind.NUMBER,),
            params=(_TARGET,),
            no_call=_pidof,
            sample=lambda _r, _a, target, _f: f"pidof {target}",
        ),
        OpSpec(
            Op.NSPID,
            "[TARGET]",
            "TARGET's NSpid (default: the actor's) from the world's level inwards; "
            "`ESRCH` once reaped",
            (Kind.LIST, Kind.ERRNO),
            params=(Param(P.TARGET, "target", optional=True),),
            no_call=_nspid,
            sample=lambda rng, _a, target, _f: (
                "nspid" + (f" {target}" if rng.random() < 0.6 else "")
            ),
        ),
        OpSpec(
            Op.EXIT,
            "CODE",
            "`0`; the process ends (CODE: 0..255)",
            (Kind.NUMBER,),
            params=(Param(P.NUMBER, "number", low=0, high=255, what="exit status"),),
            puppet=PuppetCall("exit", (Field.INT,), lambda s, _c: (s.args.number,)),
            weight=3,
            sample=lambda rng, _a, _t, _f: f"exit {rng.randrange(0, 6)}",
        ),
        OpSpec(
            Op.WAIT,
            "[pgrp] [TARGET|any] [nohang] [nowait] [wall]",
            "a wait result, `none`, an errno, or `blocks`; `ECHILD` with no call for a "
            "TARGET the actor cannot see; `pgrp` waits for the actor's (or TARGET's) "
            "process group, `nowait` is WNOWAIT (and WNOHANG), `wall` __WALL",
            (Kind.WAIT, Kind.ERRNO),
            params=(
                Param(P.KEYWORD, "pgrp", optional=True, words=(("pgrp", True),)),
                Param(P.TARGET, "target", optional=True, any_word="any"),
                Param(P.KEYWORD, "nohang", optional=True, words=(("nohang", True),)),
                Param(P.KEYWORD, "nowait", optional=True, words=(("nowait", True),)),
                Param(P.KEYWORD, "wall", optional=True, words=(("wall", True),)),
            ),
            no_call=_wait,
            puppet=PuppetCall("wait", (Field.INT, Field.INT, Field.INT), _wait_args),
            weight=3,
            sample=_sample_wait_more,
        ),
        OpSpec(
            Op.KILL,
            "TARGET|NUMBER SIG",
            "`0` or an errno; `ESRCH` with no call for a TARGET the actor cannot see",
            _PID,
            params=(
                Param(P.TARGET_OR_NUMBER, "target", low=-(2**31), high=2**31 - 1, what="pid"),
                Param(P.SIGNAL, "signal", zero=True),
            ),
            no_call=_kill,
            puppet=PuppetCall("kill", (Field.INT, Field.INT), _kill_args),
            weight=3,
            sample=_sample_kill,
        ),
        OpSpec(
            Op.SIGNAL,
            "SIG catch|ignore|default",
            "`0` or an errno",
            _PID,
            params=(
                Param(P.SIGNAL, "signal"),
                _choice("disposition", *((d.value, d) for d in ast.Disposition)),
            ),
            puppet=PuppetCall("signal", (Field.INT, Field.WORD), _signal_args),
            quiet=True,
            weight=1.5,
            sample=_sample_signal,
        ),
        OpSpec(
            Op.CAUGHT,
            "",
            "the signals caught since the last `caught`, each `SIG from PID`",
            (Kind.LIST,),
            puppet=PuppetCall("caught"),
            quiet=True,
            sample=_bare("caught"),
        ),
        OpSpec(
            Op.SUBREAPER,
            "on|off",
            "`0`: PR_SET_CHILD_SUBREAPER",
            _PID,
            params=(_choice("on", ("on", True), ("off", False)),),
            puppet=PuppetCall("subreaper", (Field.INT,), lambda s, _c: (int(s.args.on),)),
            quiet=True,
            weight=0.7,
            sample=lambda rng, _a, _t, _f: f"subreaper {rng.choice(['on', 'off'])}",
        ),
        OpSpec(
            Op.STATE,
            "TARGET",
            "`running` (also sleeping or stopped), `exiting`, `zombie`, `reaped`",
            (Kind.STATE,),
            params=(_TARGET,),
            no_call=_state,
            sample=lambda _r, _a, target, _f: f"state {target}",
        ),
        OpSpec(
            Op.SETUID,
            "UID",
            "`0` or an errno",
            _PID,
            params=(Param(P.NUMBER, "number", low=0, high=2**32 - 2, what="uid"),),
            puppet=PuppetCall("setuid", (Field.INT,), lambda s, _c: (s.args.number,)),
            quiet=True,
            weight=0.3,
            sample=lambda rng, _a, _t, _f: f"setuid {rng.choice([0, 1000, 65534])}",
        ),
    )
}

# command word -> the puppet call it is, for the puppet's decoder
PUPPET_COMMANDS: dict[str, PuppetCall] = {
    spec.puppet.word: spec.puppet for spec in SPECS.values() if spec.puppet is not None
}


def _keywords() -> frozenset[str]:
    words: set[str] = set()
    for entry in SPECS.values():
        for param in entry.params:
            if param.kind is P.KEYWORD:
                words |= {word for word, _ in param.words}
            if param.any_word is not None:
                words.add(param.any_word)
    return frozenset(words)


# Words of the ops' grammars (``any``, ``nohang``, ``thread``, ...): never names.
KEYWORDS = _keywords()


def spec(op: Op) -> OpSpec:
    return SPECS[op]


def answer_without_call(step: Step, world: Observer) -> str | None:
    """The step's result when the language fixes it with no call, else None."""
    rule = SPECS[step.op].no_call
    return None if rule is None else rule(step, world)


def _check_complete() -> None:
    missing = [op.value for op in Op if op not in SPECS]
    if missing:  # pragma: no cover - a new Op without its entry
        raise AssertionError(f"ops without a registry entry: {', '.join(missing)}")
    for entry in SPECS.values():
        if entry.puppet is None and entry.no_call is None:  # pragma: no cover
            raise AssertionError(f"{entry.name}: neither a puppet call nor a no-call rule")


_check_complete()
