"""User namespaces for unprivileged callers: who is privileged, and the id maps.

Creating a pid or mount namespace needs CAP_SYS_ADMIN in the caller's user namespace
(kernel/nsproxy.c:copy_namespaces). Without it, pidns creates a user namespace in the same
clone3 call; the new pid namespace is then owned by it (kernel/pid_namespace.c:
create_pid_namespace) and the child holds every capability there (kernel/user_namespace.c:
create_user_ns, set_cred_user_ns).

The child writes its own maps, as ``unshare --map-root-user`` does: one line mapping its
own uid, which an unprivileged writer may do once it has denied setgroups
(kernel/user_namespace.c:new_idmap_permitted, proc_setgroups_write).

Why a user namespace is refused, and the fix: linux/diagnose.py.
"""

from __future__ import annotations

import os

CAP_SYS_ADMIN = 21  # include/uapi/linux/capability.h

MAP_ROOT = "root"  # the caller becomes uid 0 / gid 0 inside
MAP_CURRENT = "current"  # the caller keeps its uid and gid inside
MAPPINGS = (MAP_ROOT, MAP_CURRENT)


def self_status(status_path: str = "/proc/self/status") -> tuple[bool, int]:
    """(whether the caller holds CAP_SYS_ADMIN in its own user namespace (CapEff), its
    number of threads), from one read of /proc/self/status."""
    privileged, threads = False, 1
    with open(status_path, "rb") as f:
        for line in f:
            if line.startswith(b"CapEff:"):
                privileged = bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
    return privileged, threads


def has_cap_sys_admin() -> bool:
    """Whether the caller holds CAP_SYS_ADMIN in its own user namespace."""
    return self_status()[0]


def id_maps(mapping: str, uid: int, gid: int) -> tuple[str, str]:
    """The uid_map and gid_map lines for ``mapping`` of the caller's ``uid`` and ``gid``."""
    if mapping == MAP_ROOT:
        return f"0 {uid} 1\n", f"0 {gid} 1\n"
    if mapping == MAP_CURRENT:
        return f"{uid} {uid} 1\n", f"{gid} {gid} 1\n"
    raise ValueError(f"unknown id mapping {mapping!r} (expected one of {', '.join(MAPPINGS)})")


def write_id_maps(mapping: str, uid: int, gid: int, pid: str = "self") -> None:
    """Write /proc/PID/{setgroups,uid_map,gid_map} for a user namespace just created."""
    uid_map, gid_map = id_maps(mapping, uid, gid)
    for name, text in (("setgroups", "deny"), ("uid_map", uid_map), ("gid_map", gid_map)):
        fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
