"""The puppet channel (pidns.scenario.puppet_protocol): every command of the op registry
and every reply survive encode -> decode; anything else is refused. And the real
backend's call state machine refuses the edges it lacks."""

from __future__ import annotations

import socket
import typing

import pytest

from pidns.scenario import ops
from pidns.scenario import puppet_protocol as wire
from pidns.scenario.backend import BackendError
from pidns.scenario.parser import parse
from pidns.scenario.real_call import Call, CallState

SAMPLES: dict[str, tuple[object, ...]] = {
    ops.Field.INT.value: (0, -1, 4242),
    ops.Field.INTS.value: ((), (1,), (3, 1, 40)),
    ops.Field.WORD.value: ("pid", "pid_for_children", "catch"),
}


def command_samples() -> list[tuple[str, tuple[object, ...]]]:
    found: list[tuple[str, tuple[object, ...]]] = [(wire.DRAIN, ())]
    for word, call in ops.PUPPET_COMMANDS.items():
        for i in range(3):
            found.append((word, tuple(SAMPLES[f.value][i] for f in call.fields)))
    return found


@pytest.mark.parametrize(("word", "values"), command_samples())
def test_every_command_round_trips(word: str, values: tuple[object, ...]) -> None:
    text = wire.encode_command(word, values)
    assert text.split(" ")[0] == word
    assert wire.decode_command(text) == (word, values)


def test_the_wire_form_of_commands() -> None:
    assert wire.encode_command("clone", (0x20000000, (1, 7), -1, 0)) == "clone 536870912 1,7 -1 0"
    assert wire.encode_command("clone", (0, (), 10, 1)) == "clone 0 - 10 1"
    assert wire.encode_command("wait", (-1, 1, 0x40000000)) == "wait -1 1 1073741824"
    assert wire.encode_command("setns", (77, "pid_for_children")) == "setns 77 pid_for_children"
    assert wire.encode_command(wire.DRAIN) == "drain"


@pytest.mark.parametrize(
    "text", ["", "frobnicate", "getpid 1", "wait 1", "wait x 1 0", "clone 0 1,x 0 0", "drain now"]
)
def test_a_malformed_command_is_refused(text: str) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.decode_command(text)


def test_a_command_with_the_wrong_arguments_cannot_be_encoded() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.encode_command("kill", (1,))
    with pytest.raises(wire.ProtocolError):
        wire.encode_command("setns", (1, "two words"))
    with pytest.raises(wire.ProtocolError):
        wire.encode_command("lookup", ())


REPLIES: list[wire.Reply] = [
    wire.Number(0),
    wire.Number(4242),
    wire.Numbers((4, 4, 3)),
    wire.Numbers(()),
    wire.Errno(22),
    wire.NothingToCollect(),
    wire.Exited(3, 0),
    wire.Killed(4, 9),
    wire.Caught(()),
    wire.Caught(((10, 0), (17, 5))),
    wire.Blocks(),
    wire.Done(wire.Exited(3, 7)),
    wire.Done(wire.Errno(10)),
    wire.Unsupported("clone flags VM would share the puppet's memory"),
    wire.Broken("ValueError: bad"),
]


def test_the_round_trip_cases_cover_every_reply_kind() -> None:
    assert {type(r) for r in REPLIES} == set(typing.get_args(wire.Reply))


@pytest.mark.parametrize("reply", REPLIES, ids=repr)
def test_every_reply_round_trips(reply: wire.Reply) -> None:
    assert wire.decode_reply(wire.encode_reply(reply)) == reply


def test_the_wire_form_of_replies() -> None:
    assert wire.encode_reply(wire.Caught(((10, 0), (17, 5)))) == "C 10:0,17:5"
    assert wire.encode_reply(wire.Done(wire.Killed(4, 9))) == "D K 4 9"
    assert wire.encode_reply(wire.NothingToCollect()) == "N"


@pytest.mark.parametrize(
    "text", ["", "Q 1", "I", "I x", "X 1", "K 1 2 3", "C 1", "D B", "D D N", "N 1"]
)
def test_a_malformed_reply_is_refused(text: str) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.decode_reply(text)


def test_a_completion_never_carries_a_block() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.encode_reply(wire.Done(wire.Blocks()))


def test_messages_and_descriptors_cross_a_seqpacket_socket() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours, theirs:
        spare = socket.socket()
        try:
            wire.send(ours, wire.encode_reply(wire.Number(7)), [spare.fileno()])
            text, fds = wire.receive(theirs)
            assert wire.decode_reply(text) == wire.Number(7) and len(fds) == 1
            for fd in fds:
                socket.socket(fileno=fd).close()
        finally:
            spare.close()
        ours.close()
        assert wire.receive(theirs) == ("", [])


def test_a_call_moves_only_along_its_edges() -> None:
    step = parse("A: wait", "t.pidns").steps[0]
    call = Call(step)
    assert call.state is CallState.AWAITED
    call.move_to(CallState.QUEUED)  # sent to a stopped puppet
    call.move_to(CallState.BLOCKED)  # continued, and its wait blocked
    for bad in CallState:
        with pytest.raises(BackendError, match="call blocked ->"):
            call.move_to(bad)
    queued = Call(step, CallState.QUEUED)
    with pytest.raises(BackendError, match="queued -> awaited"):
        queued.move_to(CallState.AWAITED)
