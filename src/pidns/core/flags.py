"""CLONE_* flag values (include/uapi/linux/sched.h) and their textual form.

The scenario language writes flags without the ``CLONE_`` prefix, joined by ``|``.
"""

from __future__ import annotations

CSIGNAL = 0x000000FF
VM = 0x00000100
FS = 0x00000200
FILES = 0x00000400
SIGHAND = 0x00000800
PIDFD = 0x00001000
PTRACE = 0x00002000
VFORK = 0x00004000
PARENT = 0x00008000
THREAD = 0x00010000
NEWNS = 0x00020000
SYSVSEM = 0x00040000
SETTLS = 0x00080000
PARENT_SETTID = 0x00100000
CHILD_CLEARTID = 0x00200000
DETACHED = 0x00400000
UNTRACED = 0x00800000
CHILD_SETTID = 0x01000000
NEWCGROUP = 0x02000000
NEWUTS = 0x04000000
NEWIPC = 0x08000000
NEWUSER = 0x10000000
NEWPID = 0x20000000
NEWNET = 0x40000000
IO = 0x80000000
NEWTIME = 0x00000080  # shares a bit with CSIGNAL; valid for unshare and clone3 only

BY_NAME: dict[str, int] = {
    "VM": VM,
    "FS": FS,
    "FILES": FILES,
    "SIGHAND": SIGHAND,
    "PIDFD": PIDFD,
    "PTRACE": PTRACE,
    "VFORK": VFORK,
    "PARENT": PARENT,
    "THREAD": THREAD,
    "NEWNS": NEWNS,
    "SYSVSEM": SYSVSEM,
    "SETTLS": SETTLS,
    "PARENT_SETTID": PARENT_SETTID,
    "CHILD_CLEARTID": CHILD_CLEARTID,
    "DETACHED": DETACHED,
    "UNTRACED": UNTRACED,
    "CHILD_SETTID": CHILD_SETTID,
    "NEWCGROUP": NEWCGROUP,
    "NEWUTS": NEWUTS,
    "NEWIPC": NEWIPC,
    "NEWUSER": NEWUSER,
    "NEWPID": NEWPID,
    "NEWNET": NEWNET,
    "IO": IO,
    "NEWTIME": NEWTIME,
}

# Every non-user namespace flag: creating any of them needs CAP_SYS_ADMIN
# (kernel/nsproxy.c:copy_namespaces, unshare_nsproxy_namespaces).
NEW_NAMESPACES = NEWNS | NEWUTS | NEWIPC | NEWPID | NEWNET | NEWCGROUP | NEWTIME


def parse(text: str) -> int:
    """``"NEWPID|NEWUSER"`` -> the flag word; ``"0"`` -> 0. Raises ValueError on unknown names."""
    text = text.strip()
    if text == "0":
        return 0
    value = 0
    for part in text.split("|"):
        name = part.strip().upper().removeprefix("CLONE_")
        if name not in BY_NAME:
            raise ValueError(f"unknown clone flag {part.strip()!r}")
        value |= BY_NAME[name]
    return value
