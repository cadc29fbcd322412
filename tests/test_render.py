"""The renderer on hand-built pictures (as the model's adapter builds them), and every
JSON document checked against the layout documented in docs/introspection.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pidns.core import flags as cf
from pidns.model import Kernel
from pidns.render import data, graphviz, text
from pidns.render.model_view import from_model
from pidns.render.view import (
    ID_INODE,
    ID_MODEL,
    ID_NS_GET_ID,
    NamespaceView,
    ProcessView,
    SystemView,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "introspection.md"


def picture(id_source: str = ID_MODEL) -> SystemView:
    """Root 1 > {2 > {3 (empty)}, 4}; a zombie, an oddball, an awkward command."""
    return SystemView(
        namespaces=(
            NamespaceView(id=1, level=0, parent=None, owner=10, init=1, nprocs=2),
            NamespaceView(id=2, level=1, parent=1, owner=10, init=3, nprocs=3),
            NamespaceView(id=4, level=1, parent=1, owner=None, init=6, nprocs=1),
            NamespaceView(id=3, level=2, parent=2, owner=11, init=None, nprocs=0),
        ),
        processes=(
            ProcessView(pids=(1,), ns=1, ppid=0, command="root", state="running"),
            ProcessView(pids=(2,), ns=1, ppid=1, command="A", state="sleeping"),
            ProcessView(pids=(3, 1), ns=2, ppid=2, command="B", state="running"),
            ProcessView(pids=(4, 2), ns=2, ppid=3, command="C", state="zombie"),
            ProcessView(pids=(5, 3), ns=2, ppid=2, command="D", state="exiting"),
            ProcessView(pids=(6, 1), ns=4, ppid=1, command='E "q" \\ \x1bx', state="sleeping"),
        ),
        id_source=id_source,
    )


# ---- text --------------------------------------------------------------------------------


def test_tree_nests_namespaces_processes_and_flags_unusual_states() -> None:
    assert text.tree(picture()) == "\n".join(
        [
            "pid namespace 1 (level 0, init 1, 2 processes, user namespace 10)",
            "├─ 1 root",
            "│  └─ 2 A",
            "├─ pid namespace 2 (level 1, init 3, 3 processes, user namespace 10)",
            "│  ├─ 3/1 B",
            "│  │  └─ 4/2 C <zombie>",
            "│  ├─ 5/3 D <exiting>",
            "│  └─ pid namespace 3 (level 2, no init, 0 processes, user namespace 11)",
            "└─ pid namespace 4 (level 1, init 6, 1 process)",
            '   └─ 6/1 E "q" \\ ?x',
        ]
    )


def test_tree_of_a_subtree_starts_at_that_namespace() -> None:
    part = picture().subtree(2)
    assert [ns.id for ns in part.namespaces] == [2, 3]
    assert [p.pid for p in part.processes] == [3, 4, 5]
    assert text.tree(part).splitlines()[:2] == [
        "pid namespace 2 (level 1, init 3, 3 processes, user namespace 10)",
        "├─ 3/1 B",
    ]


def test_ls_table_heads_the_id_column_by_its_source() -> None:
    assert text.ls_table(picture()) == "\n".join(
        [
            "ID LEVEL PARENT OWNER INIT NPROCS COMMAND",
            " 1     0      -    10    1      2 root",
            " 2     1      1    10    3      3 B",
            ' 4     1      1     -    6      1 E "q" \\ ?x',
            " 3     2      2    11    -      0 -",
        ]
    )
    with_ids = picture(ID_NS_GET_ID)._replace(
        namespaces=tuple(ns._replace(inode=4026531836 + ns.id) for ns in picture().namespaces)
    )
    assert text.ls_table(with_ids).splitlines()[:2] == [
        "NSID      INODE LEVEL PARENT OWNER INIT NPROCS COMMAND",
        "   1 4026531837     0      -    10    1      2 root",
    ]
    assert text.ls_table(picture(ID_INODE)).splitlines()[0].startswith("INODE LEVEL")


def test_hidden_note_counts_what_could_not_be_seen() -> None:
    assert text.hidden_note(picture()) is None
    note = text.hidden_note(picture()._replace(hidden_processes=1, hidden_namespaces=2))
    assert note is not None and "\n" not in note
    assert note.startswith("could not inspect 1 process and 2 pid namespaces:")


# ---- JSON against the documented layout --------------------------------------------------


def documented_layouts() -> dict[str, Any]:
    """The JSON examples of docs/introspection.md, by their ``<!-- layout: NAME -->``."""
    found = re.findall(r"<!-- layout: (\w+) -->\s*```json\n(.*?)```", DOC.read_text(), re.S)
    return {name: json.loads(body) for name, body in found}


TYPES = {"integer": int, "string": str, "array": list, "object": dict}


def documented_fields() -> dict[str, dict[str, tuple[type, bool]]]:
    """The field tables of docs/introspection.md: table -> field -> (type, may be null)."""
    tables: dict[str, dict[str, tuple[type, bool]]] = {}
    for name, body in re.findall(r"<!-- fields: (\w+) -->\n((?:\|.*\n)+)", DOC.read_text()):
        rows = re.findall(r"^\| `(\w+)` \| (\w+)( or null)? \|", body, re.M)
        tables[name] = {field: (TYPES[kind], bool(null)) for field, kind, null in rows}
    return tables


def conforms(value: Any, table: str, example: dict[str, Any]) -> None:
    """``value`` has exactly the example's keys, each of its documented type."""
    fields = documented_fields()[table]
    assert set(value) == set(example), (table, set(value) ^ set(example))
    for key, item in value.items():
        kind, nullable = fields[key]
        assert isinstance(item, kind) or (item is None and nullable), (table, key, item)
        assert not isinstance(item, bool), (table, key)


def conforms_document(doc: dict[str, Any], layout: str) -> None:
    example = documented_layouts()[layout]
    if layout == "pid":
        conforms(doc, "pid", example)
        return
    conforms(doc, "document", example)
    conforms(doc["hidden"], "hidden", example["hidden"])
    ns_example = example["namespaces"][0]
    stack = list(doc["namespaces"])
    while stack:
        ns = stack.pop()
        conforms(ns, "namespace", ns_example)
        for process in ns.get("processes", []):
            conforms(process, "process", ns_example["processes"][0])
            assert all(isinstance(n, int) for n in process["pids"])
        stack.extend(ns.get("children", []))


def test_the_documented_examples_follow_the_documented_tables() -> None:
    layouts = documented_layouts()
    assert set(layouts) == {"ls", "tree", "pid"}
    for name, example in layouts.items():
        conforms_document(example, name)


def test_ls_and_tree_documents_of_a_picture_follow_the_documented_layout() -> None:
    view = picture()._replace(hidden_processes=3, hidden_namespaces=1)
    ls = data.ls_document(view)
    conforms_document(ls, "ls")
    assert [ns["id"] for ns in ls["namespaces"]] == [1, 2, 4, 3]
    assert ls["namespaces"][3]["command"] is None
    assert ls["hidden"] == {"processes": 3, "namespaces": 1}
    tree = data.tree_document(view)
    conforms_document(tree, "tree")
    (root,) = tree["namespaces"]
    assert [child["id"] for child in root["children"]] == [2, 4]
    assert root["children"][0]["children"][0] == {
        "id": 3,
        "inode": None,
        "level": 2,
        "parent": 2,
        "owner": 11,
        "init": None,
        "nprocs": 0,
        "processes": [],
        "children": [],
    }
    assert root["children"][0]["processes"][1] == {
        "pid": 4,
        "pids": [4, 2],
        "ppid": 3,
        "command": "C",
        "state": "zombie",
    }
    assert json.loads(json.dumps(tree)) == tree


def _cli(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "pidns", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.real
def test_the_commands_print_the_documented_layout() -> None:
    conforms_document(_cli("ls", "--json"), "ls")
    conforms_document(_cli("tree", "--json"), "tree")
    conforms_document(_cli("pid", "1", "--json"), "pid")


# ---- graphviz ----------------------------------------------------------------------------


def clusters(dot: str) -> dict[str, str | None]:
    """Each cluster's enclosing cluster, from the brace structure of the dot source."""
    parents: dict[str, str | None] = {}
    stack: list[str | None] = []
    for line in dot.splitlines():
        opened = re.match(r"\s*subgraph (cluster_ns_\d+) \{", line)
        if opened:
            parents[opened.group(1)] = next((s for s in reversed(stack) if s), None)
            stack.append(opened.group(1))
        elif line.rstrip().endswith("{"):
            stack.append(None)
        elif line.strip() == "}":
            stack.pop()
    assert stack == [], "braces balance"
    return parents


def test_dot_nests_one_cluster_per_namespace_as_the_namespaces_nest() -> None:
    dot = graphviz.to_dot(picture(), title="a 'title' with \"quotes\"")
    assert clusters(dot) == {
        "cluster_ns_1": None,
        "cluster_ns_2": "cluster_ns_1",
        "cluster_ns_3": "cluster_ns_2",
        "cluster_ns_4": "cluster_ns_1",
    }
    edges = set(re.findall(r"p(\d+) -> p(\d+);", dot))
    assert edges == {("1", "2"), ("2", "3"), ("3", "4"), ("2", "5"), ("1", "6")}
    assert 'label="4/2\\nC\\n<zombie>", style="rounded,dashed,filled"' in dot
    assert 'label="6/1\\nE \\"q\\" \\\\ ?x"' in dot
    assert "empty_ns_3 [shape=point, style=invis];" in dot
    assert 'label="a \'title\' with \\"quotes\\""' in dot


def test_dot_cuts_long_commands() -> None:
    long = picture()._replace(
        processes=(ProcessView(pids=(1,), ns=1, ppid=0, command="x" * 200, state="running"),)
    )
    assert f'label="1\\n{"x" * 39}…"' in graphviz.to_dot(long)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed")
def test_dot_accepts_the_source_and_draws_svg_and_png(tmp_path: Path) -> None:
    graphviz.draw(picture(), str(tmp_path / "p.svg"), "svg", title="model")
    svg = (tmp_path / "p.svg").read_text()
    for ns_id in (1, 2, 3, 4):
        assert f"<title>cluster_ns_{ns_id}</title>" in svg
    graphviz.draw(picture(), str(tmp_path / "p.png"), "png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_draw_refuses_other_formats_and_reports_a_missing_dot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="unknown picture format"):
        graphviz.draw(picture(), str(tmp_path / "p.gif"), "gif")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(graphviz.GraphvizMissing, match="apt install graphviz"):
        graphviz.draw(picture(), str(tmp_path / "p.svg"), "svg")
    assert not (tmp_path / "p.svg").exists()


def test_the_model_picture_names_parents_and_states_as_proc_does() -> None:
    k = Kernel(root_level=1)
    a = k.fork(k.init)
    init = k.clone(a, cf.NEWPID)
    k.clone_thread(init)
    k.exit_thread(init, 0)  # the leader leaves, a thread stays: /proc shows it as Z
    picture = from_model(k)
    parents = {ns.level: ns.parent for ns in picture.namespaces}
    assert parents == {0: None, 1: k.root_ns.id}  # NS_GET_PARENT from the root: EPERM on it
    states = {p.pids: p.state for p in picture.processes}
    assert states[(3, 1)] == "zombie" and states[(2,)] == "running"
