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

import errno
import os

CAP_SYS_ADMIN = 21  # include/uapi/linux/capability.h

MAP_ROOT = "root"  # the caller becomes uid 0 / gid 0 inside
MAP_CURRENT = "current"  # the caller keeps its uid and gid inside
MAPPINGS = (MAP_ROOT, MAP_CURRENT)


def self_status(status_path: str = "/proc/self/status") -> tuple[bool, int]:
    """(whether the caller holds CAP_SYS_ADMIN in its own user namespace (CapEff), its
    number of threads), from one read of /proc/self/status."""
    privileged, threads = False, 1
    try:
        f = open(status_path, "rb")  # noqa: SIM115 (closed below)
    except FileNotFoundError:  # no /proc: ask the kernel itself
        return _status_without_proc()
    with f:
        for line in f:
            if line.startswith(b"CapEff:"):
                privileged = bool(int(line.split()[1], 16) >> CAP_SYS_ADMIN & 1)
            elif line.startswith(b"Threads:"):
                threads = int(line.split()[1])
    return privileged, threads


def _status_without_proc() -> tuple[bool, int]:
    """self_status from capget(2) (kernel/capability.c) and the threads Python started
    (a thread started by C code alone is not seen: /proc is the only complete count)."""
    import sys  # noqa: PLC0415 (only without /proc)

    from pidns.linux import syscalls  # noqa: PLC0415

    threading = sys.modules.get("threading")
    threads = threading.active_count() if threading is not None else 1
    return bool(syscalls.effective_capabilities() >> CAP_SYS_ADMIN & 1), threads


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


# -- unshare's full mapping options ---------------------------------------------------------

Range = tuple[int, int, int]  # (inner first id, outer first id, count): one map line


class IdMap:
    """A user namespace to make and how its ids map, as unshare's options say it.

    ``user``/``group``: the inner uid/gid the caller's own maps to (``-r`` 0, ``-c`` its
    own, ``--map-user``). ``users``/``groups``: subordinate ranges (/etc/subuid,
    /etc/subgid), which only the setuid helpers newuidmap/newgidmap may write for an
    unprivileged caller (kernel/user_namespace.c:new_idmap_permitted lets it map nothing
    but its own id); with ranges, the helpers write the caller's own line too.
    ``setgroups``: "allow", "deny" or None (deny when the caller maps its own gid alone:
    the kernel's condition for an unprivileged gid_map, proc_setgroups_write). Nothing
    mapped at all: a user namespace where the caller is the overflow uid (``unshare -U``).
    """

    __slots__ = ("group", "groups", "setgroups", "user", "users")

    def __init__(
        self,
        *,
        user: int | None = None,
        group: int | None = None,
        users: tuple[Range, ...] = (),
        groups: tuple[Range, ...] = (),
        setgroups: str | None = None,
    ) -> None:
        if setgroups not in (None, "allow", "deny"):
            raise ValueError(f"setgroups must be allow or deny, not {setgroups!r}")
        if setgroups == "allow" and group is not None and not groups:
            # the namespace writes its own gid line, which the kernel permits only once
            # setgroups is denied (kernel/user_namespace.c:new_idmap_permitted); unshare
            # refuses the same pair
            raise ValueError(
                "setgroups allow and a map of your own gid exclude each other "
                "(the kernel wants setgroups denied first; --map-groups can allow it)"
            )
        self.user = user
        self.group = group
        self.users = users
        self.groups = groups
        self.setgroups = setgroups

    @classmethod
    def of(cls, mapping: str, uid: int, gid: int) -> IdMap:
        """MAP_ROOT or MAP_CURRENT as an IdMap."""
        if mapping not in MAPPINGS:
            raise ValueError(f"unknown id mapping {mapping!r} (expected one of {MAPPINGS})")
        inner_uid, inner_gid = (0, 0) if mapping == MAP_ROOT else (uid, gid)
        return cls(user=inner_uid, group=inner_gid)

    @property
    def needs_helpers(self) -> bool:
        return bool(self.users or self.groups)

    def setgroups_value(self) -> str | None:
        """What to write to /proc/PID/setgroups before the gid map (None: leave it)."""
        if self.setgroups is not None:
            return self.setgroups
        if self.group is not None and not self.groups:
            return "deny"
        return None

    def uid_lines(self, uid: int) -> list[Range]:
        return _with_hole(self.user, uid, self.users)

    def gid_lines(self, gid: int) -> list[Range]:
        return _with_hole(self.group, gid, self.groups)


def _with_hole(inner: int | None, outer: int, ranges: tuple[Range, ...]) -> list[Range]:
    """The caller's own line plus ``ranges``, each cut around ``inner`` (a map may not name
    an inner id twice: kernel/user_namespace.c:mappings_overlap), as unshare punches a
    hole."""
    lines: list[Range] = [] if inner is None else [(inner, outer, 1)]
    for first, out, count in ranges:
        if inner is not None and first <= inner < first + count:
            below = inner - first
            if below:
                lines.append((first, out, below))
            if count - below - 1:
                lines.append((inner + 1, out + below + 1, count - below - 1))
        else:
            lines.append((first, out, count))
    return lines


def subordinate_range(path: str, uid: int, name: str | None) -> Range:
    """The first range ``path`` (/etc/subuid or /etc/subgid) grants ``uid`` (by number or
    by ``name``), as ``(0, first, count)``: mapped from inner id 0, as ``--map-auto``.
    Raises LookupError naming the file when there is none."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                owner, _, rest = line.strip().partition(":")
                first, _, count = rest.partition(":")
                if owner in (str(uid), name) and first.isdigit() and count.isdigit():
                    return (0, int(first), int(count))
    except OSError as exc:
        raise LookupError(f"cannot read {path}: {exc.strerror}") from None
    who = f"{name} ({uid})" if name else str(uid)
    raise LookupError(f"{path} grants no subordinate ids to {who}")


def map_text(lines: list[Range]) -> str:
    """A uid_map/gid_map's text, every line at once: the kernel takes a single write
    (kernel/user_namespace.c:map_write)."""
    return "".join(f"{a} {b} {c}\n" for a, b, c in lines)


def _write(pid: str, name: str, text: str) -> None:
    fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_setgroups(id_map: IdMap, pid: str = "self") -> None:
    value = id_map.setgroups_value()
    if value is not None:
        _write(pid, "setgroups", value)


def write_own_maps(id_map: IdMap, uid: int, gid: int) -> None:
    """The namespace's side, without helpers: setgroups, then its own uid and gid lines."""
    write_setgroups(id_map)
    for name, lines in (("uid_map", id_map.uid_lines(uid)), ("gid_map", id_map.gid_lines(gid))):
        if lines:
            _write("self", name, map_text(lines))


def run_helpers(id_map: IdMap, pid: int, uid: int, gid: int) -> None:
    """The launcher's side, with subordinate ranges: newuidmap and newgidmap (shadow's
    setuid helpers, which check each range against /etc/subuid and /etc/subgid) write
    PID's maps. Raises OSError with the helper's own words when one refuses."""
    import subprocess  # noqa: PLC0415 (only with subordinate ranges)

    for helper, lines in (
        ("newuidmap", id_map.uid_lines(uid)),
        ("newgidmap", id_map.gid_lines(gid)),
    ):
        if not lines:
            continue
        argv = [helper, str(pid), *(str(n) for line in lines for n in line)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            raise OSError(
                errno.ENOENT, f"{helper} not found (subordinate ids need Debian's uidmap package)"
            ) from None
        if done.returncode != 0:
            words = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise OSError(errno.EPERM, f"{helper} refused: {words}")
