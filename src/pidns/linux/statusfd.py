"""``--json-status-fd FD``: the run's progress as JSON Lines, in bubblewrap's layout.

bwrap writes one object when the sandbox's child runs and one with its exit code
(bubblewrap.c, ``--json-status-fd``); so does ``pidns run``, with the same kebab-case keys
and values, so a reader of bwrap's stream reads this one unchanged:

    {"child-pid": 19606, "init-pid": 19605, "pid-in-namespace": 2,
     "mnt-namespace": 4026532177, "pid-namespace": 4026532178}      (one line)
    {"exit-code": 3}

``child-pid`` is the command's pid as the launcher sees it; the namespace values are the
nsfs inode numbers (``stat -L /proc/PID/ns/pid``), as bwrap's are, for the namespaces this
run created. ``exit-code`` is the status ``pidns run`` exits with (128+N for signal N).
Every value is an integer, so no json module is needed on the start-up path.
"""

from __future__ import annotations

import os


def created_namespaces(inodes: dict[str, int]) -> dict[str, int]:
    """``{"mnt-namespace": inode, ...}`` for each of ``inodes`` (kind -> nsfs inode, as the
    init reported them) that differs from the caller's own."""
    found: dict[str, int] = {}
    for kind, inode in inodes.items():
        try:
            mine = os.stat(f"/proc/self/ns/{kind}").st_ino
        except OSError:
            continue
        if inode != mine:
            found[f"{kind}-namespace"] = inode
    return found


def line(fields: dict[str, int]) -> bytes:
    """One JSON object on one line (integer values only)."""
    return ("{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}\n").encode()


class StatusFd:
    """The writer: ``started`` once the command runs, ``exited`` at the end. A reader that
    went away (EPIPE) or a closed fd ends the stream quietly; the run goes on."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, fields: dict[str, int]) -> None:
        if self.fd < 0:
            return
        data = line(fields)
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError:
            self.fd = -1

    def started(
        self, command_pid: int, init_pid: int, pid_in_namespace: int, inodes: dict[str, int]
    ) -> None:
        fields = {"child-pid": command_pid}
        if init_pid != command_pid:
            fields["init-pid"] = init_pid
        fields["pid-in-namespace"] = pid_in_namespace
        fields.update(created_namespaces(inodes))
        self.write(fields)

    def exited(self, exit_code: int) -> None:
        self.write({"exit-code": exit_code})
