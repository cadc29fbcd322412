"""Finding the pid namespaces visible through /proc, and naming them.

A namespace is found through a process in it (the /proc/PID/ns/pid link names the
task's active namespace: kernel/pid_namespace.c:pidns_get), through a process that made
one with unshare or joined one with setns (its pid_for_children link, which resolves once
the namespace has had an init: pidns_for_children_get), or as the parent of one found so
(NS_GET_PARENT). Each is named by NS_GET_ID where the kernel has it (a 64-bit id, unique
for the boot), else by its nsfs inode; ``Discovery.id_source`` says which.

Levels count from the namespace of the /proc mount (the *root*): a process's ``NSpid``
line lists one pid per level from the mount's namespace down to its own
(fs/proc/array.c:task_state), so its namespace's level is ``len(NSpid) - 1``.

Reading another user's ns links needs ptrace access (fs/proc/namespaces.c:
proc_ns_readlink, PTRACE_MODE_READ_FSCREDS): EACCES otherwise. Such a process is still
placed when that can be done exactly: at level 0 it is in the root (the only namespace
at that level); at level k it is in the known level-k namespace that can see it
(NS_GET_PID_IN_PIDNS gives it a pid there, and a task has a pid only in its own
namespace and the ancestors: kernel/pid.c:pid_nr_ns). What cannot be placed is
counted, not guessed.
"""

from __future__ import annotations

import errno
import os

from pidns.core import flags as cf
from pidns.linux import nsfs, proc
from pidns.linux.nsfs import ID_INODE, ID_NS_GET_ID

TYPE_CHECKING = False  # typing costs `pidns ls` start-up time: annotations only
if TYPE_CHECKING:
    from collections.abc import Callable


class NamespaceError(Exception):
    """A namespace that cannot be found or opened; the message is one line for the user."""


class FoundNamespace:
    """One pid namespace as found. Pids are counted in the /proc mount's namespace."""

    __slots__ = ("child", "id", "init", "inode", "level", "members", "owner", "parent", "path")

    def __init__(self, inode: int, path: str | None = None, child: int | None = None) -> None:
        self.inode = inode
        self.id = inode  # NS_GET_ID once visited, where the kernel has it
        self.level: int | None = None  # below the /proc mount's namespace
        self.parent: int | None = None  # the parent's inode; None: the root, or refused
        self.owner: int | None = None  # the owning user namespace's id (kind of ``id``)
        self.init: int | None = None  # the pid of the process that is pid 1 in it
        self.members: list[int] = []  # processes whose active namespace it is
        self.path = path  # a /proc link that opens it, if it has one
        self.child = child  # else a child's inode, to reach it through NS_GET_PARENT


class Discovery:
    """Every namespace found (by inode, parents before children), and what was not."""

    __slots__ = ("aligned", "briefs", "hidden", "hidden_namespaces", "id_source", "namespaces")

    def __init__(
        self, namespaces: dict[int, FoundNamespace], id_source: str, aligned: bool
    ) -> None:
        self.namespaces = namespaces
        self.id_source = id_source
        self.aligned = aligned  # /proc counts pids in the caller's active namespace
        self.briefs: dict[int, proc.Brief] = {}  # the status files read, by pid
        self.hidden: list[int] = []  # processes whose namespace could not be determined
        self.hidden_namespaces = 0  # of those, the inits: one namespace each

    def by_number(self, number: int) -> FoundNamespace | None:
        """The namespace whose id, or else inode, is ``number``."""
        for ns in self.namespaces.values():
            if ns.id == number:
                return ns
        return self.namespaces.get(number)

    def of_pid(self, pid: int) -> FoundNamespace | None:
        for ns in self.namespaces.values():
            if pid in ns.members:
                return ns
        return None

    def ancestry(self, inode: int) -> list[int]:
        """Inodes from ``inode`` up through its known parents."""
        chain = [inode]
        parent = self.namespaces[inode].parent
        while parent is not None and parent in self.namespaces and parent not in chain:
            chain.append(parent)
            parent = self.namespaces[parent].parent
        return chain


def link_inode(path: str) -> int:
    """The inode that an ns link names: ``pid:[4026531836]`` -> 4026531836."""
    text = os.readlink(path)
    return int(text[text.index("[") + 1 : -1])


def name_of(fd: int) -> tuple[int, str]:
    """``(id, id_source)`` of a namespace fd: NS_GET_ID where the kernel has it, else the inode."""
    ns_id = nsfs.namespace_id(fd)
    if ns_id is None:
        return os.fstat(fd).st_ino, ID_INODE
    return ns_id, ID_NS_GET_ID


def proc_is_callers(root: str = "/proc") -> bool:
    """Whether the procfs at ``root`` counts pids in the caller's active namespace.

    /proc/self exists only where the caller is visible, and its NSpid has one column
    exactly when the mount's namespace is the caller's own (fs/proc/array.c:task_state).
    """
    me = proc.brief("self", root)
    return me is not None and len(me.nspid) == 1


def discover(root: str = "/proc", *, every_status: bool = False) -> Discovery:
    """Find every pid namespace visible through the procfs at ``root``.

    ``every_status`` reads /proc/PID/status of every process (``pidns tree`` needs them);
    otherwise only as many as it takes to find each namespace's level and init.
    """
    finder = _Finder(root)
    found = finder.found
    unreadable = finder.scan()
    for ns in list(found.values()):
        _level_and_init(finder, ns, every_status)
    for ns in list(found.values()):
        if ns.path is None:
            continue
        try:
            fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:  # its last process went away meanwhile
            del found[ns.inode]
            continue
        try:
            finder.visit(fd, ns)
        finally:
            os.close(fd)
    _propagate_levels(found)
    if not _place(finder, unreadable):  # no NS_GET_PID_FROM_PIDNS asked for the inits:
        for ns in found.values():  # look for them among the members
            if ns.init is None:
                _level_and_init(finder, ns, every_status=True)
    discovery = Discovery(
        dict(sorted(found.items(), key=lambda item: _order(item[1]))),
        ID_NS_GET_ID if finder.use_ns_id else ID_INODE,
        finder.aligned,
    )
    discovery.briefs = finder.briefs
    discovery.hidden = finder.hidden
    discovery.hidden_namespaces = sum(
        1 for pid in finder.hidden if (b := finder.briefs.get(pid)) and b.nspid[-1] == 1
    )
    return discovery


class _Finder:
    def __init__(self, root: str) -> None:
        self.root = root
        self.found: dict[int, FoundNamespace] = {}
        self.briefs: dict[int, proc.Brief] = {}
        self.hidden: list[int] = []
        self.use_ns_id = True
        self.aligned = proc_is_callers(root)
        # NS_GET_PID_* take pids in the caller's numbering: usable only if /proc counts so
        self.have_pid_ioctls = self.aligned

    def scan(self) -> list[int]:
        """List /proc; file each process under its namespace. Returns the unreadable."""
        unreadable: list[int] = []
        root, found = self.root, self.found
        for name in sorted(os.listdir(root), key=lambda n: int(n) if n.isdigit() else -1):
            if not name.isdigit():
                continue
            try:
                inode = link_inode(f"{root}/{name}/ns/pid")
            except PermissionError:
                unreadable.append(int(name))
                continue
            except OSError:  # reaped since listed
                continue
            ns = found.get(inode)
            if ns is None:
                ns = found[inode] = FoundNamespace(inode)
            if not ns.members:
                ns.path = f"{root}/{name}/ns/pid"
            ns.members.append(int(name))
            try:  # unshare or setns may have made pid_for_children another namespace
                for_children = link_inode(f"{root}/{name}/ns/pid_for_children")
            except OSError:  # ENOENT until it has had an init; a zombie has none
                continue
            if for_children not in found:
                path = f"{root}/{name}/ns/pid_for_children"
                found[for_children] = FoundNamespace(for_children, path=path)
        return unreadable

    def brief(self, pid: int) -> proc.Brief | None:
        cached = self.briefs.get(pid)
        if cached is None:
            cached = proc.brief(pid, self.root)
            if cached is not None:
                self.briefs[pid] = cached
        return cached

    def name(self, fd: int) -> int:
        ns_id, source = name_of(fd)
        if source == ID_INODE:  # the kernel has no NS_GET_ID: every id is an inode
            self.use_ns_id = False
        return ns_id

    def visit(self, fd: int, ns: FoundNamespace) -> None:
        """Name ``ns`` (open as ``fd``), its owner and its parents, up the chain."""
        ns.id = self.name(fd)
        user_fd = nsfs.related(fd, nsfs.NS_GET_USERNS)
        if user_fd is not None:
            try:
                ns.owner = self.name(user_fd)
            finally:
                os.close(user_fd)
        if ns.init is None and self.have_pid_ioctls:
            ns.init = self.pid_from(fd, 1)
        parent_fd = nsfs.related(fd, nsfs.NS_GET_PARENT)
        if parent_fd is None:
            return
        try:
            inode = os.fstat(parent_fd).st_ino
            ns.parent = inode
            if inode not in self.found:
                parent = self.found[inode] = FoundNamespace(inode, child=ns.inode)
                self.visit(parent_fd, parent)
        finally:
            os.close(parent_fd)

    def pid_from(self, fd: int, pid: int) -> int | None:
        """NS_GET_PID_FROM_PIDNS, None for "no such task"; clears have_pid_ioctls if absent."""
        return self._pid_ioctl(nsfs.pid_from, fd, pid)

    def sees(self, fd: int, pid: int) -> bool:
        """NS_GET_PID_IN_PIDNS: whether namespace ``fd`` gives ``pid`` a number."""
        found = self._pid_ioctl(nsfs.pid_in, fd, pid)
        return found is not None and found > 0

    def _pid_ioctl(self, ask: Callable[[int, int], int], fd: int, pid: int) -> int | None:
        """One of the NS_GET_PID_* ioctls: None for ESRCH (no such task there) and where
        the kernel lacks them (6.11), which also clears have_pid_ioctls."""
        try:
            return ask(fd, pid)
        except OSError as e:
            if e.errno in nsfs.UNSUPPORTED:
                self.have_pid_ioctls = False
            elif e.errno != errno.ESRCH:
                raise
        return None


def _level_and_init(finder: _Finder, ns: FoundNamespace, every_status: bool) -> None:
    """Read members' status: one is enough for the level (and is the init, usually)."""
    gone: list[int] = []
    for pid in ns.members:
        if ns.level is not None and not every_status:
            break
        brief = finder.brief(pid)
        if brief is None:
            gone.append(pid)
            continue
        ns.level = len(brief.nspid) - 1
        if brief.nspid[-1] == 1:
            ns.init = pid
    for pid in gone:
        ns.members.remove(pid)


def _propagate_levels(found: dict[int, FoundNamespace]) -> None:
    """Give member-less namespaces a level from their parent or a child."""
    changed = True
    while changed:
        changed = False
        for ns in found.values():
            if ns.level is not None:
                continue
            parent = found.get(ns.parent) if ns.parent is not None else None
            if parent is not None and parent.level is not None:
                ns.level = parent.level + 1
                changed = True
                continue
            for other in found.values():
                if other.parent == ns.inode and other.level is not None:
                    ns.level = other.level - 1
                    changed = True
                    break


def _place(finder: _Finder, unreadable: list[int]) -> bool:
    """Put processes whose ns link is unreadable into the namespace they must be in;
    the rest go to ``finder.hidden``. Returns whether the pid ioctls were usable."""
    by_level: dict[int, list[FoundNamespace]] = {}
    for ns in finder.found.values():
        if ns.level is not None:
            by_level.setdefault(ns.level, []).append(ns)
    for pid in unreadable:
        brief = finder.brief(pid)
        if brief is None:
            continue  # reaped since listed
        level = len(brief.nspid) - 1
        candidates = by_level.get(level, [])
        home: FoundNamespace | None = None
        if level == 0 and candidates:
            home = candidates[0]  # only the mount's own namespace is at level 0
        elif candidates and finder.have_pid_ioctls:
            home = _seen_by(finder, pid, candidates)
        if home is None:
            finder.hidden.append(pid)
            continue
        home.members.append(pid)
        home.members.sort()
        if brief.nspid[-1] == 1:
            home.init = pid
    return finder.have_pid_ioctls


def _seen_by(finder: _Finder, pid: int, candidates: list[FoundNamespace]) -> FoundNamespace | None:
    """The namespace among ``candidates`` (all at the task's level) that can see ``pid``."""
    for ns in candidates:
        try:
            fd = reopen(finder.found, ns)
        except OSError:
            continue
        try:
            if finder.sees(fd, pid):
                return ns
        finally:
            os.close(fd)
    return None


def _order(ns: FoundNamespace) -> tuple[int, int]:
    return (ns.level if ns.level is not None else 1 << 30, ns.members[0] if ns.members else 0)


def reopen(found: dict[int, FoundNamespace], ns: FoundNamespace) -> int:
    """A new O_RDONLY fd for ``ns``: through its /proc link, or its child's NS_GET_PARENT."""
    if ns.path is not None:
        return os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
    if ns.child is None or ns.child not in found:
        raise OSError(errno.ENOENT, f"no way to open pid namespace {ns.id}")
    child_fd = reopen(found, found[ns.child])
    try:
        parent_fd = nsfs.related(child_fd, nsfs.NS_GET_PARENT)
    finally:
        os.close(child_fd)
    if parent_fd is None:
        raise OSError(errno.EPERM, f"cannot open pid namespace {ns.id}")
    return parent_fd


# ---- naming a namespace on the command line ---------------------------------------------

SPEC_HELP = (
    "a pid namespace: its id as `pidns ls` shows it (or its inode, as lsns shows it), "
    "pid:PID for the namespace of process PID, or the path of an nsfs file "
    "such as /proc/PID/ns/pid"
)


def open_namespace(spec: str, root: str = "/proc") -> int:
    """Open the pid namespace that ``spec`` names; returns an O_RDONLY fd (close it).

    ``spec`` is ``N`` (an id from ``pidns ls``, or an nsfs inode), ``pid:PID`` (the active
    pid namespace of process PID, as numbered in ``root``) or a path (it contains a ``/``)
    to an nsfs file. Raises NamespaceError with a one-line message.
    """
    if spec.startswith("pid:"):
        number = spec[4:]
        if not number.isdigit() or int(number) == 0:
            raise NamespaceError(f"bad pid in {spec!r}: expected pid:PID with PID > 0")
        try:
            return _open_file(f"{root}/{int(number)}/ns/pid", f"process {int(number)}")
        except NamespaceError:
            # Its link may be unreadable (not dumpable, another user) while the namespace
            # it was placed in opens through another member's link.
            found = discover(root)
            placed = found.of_pid(int(number))
            if placed is None:
                raise
            try:
                return reopen(found.namespaces, placed)
            except OSError:
                raise NamespaceError(f"cannot open the pid namespace of {spec}") from None
    if "/" in spec:
        return _open_file(spec, spec)
    if spec.isdigit():
        found = discover(root)
        ns = found.by_number(int(spec))
        if ns is None:
            raise NamespaceError(f"no pid namespace {spec} is visible (see pidns ls)")
        try:
            return reopen(found.namespaces, ns)
        except OSError as e:
            raise NamespaceError(f"cannot open pid namespace {spec}: {e.strerror}") from None
    raise NamespaceError(f"bad namespace {spec!r}: expected {SPEC_HELP}")


def _open_file(path: str, what: str) -> int:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NamespaceError(f"no such process or file: {what}") from None
    except OSError as e:
        raise NamespaceError(f"cannot open {path}: {e.strerror}") from None
    kind = nsfs.nstype(fd)
    if kind != cf.NEWPID:  # what NS_GET_NSTYPE gives for a pid namespace
        os.close(fd)
        what = "a namespace file" if kind is None else "a pid namespace"
        raise NamespaceError(f"{path} is not {what}")
    return fd
