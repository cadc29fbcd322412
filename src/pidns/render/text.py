"""Text for terminals: the ``pidns ls`` table and the ``pidns tree`` tree.

The tree nests namespaces inside their parents, processes inside their namespace, and
within a namespace each process under its parent when the parent is in the same
namespace. A process shows its pids from the root inwards, ``7412/3/1``: 7412 in the
root, 3 one level down, 1 in its own namespace.
"""

from __future__ import annotations

from pidns.render.view import (
    ID_INODE,
    ID_MODEL,
    Index,
    NamespaceView,
    ProcessView,
    SystemView,
)

# States worth flagging in a tree line; the others (running, sleeping, ...) are ordinary.
NOTABLE_STATES = frozenset({"zombie", "dead", "stopped", "tracing stop", "exiting"})

_BRANCH, _LAST, _PIPE, _SPACE = "├─ ", "└─ ", "│  ", "   "


def printable(text: str) -> str:
    """Control characters (a newline in argv, an escape) shown as ``?``, as ps does."""
    return "".join(c if c.isprintable() else "?" for c in text)


def ls_table(view: SystemView, names: dict[int, str] | None = None) -> str:
    """One row per namespace: id, level, parent, owner, init, process count, init's command.

    The id column is headed by what the ids are: ``NSID`` (NS_GET_ID, with an INODE column
    beside it), ``INODE``, or ``ID`` (the model's). ``names``: the names of named
    namespaces by inode; a NAME column when there are any."""
    names = names or {}
    with_inode = view.id_source not in (ID_INODE, ID_MODEL)
    header = [{ID_INODE: "INODE", ID_MODEL: "ID"}.get(view.id_source, "NSID")]
    header += ["INODE"] if with_inode else []
    header += ["LEVEL", "PARENT", "OWNER", "INIT", "NPROCS"] + (["NAME"] if names else [])
    rows: list[list[str]] = []
    commands: list[str] = []
    index = view.lookup()
    for ns in view.namespaces:
        row = [str(ns.id)] + ([_dash(ns.inode)] if with_inode else [])
        row += [str(ns.level), _dash(ns.parent), _dash(ns.owner), _dash(ns.init), str(ns.nprocs)]
        if names:
            row.append(names.get(ns.inode or 0, "-"))
        rows.append(row)
        init = index.init_of(ns.id)
        commands.append(printable(init.command) if init is not None else "-")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = [_columns(header, widths) + " COMMAND"]
    for row, command in zip(rows, commands, strict=True):
        lines.append(f"{_columns(row, widths)} {command}")
    return "\n".join(lines)


def _columns(cells: list[str], widths: list[int]) -> str:
    return " ".join(cell.rjust(width) for cell, width in zip(cells, widths, strict=True))


def tree(view: SystemView) -> str:
    """The namespaces and processes of ``view`` as an indented tree."""
    lines: list[str] = []
    index = view.lookup()
    for ns in index.roots():
        lines.append(namespace_title(ns))
        _namespace_body(index, ns, "", lines)
    return "\n".join(lines)


def namespace_title(ns: NamespaceView) -> str:
    return f"pid namespace {ns.id} ({namespace_summary(ns)})"


def namespace_summary(ns: NamespaceView) -> str:
    """``level 1, init 7412, 3 processes, user namespace 4099``."""
    init = "no init" if ns.init is None else f"init {ns.init}"
    count = f"{ns.nprocs} process" + ("" if ns.nprocs == 1 else "es")
    owner = "" if ns.owner is None else f", user namespace {ns.owner}"
    return f"level {ns.level}, {init}, {count}{owner}"


def process_title(p: ProcessView) -> str:
    pids = "/".join(str(n) for n in p.pids)
    flag = f" <{p.state}>" if p.state in NOTABLE_STATES else ""
    return f"{pids} {printable(p.command)}{flag}"


def _namespace_body(index: Index, ns: NamespaceView, prefix: str, lines: list[str]) -> None:
    members = index.members(ns.id)
    local = {p.pid for p in members}
    kids: dict[int, list[ProcessView]] = {}
    tops: list[ProcessView] = []
    for p in members:
        if p.ppid in local and p.ppid != p.pid:
            kids.setdefault(p.ppid, []).append(p)
        else:
            tops.append(p)
    items: list[ProcessView | NamespaceView] = [*tops, *index.children(ns.id)]
    for i, item in enumerate(items):
        last = i == len(items) - 1
        lines.append(prefix + (_LAST if last else _BRANCH) + _title(item))
        inner = prefix + (_SPACE if last else _PIPE)
        if isinstance(item, NamespaceView):
            _namespace_body(index, item, inner, lines)
        else:
            _process_body(item, kids, inner, lines)


def _process_body(
    p: ProcessView, kids: dict[int, list[ProcessView]], prefix: str, lines: list[str]
) -> None:
    children = kids.get(p.pid, [])
    for i, child in enumerate(children):
        last = i == len(children) - 1
        lines.append(prefix + (_LAST if last else _BRANCH) + process_title(child))
        _process_body(child, kids, prefix + (_SPACE if last else _PIPE), lines)


def _title(item: ProcessView | NamespaceView) -> str:
    return namespace_title(item) if isinstance(item, NamespaceView) else process_title(item)


def hidden_note(view: SystemView) -> str | None:
    """What could not be seen, in one line; None when everything was."""
    if not view.hidden_processes and not view.hidden_namespaces:
        return None
    procs = f"{view.hidden_processes} process" + ("" if view.hidden_processes == 1 else "es")
    spaces = f"{view.hidden_namespaces} pid namespace" + (
        "" if view.hidden_namespaces == 1 else "s"
    )
    return (
        f"could not inspect {procs} and {spaces}: their /proc/PID/ns/pid needs ptrace "
        "access (run as their owner or root to see them)"
    )


def _dash(value: int | None) -> str:
    return "-" if value is None else str(value)
