"""Steps and values of the scenario language, shared by the parser and both backends.

Values are carried as canonical strings, exactly as the language writes them
(``"0"``, ``"2"``, ``"EINVAL"``, ``"[1, 7]"``, ``"B exited 3"``, ``"C killed KILL"``,
``"none"``, ``"blocks"``, ``"[USR1 from 0]"``, ``"zombie"``, ``"skipped"``), so that a
result, an expectation and a trace line compare by string equality. The helpers below
build those strings; backends never format values by hand.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field


class Op(enum.StrEnum):
    FORK = "fork"
    CLONE = "clone"
    UNSHARE = "unshare"
    SETNS = "setns"
    GETPID = "getpid"
    GETPPID = "getppid"
    GETPGID = "getpgid"
    GETSID = "getsid"
    SETSID = "setsid"
    PIDOF = "pidof"
    NSPID = "nspid"
    EXIT = "exit"
    WAIT = "wait"
    KILL = "kill"
    SIGNAL = "signal"
    CAUGHT = "caught"
    SUBREAPER = "subreaper"
    SETUID = "setuid"
    STATE = "state"
    # threads (a thread is named like a process, and acts like one)
    THREAD = "thread"
    GETTID = "gettid"
    EXIT_THREAD = "exit_thread"
    EXEC = "exec"
    # pidfds (a second kind of name)
    PIDFD = "pidfd"
    PIDFD_SEND_SIGNAL = "pidfd_send_signal"
    WAITID = "waitid"
    PIDFD_SETNS = "pidfd_setns"
    PIDFD_INFO = "pidfd_info"
    FDINFO = "fdinfo"
    # blocked signals, pid_max, process groups of others, the nsfs ioctls
    BLOCK = "block"
    UNBLOCK = "unblock"
    PENDING = "pending"
    PID_MAX = "pid_max"
    SETPGID = "setpgid"
    NSPARENT = "nsparent"
    NS_PID_IN = "ns_pid_in"
    NS_PID_FROM = "ns_pid_from"


class Disposition(enum.StrEnum):
    CATCH = "catch"
    IGNORE = "ignore"
    DEFAULT = "default"


class State(enum.StrEnum):
    RUNNING = "running"
    EXITING = "exiting"
    ZOMBIE = "zombie"
    REAPED = "reaped"


@dataclass(frozen=True, slots=True)
class Args:
    """The parsed arguments of one step; which fields are set depends on the op."""

    flags: int = 0  # clone, unshare
    set_tid: tuple[int, ...] = ()  # clone
    exit_signal: int | None = None  # clone ... exit_signal=SIG (None: SIGCHLD)
    # a process or thread name: setns, pidof, nspid, wait, kill, state, getpgid, getsid,
    # pidfd, setpgid (who), nsparent, ns_pid_in and ns_pid_from (whose namespace)
    target: str | None = None
    other: str | None = None  # setpgid (the group), ns_pid_in (whose pid)
    pidfd: str | None = None  # a pidfd name: pidfd_send_signal, waitid, pidfd_setns, ...
    thread: bool = False  # pidfd TARGET thread: PIDFD_THREAD
    keep_pidfd: str | None = None  # clone ... pidfd=NAME: CLONE_PIDFD, the pidfd bound
    # kill NUMBER, exit CODE, setuid UID, pid_max N, ns_pid_from NUMBER
    number: int | None = None
    pid_for_children: bool = False  # setns ... pid_for_children
    nohang: bool = False  # wait ... nohang
    pgrp: bool = False  # wait pgrp [TARGET]: waitpid(0) or waitpid(-PGID)
    nowait: bool = False  # wait ... nowait: WNOWAIT (never blocks)
    wall: bool = False  # wait ... wall: __WALL
    signal: int = 0  # kill, signal, block, unblock, pidfd_send_signal
    disposition: Disposition | None = None  # signal
    on: bool = False  # subreaper


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a scenario: ``ACTOR: OP ARG... [-> NAME] [=> EXPECTED]``."""

    index: int  # 0-based position among the steps
    line: int  # 1-based line number in the file
    actor: str
    op: Op
    args: Args
    text: str  # the source line, without its comment
    bind: str | None = None  # -> NAME
    expected: str | None = None  # canonical value, or None when not given


@dataclass(frozen=True, slots=True)
class Scenario:
    path: str
    steps: tuple[Step, ...]
    profile: str = "6.18"
    names: tuple[str, ...] = ("A",)  # every process and thread name, in order ("A" first)
    threads: frozenset[str] = frozenset()  # the names of threads (made by ``thread``)
    pidfds: frozenset[str] = frozenset()  # the names of pidfds (``pidfd``, ``clone pidfd=``)


@dataclass(frozen=True, slots=True)
class ProcessSnapshot:
    """One named process after a step: what ``check`` compares between backends."""

    state: str  # a State value
    parent: str  # "root", a process name, "-" once reaped (or when the parent is unnamed: "?")
    nspid: tuple[int, ...]  # from the world's level inwards; () once reaped


Snapshot = dict[str, ProcessSnapshot]


@dataclass(frozen=True, slots=True)
class Completion:
    """A blocked call that completed during a later step."""

    step_index: int  # the step that blocked
    actor: str
    result: str


@dataclass(slots=True)
class Outcome:
    """What a backend reports for one step."""

    result: str
    completions: list[Completion] = field(default_factory=list)


# ---- canonical values -----------------------------------------------------------------

OK = "0"
NONE = "none"
BLOCKS = "blocks"
SKIPPED = "skipped"


def pid_value(pid: int) -> str:
    return str(pid)


def list_value(items: Iterable[object]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def exited(name: str, code: int) -> str:
    return f"{name} exited {code}"


def killed(name: str, signame: str) -> str:
    return f"{name} killed {signame}"


def signals_value(names: Iterable[str]) -> str:
    """``["USR1", "TERM"]`` -> ``"[USR1, TERM]"``: a list of signals (``pending``)."""
    return list_value(names)


def caught_value(items: Sequence[tuple[str, int | str]]) -> str:
    """``[("USR1", 0)]`` -> ``"[USR1 from 0]"``. The model may give a pid as ``"4|5"``:
    either of them (signals that merged, from senders that raced)."""
    return list_value(f"{sig} from {pid}" for sig, pid in items)


def matches(value: str, other: str) -> bool:
    """``value`` equals ``other``, where an ``A|B`` alternative in ``value`` (the model's
    way of saying "the kernel may keep either") matches either number."""
    if value == other:
        return True
    if "|" not in value or not (value.startswith("[") and other.startswith("[")):
        return False
    mine, theirs = value[1:-1].split(", "), other[1:-1].split(", ")
    if len(mine) != len(theirs):
        return False
    for a, b in zip(mine, theirs, strict=True):
        head, _, choices = a.rpartition(" ")
        b_head, _, b_pid = b.rpartition(" ")
        if a != b and not (head == b_head and b_pid in choices.split("|")):
            return False
    return True
