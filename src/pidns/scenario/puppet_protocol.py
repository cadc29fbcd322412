"""The puppet channel: what the real backend's runner and its puppets say to each other,
over one SOCK_SEQPACKET socket per puppet (one message per command or reply). The one
home of its wire format; ``encode_*`` and ``decode_*`` are inverses
(tests/test_puppet_protocol.py).

Commands (runner -> puppet), ASCII words: the command word of an op and its arguments,
as the op registry types them (pidns.scenario.ops: ``PuppetCall.fields``), or ``drain``
(take the caught signals now; no reply). Commands never carry descriptors.

Replies (puppet -> runner), ASCII words:

=====================  =========================================================
``I <n>``              a number (a pid, or 0 for success); a fork or clone reply
                       carries the child's pidfd and the runner's end of its channel
``L <n>,<n>,...``      numbers (pidfd_info's pid, tgid, ppid; a clone with
                       ``keep``: the child's pid and the pidfd number it keeps)
``E <errno>``          the call failed
``N``                  wait: nothing to collect (WNOHANG)
``X <pid> <code>``     wait: a child exited (pid as the puppet sees it)
``K <pid> <signal>``   wait: a child was killed
``C <sig>:<pid>,...``  caught: the signals taken since the last ``caught``
``B``                  the call blocks; ``D <reply>`` follows when it completes
``U <why>``            a step a Python process cannot perform (UnsupportedStep)
``! <why>``            a bug in the puppet
=====================  =========================================================

The world's init has a control socket of its own: the runner sends ``go`` once the id
maps are written; the init answers ``A`` with A's pidfd.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

from pidns.core import wire
from pidns.scenario.ops import PUPPET_COMMANDS, Field

DRAIN = "drain"  # take the caught signals now (the runner's settle); no reply
GO = "go"  # control: the id maps are written, start A
FIRST_CHILD = "A"  # control: A's pidfd comes with it
BORN = "born"  # a new puppet's first message without pidfds: "born HOST INNER" (its pids)
MAX_MESSAGE = 4096


class ProtocolError(ValueError):
    """A message that is not one of this protocol's."""


# ---- commands -------------------------------------------------------------------------


def _field(kind: Field, value: object) -> str:
    if kind is Field.INTS:
        return wire.ints(value)
    if kind is Field.INT:
        assert isinstance(value, int)
        return str(value)
    text = str(value)
    if not text or any(c.isspace() for c in text):
        raise ProtocolError(f"a word argument must be one word, not {text!r}")
    return text


def _parse_field(kind: Field, text: str) -> object:
    if kind is Field.INTS:
        return tuple(wire.parse_ints(text))
    if kind is Field.INT:
        return int(text)
    return text


def _fields(word: str) -> tuple[Field, ...]:
    """The argument types of command ``word``, as the registry gives them."""
    if word == DRAIN:
        return ()
    if word in PUPPET_COMMANDS:
        return PUPPET_COMMANDS[word].fields
    raise ProtocolError(f"unknown puppet command {word!r}")


def encode_command(word: str, values: Sequence[object] = ()) -> str:
    """The message for command ``word`` with ``values`` typed as the registry says."""
    fields = _fields(word)
    if len(values) != len(fields):
        raise ProtocolError(f"{word} takes {len(fields)} arguments, not {len(values)}")
    return " ".join([word, *(_field(k, v) for k, v in zip(fields, values, strict=True))])


def decode_command(text: str) -> tuple[str, tuple[object, ...]]:
    """``(word, values)`` of a command message."""
    word, *words = text.split(" ")
    fields = _fields(word)
    if len(words) != len(fields):
        raise ProtocolError(f"{word} takes {len(fields)} arguments: {text!r}")
    try:
        return word, tuple(_parse_field(k, w) for k, w in zip(fields, words, strict=True))
    except ValueError:
        raise ProtocolError(f"malformed {word} command: {text!r}") from None


# ---- replies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Number:
    value: int


@dataclass(frozen=True, slots=True)
class Numbers:
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Errno:
    errno: int


@dataclass(frozen=True, slots=True)
class NothingToCollect:
    pass


@dataclass(frozen=True, slots=True)
class Exited:
    pid: int
    code: int


@dataclass(frozen=True, slots=True)
class Killed:
    pid: int
    signal: int


@dataclass(frozen=True, slots=True)
class Caught:
    items: tuple[tuple[int, int], ...]  # (signal, sender's pid as the receiver saw it)


@dataclass(frozen=True, slots=True)
class Blocks:
    pass


@dataclass(frozen=True, slots=True)
class Done:
    """A blocked call completed: its reply."""

    reply: Reply


@dataclass(frozen=True, slots=True)
class Unsupported:
    why: str


@dataclass(frozen=True, slots=True)
class Broken:
    why: str


Reply = (
    Number
    | Numbers
    | Errno
    | NothingToCollect
    | Exited
    | Killed
    | Caught
    | Blocks
    | Done
    | Unsupported
    | Broken
)


def encode_reply(reply: Reply) -> str:
    if isinstance(reply, Number):
        return f"I {reply.value}"
    if isinstance(reply, Numbers):
        return "L " + ",".join(str(v) for v in reply.values)
    if isinstance(reply, Errno):
        return f"E {reply.errno}"
    if isinstance(reply, NothingToCollect):
        return "N"
    if isinstance(reply, Exited):
        return f"X {reply.pid} {reply.code}"
    if isinstance(reply, Killed):
        return f"K {reply.pid} {reply.signal}"
    if isinstance(reply, Caught):
        return "C " + ",".join(f"{sig}:{pid}" for sig, pid in reply.items)
    if isinstance(reply, Blocks):
        return "B"
    if isinstance(reply, Done):
        if isinstance(reply.reply, Blocks | Done):
            raise ProtocolError("a completion carries a final reply")
        return "D " + encode_reply(reply.reply)
    if isinstance(reply, Unsupported):
        return f"U {reply.why}"
    return f"! {reply.why}"


def decode_reply(text: str) -> Reply:
    kind, _, rest = text.partition(" ")
    try:
        if kind == "I":
            return Number(int(rest))
        if kind == "L":
            return Numbers(tuple(int(v) for v in rest.split(",") if v))
        if kind == "E":
            return Errno(int(rest))
        if kind == "N" and not rest:
            return NothingToCollect()
        if kind == "B" and not rest:
            return Blocks()
        if kind == "X":
            pid, code = rest.split(" ")
            return Exited(int(pid), int(code))
        if kind == "K":
            pid, sig = rest.split(" ")
            return Killed(int(pid), int(sig))
        if kind == "C":
            pairs = (item.split(":") for item in rest.split(",") if item)
            return Caught(tuple((int(sig), int(pid)) for sig, pid in pairs))
        if kind == "D":
            inner = decode_reply(rest)
            if isinstance(inner, Blocks | Done):
                raise ValueError("nested")
            return Done(inner)
        if kind == "U":
            return Unsupported(rest)
        if kind == "!":
            return Broken(rest)
    except ValueError:
        raise ProtocolError(f"malformed reply: {text!r}") from None
    raise ProtocolError(f"not a puppet reply: {text!r}")


# ---- the socket -------------------------------------------------------------------------


def send(sock: socket.socket, text: str, fds: Sequence[int] = ()) -> None:
    """One message, with file descriptors attached (SCM_RIGHTS) when given."""
    data = text.encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[str, list[int]]:
    """One message and the descriptors that came with it; ``("", [])`` at end of file."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 4)
    return data.decode(), fds
