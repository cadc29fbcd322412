"""Pictures through graphviz: one cluster per pid namespace, nested as the namespaces are.

``to_dot`` writes the dot source (no graphviz needed); ``draw`` runs the ``dot`` program
to make an SVG or PNG file. Graphviz is optional: without ``dot`` on PATH, ``draw`` raises
GraphvizMissing, whose message says how to install it.

Inside a cluster, each process is a box labelled with its pids from the root inwards
and its command; an arrow runs from parent to child (also across clusters: an init's
parent is outside its namespace). Zombies and other notable states are drawn dashed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from pidns.render.text import NOTABLE_STATES, namespace_summary, printable
from pidns.render.view import Index, NamespaceView, ProcessView, SystemView

FORMATS = ("svg", "png")
INSTALL_HINT = "graphviz is not installed (no `dot` on PATH); install it with: apt install graphviz"
# Cluster fills by level, light to darker, so nesting reads at a glance.
_FILLS = ("#f5f7fa", "#e3ecf7", "#cfe0f3", "#b9d2ee", "#a3c4e9")
_COMMAND_WIDTH = 40


class GraphvizMissing(Exception):
    """The ``dot`` program is not on PATH."""

    def __init__(self) -> None:
        super().__init__(INSTALL_HINT)


class GraphvizFailed(Exception):
    """``dot`` ran and failed; the message is its first line of complaint."""


def to_dot(view: SystemView, title: str = "") -> str:
    """The picture as graphviz dot source."""
    lines = [
        "digraph pidns {",
        '  graph [fontname="Helvetica", fontsize=11, labeljust=l, nodesep=0.25, ranksep=0.35'
        + (f", label={_quote(title)}, labelloc=t" if title else "")
        + "];",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica",'
        " fontsize=10];",
        '  edge [color="#555555", arrowsize=0.6];',
    ]
    index = view.lookup()
    for ns in index.roots():
        _cluster(index, ns, "  ", lines)
    for p in view.processes:
        if index.process(p.ppid) is not None and p.ppid != p.pid:
            lines.append(f"  p{p.ppid} -> p{p.pid};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(view: SystemView, path: str, fmt: str, title: str = "") -> None:
    """Write the picture to ``path`` as ``fmt`` (``svg`` or ``png``) through ``dot``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown picture format {fmt!r} (one of {', '.join(FORMATS)})")
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizMissing()
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", os.fspath(path)],
        input=to_dot(view, title).encode(),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        complaint = result.stderr.decode(errors="replace").strip().splitlines()
        reason = complaint[0] if complaint else f"exit status {result.returncode}"
        raise GraphvizFailed(f"dot could not write {path}: {reason}")


def _cluster(index: Index, ns: NamespaceView, indent: str, lines: list[str]) -> None:
    label = _label(f"pid namespace {ns.id}", namespace_summary(ns))
    fill = _FILLS[min(ns.level, len(_FILLS) - 1)]
    lines.append(f"{indent}subgraph cluster_ns_{ns.id} {{")
    lines.append(
        f'{indent}  graph [label="{label}", style="rounded,filled",'
        f' fillcolor="{fill}", color="#7a8ca5"];'
    )
    members = index.members(ns.id)
    if not members and not index.children(ns.id):
        # graphviz draws no empty cluster: an invisible point keeps the namespace shown
        lines.append(f"{indent}  empty_ns_{ns.id} [shape=point, style=invis];")
    for p in members:
        lines.append(f"{indent}  p{p.pid} [{_node_attributes(p)}];")
    for child in index.children(ns.id):
        _cluster(index, child, indent + "  ", lines)
    lines.append(f"{indent}}}")


def _node_attributes(p: ProcessView) -> str:
    command = printable(p.command)
    if len(command) > _COMMAND_WIDTH:
        command = command[: _COMMAND_WIDTH - 1] + "…"
    pids = "/".join(str(n) for n in p.pids)
    if p.state in NOTABLE_STATES:
        label = _label(pids, command, f"<{p.state}>")
        return f'label="{label}", style="rounded,dashed,filled", fillcolor="#eeeeee"'
    return f'label="{_label(pids, command)}"'


def _escape(text: str) -> str:
    """Text for a double-quoted dot string: backslashes and quotes escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _label(*lines: str) -> str:
    """Lines for a double-quoted dot label, each escaped, centred."""
    return "\\n".join(_escape(line) for line in lines)


def _quote(text: str) -> str:
    return f'"{_escape(text)}"'
