"""The JSON documents of ``pidns ls``, ``pidns tree`` and ``pidns pid``.

Their layout is documented in docs/introspection.md and is stable: fields may be added,
none renamed or removed. Every number is an integer; absent values are ``null``.
"""

from __future__ import annotations

from typing import Any

from pidns.render.view import Index, NamespaceView, ProcessView, SystemView

Document = dict[str, Any]


def ls_document(view: SystemView, names: dict[int, str] | None = None) -> Document:
    """``{"id_source", "namespaces": [namespace + "command" + "name"], "hidden"}``;
    ``names``: the names of named namespaces (``pidns run --name``), by nsfs inode."""
    names = names or {}
    rows = []
    index = view.lookup()
    for ns in view.namespaces:
        init = index.init_of(ns.id)
        row = namespace_fields(ns)
        row["command"] = init.command if init is not None else None
        row["name"] = names.get(ns.inode) if ns.inode is not None else None
        rows.append(row)
    return {"id_source": view.id_source, "namespaces": rows, "hidden": _hidden(view)}


def tree_document(view: SystemView) -> Document:
    """``{"id_source", "namespaces": [namespace + "processes" + "children"], "hidden"}``."""
    index = view.lookup()
    return {
        "id_source": view.id_source,
        "namespaces": [_nested(index, ns) for ns in index.roots()],
        "hidden": _hidden(view),
    }


def pid_document(
    *, pid: int, source: int, target: int, result: int, method: str, id_source: str
) -> Document:
    """``{"pid", "from", "to", "result", "method", "id_source"}``."""
    return {
        "pid": pid,
        "from": source,
        "to": target,
        "result": result,
        "method": method,
        "id_source": id_source,
    }


def namespace_fields(ns: NamespaceView) -> Document:
    return {
        "id": ns.id,
        "inode": ns.inode,
        "level": ns.level,
        "parent": ns.parent,
        "owner": ns.owner,
        "init": ns.init,
        "nprocs": ns.nprocs,
    }


def process_fields(p: ProcessView) -> Document:
    return {
        "pid": p.pid,
        "pids": list(p.pids),
        "ppid": p.ppid,
        "command": p.command,
        "state": p.state,
    }


def _nested(index: Index, ns: NamespaceView) -> Document:
    doc = namespace_fields(ns)
    doc["processes"] = [process_fields(p) for p in index.members(ns.id)]
    doc["children"] = [_nested(index, child) for child in index.children(ns.id)]
    return doc


def _hidden(view: SystemView) -> Document:
    return {"processes": view.hidden_processes, "namespaces": view.hidden_namespaces}
