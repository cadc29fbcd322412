"""The init's status channel (pidns.linux.status_channel): every message kind survives
encode -> the pipe -> decode, and a line of any other shape is refused, not guessed at."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from pidns.linux import status_channel as sc

RUN_MD = Path(__file__).resolve().parent.parent / "docs" / "run.md"

EVERY_KIND = [
    sc.HelperSpawned(4321),
    sc.CloneFailed(1),
    sc.Failed(127, 2, "exec", "command not found"),
    sc.Failed(125, 13, "user_namespace", "Permission denied"),
    sc.Ready(2, 4242, 1_000_000),
    sc.Ready(2, 0, 5),  # a kernel without NS_GET_PID_IN_PIDNS: host pid unknown
    sc.Stopped(20),
    sc.MapsWanted(),
    sc.Survivor(5, 1200, b"sleep\x00100"),
    sc.Survivor(7, 0, b""),  # a kernel thread's or a zombie's empty command line
    sc.Namespaces({"mnt": 4026532177, "pid": 4026532178}),
    sc.Namespaces({}),
    sc.Report(15, 1, 2, 3, 0, 0, [], [], False),
    sc.Report(256, 10, 20, 30, 4, 2, [7, 8], [15, 2], True),
    sc.Reaped(0),
    sc.Reaped(9),  # killed by SIGKILL
]


def test_the_round_trip_cases_cover_every_kind_the_channel_carries() -> None:
    assert {type(m) for m in EVERY_KIND} == set(sc._KINDS.values())


def test_the_docs_name_every_kind() -> None:
    (row,) = [
        line for line in RUN_MD.read_text().splitlines() if line.startswith("| `status_channel`")
    ]
    named = re.findall(r"`([A-Z])`", row)
    assert sorted(named) == sorted(sc._KINDS), row


@pytest.mark.parametrize("message", EVERY_KIND, ids=repr)
def test_every_message_kind_round_trips(message: sc.Message) -> None:
    line = sc.encode(message)
    assert "\n" not in line and line[0] == message.KIND
    assert sc.decode(line) == message


def test_the_wire_format_is_the_documented_one() -> None:
    assert sc.encode(sc.Ready(2, 4242, 1000)) == "R 2 4242 1000"
    assert sc.encode(sc.Report(15, 1000, 2000, 3000, 1, 0, [], [15], False)) == (
        "X 15 1000 2000 3000 1 0 - 15 -"
    )
    assert sc.encode(sc.Namespaces({"pid": 5})) == "N pid=5"
    assert sc.encode(sc.Failed(127, 2, "exec", "command not found")) == (
        "F 127 2 exec\tcommand not found"
    )
    assert (sc.encode(sc.HelperSpawned(9)), sc.encode(sc.CloneFailed(28))) == ("P 9", "C 28")
    assert sc.encode(sc.Survivor(3, 40, b"sh\x00-c")) == "K 3 40 7368002d63"
    assert sc.encode(sc.Reaped(256)) == "W 256"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Q 1",
        "R",
        "M 1",
        "R 1 2",
        "R a b c",
        "X 1 2 3",
        "X 1 2 3 4 5 6 x,y - -",
        "X 1 2 3 4 5 6 - -",
        "X 1 2 3 4 5 6 - - x",
        "N pid",
        "N =3",
        "F 1 2 exec",
        "T",
        "R1 2 3",
        "K 1 2",
        "K 1 2 zz",
        "K 1 2 - 4",
        "W",
        "W 1 2",
    ],
)
def test_a_malformed_line_is_refused(line: str) -> None:
    with pytest.raises(sc.ChannelError):
        sc.decode(line)


def test_messages_cross_a_pipe_whole_across_partial_reads() -> None:
    read_end, write_end = os.pipe()
    reader = sc.Reader(read_end)
    try:
        data = "".join(sc.encode(m) + "\n" for m in EVERY_KIND).encode()
        os.write(write_end, data[:4])  # half a line: nothing complete yet
        os.set_blocking(read_end, False)
        assert reader.messages(block=False) == []
        os.write(write_end, data[4:])
        for message in EVERY_KIND[:3]:
            sc.send(write_end, message)
        os.close(write_end)
        write_end = -1
        assert reader.messages(block=False) == EVERY_KIND + EVERY_KIND[:3]
        assert reader.fd == -1  # EOF closed it
    finally:
        reader.close()
        if write_end >= 0:
            os.close(write_end)
