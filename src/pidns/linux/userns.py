"""User namespaces for unprivileged callers: who is privileged, the id maps, and why a
user namespace could not be made.

Creating a pid or mount namespace needs CAP_SYS_ADMIN in the caller's user namespace
(kernel/nsproxy.c:copy_namespaces). Without it, pidns creates a user namespace in the same
clone3 call; the new pid namespace is then owned by it (kernel/pid_namespace.c:
create_pid_namespace) and the child holds every capability there (kernel/user_namespace.c:
create_user_ns, set_cred_user_ns).

The child writes its own maps, as ``unshare --map-root-user`` does: one line mapping its
own uid, which an unprivileged writer may do once it has denied setgroups
(kernel/user_namespace.c:new_idmap_permitted, proc_setgroups_write).
"""

from __future__ import annotations

import errno
import os

CAP_SYS_ADMIN = 21  # include/uapi/linux/capability.h

MAP_ROOT = "root"  # the caller becomes uid 0 / gid 0 inside
MAP_CURRENT = "current"  # the caller keeps its uid and gid inside
MAPPINGS = (MAP_ROOT, MAP_CURRENT)

# (sysctl name, /proc/sys path): the knobs that turn unprivileged user namespaces off.
SYSCTLS = (
    ("user.max_user_namespaces", "/proc/sys/user/max_user_namespaces"),
    ("kernel.unprivileged_userns_clone", "/proc/sys/kernel/unprivileged_userns_clone"),
    (
        "kernel.apparmor_restrict_unprivileged_userns",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ),
)


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


def read_sysctls() -> dict[str, int | None]:
    """The current value of each knob in SYSCTLS; None where the kernel has no such knob."""
    values: dict[str, int | None] = {}
    for name, path in SYSCTLS:
        try:
            with open(path, "rb") as f:
                values[name] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            values[name] = None
    return values


def explain(err: int, sysctls: dict[str, int | None]) -> str:
    """One line naming why a user namespace could not be made or used, and the fix.

    ``err`` is the errno of the failing step (clone3 itself, or writing the maps, or the
    first mount). The knobs, in the order the kernel consults them: user.max_user_namespaces
    is a per-user-namespace limit, 0 refuses every creation with ENOSPC
    (kernel/ucount.c:inc_ucount); Debian's and Ubuntu's kernel.unprivileged_userns_clone=0
    refuses unprivileged ones with EPERM; AppArmor's
    kernel.apparmor_restrict_unprivileged_userns=1 lets the namespace be created but
    denies its capabilities, so the first privileged step fails with EPERM.
    """
    limit = sysctls.get("user.max_user_namespaces")
    if limit == 0:
        return (
            "user namespaces are disabled (sysctl user.max_user_namespaces = 0); "
            "enable them with 'sysctl -w user.max_user_namespaces=15000', or run as root"
        )
    if sysctls.get("kernel.unprivileged_userns_clone") == 0:
        return (
            "unprivileged user namespaces are disabled "
            "(sysctl kernel.unprivileged_userns_clone = 0); enable them with "
            "'sysctl -w kernel.unprivileged_userns_clone=1', or run as root"
        )
    if sysctls.get("kernel.apparmor_restrict_unprivileged_userns") == 1 and err in (
        errno.EPERM,
        errno.EACCES,
    ):
        return (
            "AppArmor restricts unprivileged user namespaces "
            "(sysctl kernel.apparmor_restrict_unprivileged_userns = 1); allow them with "
            "'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' or an AppArmor "
            "profile with the 'userns' rule, or run as root"
        )
    if err == errno.ENOSPC:
        return (
            f"the user namespace limit is reached (sysctl user.max_user_namespaces = {limit}, "
            "or 32 nested levels); raise it with 'sysctl -w user.max_user_namespaces=15000'"
        )
    if err == errno.EPERM:
        return (
            "creating a user namespace is not permitted here (a chroot, or a seccomp "
            "filter such as a container's, refuses it); run as root"
        )
    return f"cannot create a user namespace: {os.strerror(err)}"
