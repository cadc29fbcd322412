"""Named namespaces: ``pidns run --name NAME`` records its init where ``pidns exec --name``,
``pidns ls`` and ``pidns stop`` find it.

One directory per name under ``environment.runtime_dir()`` ($XDG_RUNTIME_DIR/pidns, or
/run/pidns), mode 0700, holding one file, ``init``: ``key=value`` lines naming the init
(host pid and start time, which together identify a process even once its pid is reused:
field 22 of /proc/PID/stat, fs/proc/array.c:do_task_stat), its namespaces (their nsfs
inodes, as ``/proc/PID/ns/*`` links show them) and the launcher. A process's pid and start
time can only match a dead entry if the pid was reused within the same clock tick.

The entry is taken before the namespace exists, with the launcher alone recorded (see
``reserve``: two launchers cannot take one name); the init is added once it runs. An
entry whose init (or, before that, whose launcher) has gone is stale: whoever reads it
removes it. A reader checks an entry by opening a pidfd of its pid and then reading the
start time: if it matches, the pidfd names that very init, whatever happens next.
"""

from __future__ import annotations

import errno
import os
import select

from pidns import environment

NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
NAME_LIMIT = 64
_FILE = "init"


class RegistryError(OSError):
    """A name that cannot be taken or found; ``str()`` is one line."""

    def __str__(self) -> str:
        return str(self.strerror)


def check_name(name: str) -> str:
    """``name`` if it is one (letters, digits, ``.``, ``_``, ``-``; at most 64; not starting
    with ``.`` or ``-``), else ValueError with the reason."""
    if not name:
        raise ValueError("a namespace name cannot be empty")
    if len(name) > NAME_LIMIT:
        raise ValueError(f"a namespace name has at most {NAME_LIMIT} characters")
    bad = sorted(set(name) - NAME_CHARS)
    if bad:
        raise ValueError(
            f"a namespace name is letters, digits, '.', '_' and '-' (not {bad[0]!r}): {name!r}"
        )
    if name[0] in ".-":
        raise ValueError(f"a namespace name cannot start with {name[0]!r}: {name!r}")
    return name


class Entry:
    """One named namespace, as recorded."""

    __slots__ = ("fields", "name")

    def __init__(self, name: str, fields: dict[str, str]) -> None:
        self.name = name
        self.fields = fields

    def _number(self, key: str) -> int:
        value = self.fields.get(key, "")
        return int(value) if value.isdigit() else 0

    @property
    def pid(self) -> int:
        """The init's host pid (0 while the namespace is being made)."""
        return self._number("pid")

    @property
    def pid_ns(self) -> int:
        """The inode of its pid namespace (0 while being made)."""
        return self._number("pid_ns")

    @property
    def launcher(self) -> int:
        return self._number("launcher")

    def open(self) -> int:
        """A pidfd of the init, checked to be the recorded process; RegistryError if the
        namespace has gone (the entry is then removed) or is still being made."""
        if self.pid:
            pidfd = _checked_pidfd(self.pid, self.fields.get("start"))
            if pidfd >= 0:
                return pidfd
        elif self.launcher:
            pidfd = _checked_pidfd(self.launcher, self.fields.get("launcher_start"))
            if pidfd >= 0:
                os.close(pidfd)
                raise RegistryError(errno.EAGAIN, f"namespace {self.name!r} is still starting")
        remove(self.name, self)
        raise RegistryError(errno.ESRCH, f"namespace {self.name!r} has ended (stale entry removed)")

    def alive(self) -> bool:
        """Whether its init (or, while it is being made, its launcher) still runs."""
        try:
            os.close(self.open())
        except RegistryError as exc:
            return exc.errno == errno.EAGAIN
        return True


def _checked_pidfd(pid: int, start: str | None) -> int:
    """A pidfd of ``pid`` if that process started at ``start``, else -1. The pidfd is opened
    first: once the start time matches, it names that process for good."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return -1
    if start is not None and start_time(pid) == start and not _exited(pidfd):
        return pidfd
    os.close(pidfd)
    return -1


def _exited(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited (kernel/pid.c:pidfd_poll): a
    zombie not yet reaped keeps its pid and start time, but is no namespace to join."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (clock ticks after boot), or None if there is no PID."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        return None


def _directory(name: str) -> str:
    return os.path.join(environment.runtime_dir(), check_name(name))


def _write(path: str, fields: dict[str, str]) -> None:
    """Replace ``path`` at once (rename): a reader sees the old file or the new one."""
    temporary = f"{path}.{os.getpid()}.new"
    with open(temporary, "w", encoding="utf-8") as f:
        f.writelines(f"{key}={value}\n" for key, value in fields.items())
    os.replace(temporary, path)


def reserve(name: str) -> Entry:
    """Take ``name`` for the calling launcher; RegistryError if a live namespace has it."""
    path = _directory(name)
    top = os.path.dirname(path)
    try:
        os.makedirs(top, mode=0o700, exist_ok=True)
    except OSError as exc:
        raise RegistryError(
            exc.errno or errno.EIO,
            f"cannot make the registry of named namespaces {top}: {exc.strerror} "
            "(set XDG_RUNTIME_DIR to a directory of yours)",
        ) from None
    me = os.getpid()
    fields = {"launcher": str(me), "launcher_start": start_time(me) or "0"}
    for _ in range(3):
        # Written aside, then renamed into place: rename(2) takes the name only if nothing
        # is there or an empty directory (fs/namei.c:vfs_rename: ENOTEMPTY otherwise), so
        # two launchers cannot both take it, and a reader never sees it half made.
        aside = os.path.join(top, f".{name}.{me}")
        try:
            os.mkdir(aside, 0o700)
            _write(os.path.join(aside, _FILE), fields)
            os.rename(aside, path)
        except OSError as exc:
            _rmdir(aside)
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise RegistryError(
                    exc.errno or errno.EIO, f"cannot record namespace {name!r}: {exc.strerror}"
                ) from None
            entry = lookup(name)
            if entry is not None and entry.alive():
                running = f" (init pid {entry.pid})" if entry.pid else ""
                raise RegistryError(
                    errno.EEXIST, f"a namespace named {name!r} is running already{running}"
                ) from None
            remove(name, entry)
            continue
        return Entry(name, fields)
    raise RegistryError(errno.EEXIST, f"cannot take the name {name!r}: it keeps being taken")


def record(entry: Entry, init_pid: int) -> None:
    """Add the running init (and its namespaces) to a reserved entry."""
    fields = dict(entry.fields)
    fields["pid"] = str(init_pid)
    fields["start"] = start_time(init_pid) or "0"
    for kind in ("pid", "mnt", "user"):
        try:
            fields[f"{kind}_ns"] = str(os.stat(f"/proc/{init_pid}/ns/{kind}").st_ino)
        except OSError:
            fields[f"{kind}_ns"] = "0"
    _write(os.path.join(_directory(entry.name), _FILE), fields)
    entry.fields = fields


def lookup(name: str) -> Entry | None:
    """The entry recorded under ``name`` (live or stale), or None."""
    path = os.path.join(_directory(name), _FILE)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        if os.path.isdir(os.path.dirname(path)):
            return Entry(name, {})  # a directory without its file: stale
        return None
    except OSError as exc:
        raise RegistryError(
            exc.errno or errno.EIO, f"cannot read namespace {name!r}: {exc.strerror}"
        ) from None
    fields = dict(line.partition("=")[::2] for line in lines if "=" in line)
    return Entry(name, fields)


def find(name: str) -> tuple[Entry, int]:
    """The live entry named ``name`` and a checked pidfd of its init; RegistryError if none."""
    check_name(name)
    entry = lookup(name)
    if entry is None:
        raise RegistryError(errno.ENOENT, f"no namespace named {name!r} (see pidns ls)")
    return entry, entry.open()


def entries() -> list[Entry]:
    """Every live named namespace, by name; stale entries are removed on the way."""
    try:
        names = sorted(os.listdir(environment.runtime_dir()))
    except OSError:
        return []
    found = []
    for name in names:
        try:
            entry = lookup(check_name(name))
        except (ValueError, RegistryError):
            continue
        if entry is not None and entry.pid and entry.alive():
            found.append(entry)
    return found


def remove(name: str, entry: Entry | None) -> None:
    """Remove ``name``'s entry if it is still ``entry`` (not a newer namespace's)."""
    current = lookup(name)
    if current is None:
        return
    if entry is not None and current.fields and current.fields != entry.fields:
        return
    _rmdir(_directory(name))


def _rmdir(path: str) -> None:
    """Remove an entry's directory and what it holds (its file, a rename's leftovers)."""
    try:
        for child in os.listdir(path):
            os.unlink(os.path.join(path, child))
        os.rmdir(path)
    except OSError:
        pass  # another reader removed it first
