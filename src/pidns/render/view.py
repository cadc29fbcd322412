"""The renderer's input: a picture of pid namespaces and the processes in them.

Plain immutable values with no tie to /proc or to the model, so that both sources draw
through the same renderer: ``pidns.render.proc_view`` builds them from /proc and the nsfs
ioctls, the model's adapter builds them from a model state. Build them with keywords,
``NamespaceView(id=..., level=..., ...)``; ``_replace`` makes changed copies.

They are ``typing.NamedTuple`` classes rather than ``@dataclass``: the same frozen,
typed, keyword-built records, without the ~10 ms that importing ``dataclasses`` (and
with it ``inspect``) adds to every ``pidns ls`` / ``pidns tree`` run.

Numbering. Every pid in a picture is counted from the picture's *root*: the namespace at
level 0 of the picture (on the host, the kernel's ``init_pid_ns``; reading the /proc of a
container, the container's namespace). ``ProcessView.pids`` lists one pid per level from
the root down to the process's own namespace, in the order of the ``NSpid`` line of
/proc/PID/status (fs/proc/array.c:task_state), so ``pids[0]`` is the "host" pid and
``pids[-1]`` the pid the process sees for itself.
"""

from __future__ import annotations

from typing import NamedTuple

# SystemView.id_source values: the two of /proc are decided where ids are read
from pidns.linux.nsfs import ID_INODE, ID_NS_GET_ID

ID_MODEL = "model"  # ids numbered by the model

__all__ = [
    "ID_INODE",
    "ID_MODEL",
    "ID_NS_GET_ID",
    "Index",
    "NamespaceView",
    "ProcessView",
    "SystemView",
]


class NamespaceView(NamedTuple):
    """One pid namespace.

    id: names the namespace, unique within the picture (see ``SystemView.id_source``).
    level: depth below the picture's root; the root is 0 and a child is its parent + 1.
    parent: the parent namespace's id; None for a root, or when the parent cannot be
        named (NS_GET_PARENT refuses namespaces above the caller's own: EPERM).
    owner: the id of the user namespace that owns it (NS_GET_USERNS); None when unknown,
        e.g. an owner above the caller's user namespace (EPERM).
    init: its init's pid (the process whose pid in this namespace is 1), counted from the
        root; None when it has none: not forked yet after unshare, or already reaped.
    nprocs: the processes whose active namespace this is (descendant namespaces' excluded).
    inode: the nsfs inode number; None where there is none (the model).
    """

    id: int
    level: int
    parent: int | None
    owner: int | None
    init: int | None
    nprocs: int
    inode: int | None = None


class ProcessView(NamedTuple):
    """One process (a thread-group leader).

    pids: its pid at every level from the picture's root down to its own namespace
        (NSpid order); ``len(pids) == level of its namespace + 1``.
    ns: the id of its active pid namespace.
    ppid: its parent's pid counted from the root; 0 when it has none in the picture.
    command: its command line joined by spaces; ``[comm]`` when there is none (kernel
        threads, zombies), as ps(1) shows it; for the model, the process's name.
    state: one word: the kernel's (fs/proc/array.c:task_state_array) ``running``,
        ``sleeping``, ``disk sleep``, ``stopped``, ``tracing stop``, ``zombie``, ``dead``,
        ``parked``, ``idle``; the model adds ``exiting``.
    """

    pids: tuple[int, ...]
    ns: int
    ppid: int
    command: str
    state: str

    @property
    def pid(self) -> int:
        """The pid counted from the root (the "host" pid)."""
        return self.pids[0]


class SystemView(NamedTuple):
    """A picture: namespaces, processes, and what could not be seen.

    namespaces: every namespace in the picture, parents before children.
    processes: the processes the picture holds, by root pid: every visible one for
        ``pidns tree``; only the namespaces' inits for ``pidns ls``.
    id_source: how ids were made: ``"NS_GET_ID"``, ``"inode"`` or ``"model"``.
    hidden_processes: processes seen in /proc whose namespace could not be read
        (permission), so they are in no namespace of the picture.
    hidden_namespaces: namespaces known to exist (a hidden process is their init) but
        not inspectable.
    """

    namespaces: tuple[NamespaceView, ...]
    processes: tuple[ProcessView, ...] = ()
    id_source: str = ID_NS_GET_ID
    hidden_processes: int = 0
    hidden_namespaces: int = 0

    def lookup(self) -> Index:
        """Lookup tables over this picture (build once, query many times)."""
        return Index(self)

    def subtree(self, ns_id: int) -> SystemView:
        """The namespace ``ns_id``, its descendants and their processes (pids unchanged)."""
        index = self.lookup()
        keep: set[int] = set()
        frontier = [ns_id]
        while frontier:
            current = frontier.pop()
            keep.add(current)
            frontier.extend(ns.id for ns in index.children(current))
        return self._replace(
            namespaces=tuple(ns for ns in self.namespaces if ns.id in keep),
            processes=tuple(p for p in self.processes if p.ns in keep),
        )


class Index:
    """Lookups over one SystemView: namespaces by id, processes by root pid, members and
    child namespaces of a namespace."""

    __slots__ = ("_by_id", "_by_pid", "_children", "_members", "view")

    def __init__(self, view: SystemView) -> None:
        self.view = view
        self._by_id = {ns.id: ns for ns in view.namespaces}
        self._by_pid = {p.pid: p for p in view.processes}
        self._members: dict[int, list[ProcessView]] = {}
        for p in view.processes:
            self._members.setdefault(p.ns, []).append(p)
        self._children: dict[int, list[NamespaceView]] = {}
        for ns in view.namespaces:
            if ns.parent is not None:
                self._children.setdefault(ns.parent, []).append(ns)

    def namespace(self, ns_id: int) -> NamespaceView | None:
        return self._by_id.get(ns_id)

    def process(self, pid: int) -> ProcessView | None:
        """The process whose pid counted from the root is ``pid``."""
        return self._by_pid.get(pid)

    def roots(self) -> list[NamespaceView]:
        """Namespaces whose parent is not in the picture, in picture order."""
        return [ns for ns in self.view.namespaces if ns.parent not in self._by_id]

    def children(self, ns_id: int) -> list[NamespaceView]:
        return self._children.get(ns_id, [])

    def members(self, ns_id: int) -> list[ProcessView]:
        return self._members.get(ns_id, [])

    def init_of(self, ns_id: int) -> ProcessView | None:
        ns = self._by_id.get(ns_id)
        if ns is None or ns.init is None:
            return None
        return self._by_pid.get(ns.init)
