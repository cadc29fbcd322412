"""The word encodings both wire protocols share: the puppet channel
(``pidns.scenario.puppet_protocol``) and the init's status channel
(``pidns.linux.status_channel``). Standard library only, no imports: the status channel
is on ``pidns run``'s start-up path."""

from __future__ import annotations

EMPTY = "-"  # a word must not be empty: an empty list is this


def ints(values: object) -> str:
    """A list of numbers as one word: comma-separated, ``-`` when empty."""
    assert isinstance(values, tuple | list)
    return ",".join(str(int(v)) for v in values) or EMPTY


def parse_ints(word: str) -> list[int]:
    """The inverse of ``ints``; ValueError for a word that is not one."""
    return [] if word == EMPTY else [int(v) for v in word.split(",")]
