"""The status channel: the pipe on which pid 1 (or the launcher's helper) tells the
launcher how the namespace is doing. The one home of its wire format.

One ASCII line per message; the first word names the kind. Times are CLOCK_MONOTONIC
nanoseconds; lists are comma-separated, ``-`` when empty.

=====  =========================================================  ==================
line   fields                                                     sent by
=====  =========================================================  ==================
``P``  ``<host pid of the init>``                                 the helper of a
                                                                  multi-threaded
                                                                  launcher
``C``  ``<errno>``: clone of the init failed                      the helper, or the
                                                                  child when
                                                                  ``become_init``
                                                                  raises
``F``  ``<status> <errno> <stage>\\t<text>``: setup failed         the init
``M``  (no fields): the init waits for the launcher to write its  the init, first
       id maps with newuidmap/newgidmap (subordinate ranges)
``N``  ``<kind>=<inode> ...``: the init's namespaces (asked for   the init, before R
       with ``namespace_inodes``)
``R``  ``<pid in ns> <host pid> <t spawned>``: the command runs   the init
       (``0 0``: the init pauses, with no command: ``--pause``)
``T``  ``<signal>``: the command was stopped by a terminal signal the init
``K``  ``<pid> <age ms> <argv>``: a process alive when the         the init, before X
       shutdown began (argv: its /proc/PID/cmdline in hex, ``-``
       when empty)
``X``  ``<wait status> <t spawned> <t exited> <t done> <orphans>  the init, last
       <killed> <killed pids> <forwarded signals> <flags>``: the
       end (flags: ``t`` the timeout ran out, ``-`` none)
``W``  ``<wait status>``: pid 1 has been reaped (the namespace    the namespace
       is empty)                                                  server, last
=====  =========================================================  ==================

On the namespace server's channel (a SOCK_SEQPACKET socket, one message per record:
pidns.linux.server) the server sends ``P`` with the init's pidfd attached (SCM_RIGHTS),
``C`` if it could not clone, ``R`` for an ``as_pid_1`` command once it has exec'd, and
``W``; the init's own messages may come before its ``P``.

``encode`` and ``decode`` are inverses (tests/test_status_channel.py). No typing or
dataclasses here: this module is on ``pidns run``'s start-up path.
"""

from __future__ import annotations

import os

from pidns.core import wire

TYPE_CHECKING = False  # typing costs `pidns run` start-up time: annotations only
if TYPE_CHECKING:
    from typing import ClassVar


class ChannelError(ValueError):
    """A line that is not a message of this protocol."""


class Message:
    """A message of the status channel: its ``KIND`` letter and its fields, in order."""

    __slots__: tuple[str, ...] = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()  # in wire order (``__slots__`` gets sorted)
    KIND: ClassVar[str] = ""

    def __init__(self, *values: object) -> None:
        if len(values) != len(self.FIELDS):
            raise TypeError(f"{type(self).__name__} takes {len(self.FIELDS)} fields")
        for name, value in zip(self.FIELDS, values, strict=True):
            object.__setattr__(self, name, value)

    def fields(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.fields() == other.fields()

    def __hash__(self) -> int:
        return hash((self.KIND, *map(repr, self.fields())))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(self.FIELDS, self.fields(), strict=True))
        return f"{type(self).__name__}({inner})"


class HelperSpawned(Message):
    """``P``: the helper cloned the init (CLONE_PARENT: the launcher's child)."""

    FIELDS = ("init_pid",)
    __slots__ = FIELDS
    KIND = "P"
    init_pid: int


class CloneFailed(Message):
    """``C``: the init could not be created, or could not start."""

    FIELDS = ("errno",)
    __slots__ = FIELDS
    KIND = "C"
    errno: int


class Failed(Message):
    """``F``: setup failed at ``stage`` (``exec``: the command cannot be executed)."""

    FIELDS = ("status", "errno", "stage", "text")
    __slots__ = FIELDS
    KIND = "F"
    status: int
    errno: int
    stage: str
    text: str


class MapsWanted(Message):
    """``M``: the init has made its user namespace and waits, at the maps gate, for the
    launcher to write the subordinate id maps (only setuid helpers may: userns.py)."""

    FIELDS = ()
    __slots__ = FIELDS
    KIND = "M"


class Namespaces(Message):
    """``N``: the nsfs inode of each of the init's namespaces, by kind (``pid``, ``mnt``...).
    Sent before ``R``: the init may exit as soon as the command does, and its
    /proc/PID/ns links go with it."""

    FIELDS = ("inodes",)
    __slots__ = FIELDS
    KIND = "N"
    inodes: dict[str, int]


class Ready(Message):
    """``R``: the command runs, as pid ``pid_in_ns`` (``host_pid`` 0: not known)."""

    FIELDS = ("pid_in_ns", "host_pid", "t_spawned")
    __slots__ = FIELDS
    KIND = "R"
    pid_in_ns: int
    host_pid: int
    t_spawned: int


class Stopped(Message):
    """``T``: the command was stopped by a terminal signal (SIGTSTP, SIGTTIN, SIGTTOU)."""

    FIELDS = ("signal",)
    __slots__ = FIELDS
    KIND = "T"
    signal: int


class Survivor(Message):
    """``K``: a process still alive when the shutdown began, named from the namespace's
    own /proc: its pid there, its age, its command line (/proc/PID/cmdline, NULs kept)."""

    FIELDS = ("pid", "age_ms", "cmdline")
    __slots__ = FIELDS
    KIND = "K"
    pid: int
    age_ms: int
    cmdline: bytes


class Report(Message):
    """``X``: the namespace is empty; the command's exact wait status and what the init saw."""

    FIELDS = (
        "wait_status",
        "t_spawned",
        "t_exited",
        "t_done",
        "orphans",
        "killed_count",
        "killed_pids",
        "forwarded",
        "timed_out",
    )
    __slots__ = FIELDS
    KIND = "X"
    wait_status: int
    t_spawned: int
    t_exited: int
    t_done: int
    orphans: int
    killed_count: int
    killed_pids: list[int]
    forwarded: list[int]
    timed_out: bool


class Reaped(Message):
    """``W``: the namespace server reaped pid 1 with this wait status."""

    FIELDS = ("wait_status",)
    __slots__ = FIELDS
    KIND = "W"
    wait_status: int


_KINDS: dict[str, type[Message]] = {
    k.KIND: k
    for k in (
        HelperSpawned,
        CloneFailed,
        Failed,
        MapsWanted,
        Namespaces,
        Ready,
        Stopped,
        Survivor,
        Report,
        Reaped,
    )
}


def encode(message: Message) -> str:
    """The line (without its newline) that carries ``message``."""
    if isinstance(message, Failed):
        return f"F {message.status} {message.errno} {message.stage}\t{message.text}"
    if isinstance(message, Namespaces):
        return "N " + " ".join(f"{kind}={inode}" for kind, inode in message.inodes.items())
    if isinstance(message, Survivor):
        return f"K {message.pid} {message.age_ms} {message.cmdline.hex() or '-'}"
    if isinstance(message, Report):
        words = [str(v) for v in message.fields()[:6]]
        words += [wire.ints(message.killed_pids), wire.ints(message.forwarded)]
        words.append("t" if message.timed_out else "-")
        return "X " + " ".join(words)
    return " ".join([message.KIND, *(str(v) for v in message.fields())])


def decode(line: str) -> Message:
    """The message a line carries; ChannelError if it carries none."""
    kind = _KINDS.get(line[:1])
    if kind is not None and not kind.FIELDS and line == kind.KIND:
        return kind()
    if kind is None or line[1:2] != " ":
        raise ChannelError(f"not a status-channel message: {line!r}")
    try:
        if kind is Failed:
            head, tab, text = line.partition("\t")
            _, status, err, stage = head.split(" ")
            if not tab:
                raise ValueError("no text")
            return Failed(int(status), int(err), stage, text)
        words = line.split(" ")[1:]
        if kind is Namespaces:
            inodes = {}
            for word in filter(None, words):
                name, eq, inode = word.partition("=")
                if not (name and eq):
                    raise ValueError("kind=inode")
                inodes[name] = int(inode)
            return Namespaces(inodes)
        if kind is Survivor:
            pid, age_ms, cmdline = words
            raw = b"" if cmdline == "-" else bytes.fromhex(cmdline)
            return Survivor(int(pid), int(age_ms), raw)
        if kind is Report:
            if len(words) != 9 or words[8] not in ("t", "-"):
                raise ValueError("nine fields")
            counts = [int(w) for w in words[:6]]
            lists = wire.parse_ints(words[6]), wire.parse_ints(words[7])
            return Report(*counts, *lists, words[8] == "t")
        return kind(*(int(w) for w in words))
    except (ValueError, TypeError):
        raise ChannelError(f"malformed {kind.__name__} message: {line!r}") from None


def send(channel: int, message: Message) -> None:
    """Write ``message`` as one line (a pipe write of up to PIPE_BUF bytes is atomic)."""
    data = (encode(message) + "\n").encode()
    while data:
        data = data[os.write(channel, data) :]


class Reader:
    """The launcher's end: complete messages from a pipe, across partial reads."""

    __slots__ = ("_buffer", "fd")

    def __init__(self, fd: int) -> None:
        self.fd = fd  # -1 once closed at EOF
        self._buffer = b""

    def messages(self, block: bool) -> list[Message]:
        """Every complete message readable now; with ``block``, wait until one arrives
        (or EOF, which closes the fd). The fd must be blocking when ``block``."""
        found: list[Message] = []
        while self.fd >= 0:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not data:
                self.close()
                break
            self._buffer += data
            *complete, self._buffer = self._buffer.split(b"\n")
            found += [decode(line.decode()) for line in complete]
            if found and block:
                break
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
