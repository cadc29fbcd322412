"""``pidns ls`` and ``pidns tree`` on real namespaces, every field compared with /proc."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pidns.core import flags as cf
from pidns.linux import namespaces, proc, syscalls
from pidns.render import data, proc_view
from test_introspect_world import (
    World,
    command_line,
    ns_id_of,
    ns_inode,
    stop,
    truth,
    wait_ready,
    world,
)
from test_run_support import needs_root

pytestmark = [pytest.mark.real, needs_root]

STATE = {"S": "sleeping", "R": "running", "Z": "zombie", "D": "disk sleep", "T": "stopped"}


def pidns(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pidns", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def as_json(*args: str) -> Any:
    done = pidns(*args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, "one JSON object on one line"
    return json.loads(done.stdout)


def walk(namespaces: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for ns in namespaces:
        yield ns
        yield from walk(ns["children"])


@pytest.fixture(scope="module")
def w() -> Iterator[World]:
    with world() as made:
        yield made


def test_ls_matches_proc_field_by_field(w: World) -> None:
    a, b, c = ns_inode(w.a_init), ns_inode(w.b_init), ns_inode(w.c_init)
    facts = truth([a, b, c])
    host_user = ns_id_of("/proc/self/ns/user")
    root_id = ns_id_of("/proc/self/ns/pid")
    doc = as_json("ls", "--json")
    assert doc["id_source"] in ("NS_GET_ID", "inode")
    assert doc["hidden"] == {"processes": 0, "namespaces": 0}
    rows = {row["inode"]: row for row in doc["namespaces"]}
    root = rows[ns_inode(os.getpid())]
    assert (root["id"], root["level"], root["parent"], root["owner"], root["init"]) == (
        root_id,
        0,
        None,
        host_user,
        1,
    )
    parents = {a: root_id, b: facts[a].id, c: root_id}
    for inode, fact in facts.items():
        row = rows[inode]
        assert row == {
            "id": fact.id,
            "inode": inode,
            "level": fact.level,
            "parent": parents[inode],
            "owner": host_user,
            "init": fact.init,
            "nprocs": len(fact.members),
            "command": command_line(fact.init) if fact.init else None,
            "name": None,  # not made by pidns run --name
        }
    levels = [row["level"] for row in doc["namespaces"]]
    assert levels == sorted(levels), "parents are listed before children"


def test_tree_json_matches_proc_process_by_process(w: World) -> None:
    a, b, c = ns_inode(w.a_init), ns_inode(w.b_init), ns_inode(w.c_init)
    facts = truth([a, b, c])
    doc = as_json("tree", "--json")
    spaces = {ns["inode"]: ns for ns in walk(doc["namespaces"])}
    (root,) = doc["namespaces"]
    assert root["inode"] == ns_inode(os.getpid())
    assert {child["inode"] for child in root["children"]} >= {a, c}
    assert [child["inode"] for child in spaces[a]["children"]] == [b]
    for inode, fact in facts.items():
        ns = spaces[inode]
        assert ns["nprocs"] == len(ns["processes"]) == len(fact.members)
        assert ns["init"] == fact.init
        for shown in ns["processes"]:
            status = proc.status(shown["pid"])
            assert shown == {
                "pid": status.nspid[0],
                "pids": list(status.nspid),
                "ppid": status.ppid,
                "command": command_line(shown["pid"]),
                "state": STATE[status.state],
            }
        assert sorted(p["pid"] for p in ns["processes"]) == fact.members


def test_tree_places_the_oddball_in_its_namespace_under_an_outside_parent(w: World) -> None:
    view = proc_view.system_picture()
    index = view.lookup()
    oddball = index.process(w.oddball)
    assert oddball is not None
    assert oddball.ns == index.process(w.a_init).ns  # type: ignore[union-attr]
    assert oddball.ppid == w.helper
    helper = index.process(w.helper)
    assert helper is not None and helper.ns != oddball.ns


def test_tree_text_nests_namespaces_and_shows_every_level(w: World) -> None:
    done = pidns("tree", "--ns", f"pid:{w.a_init}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    a, b = ns_inode(w.a_init), ns_inode(w.b_init)
    facts = truth([a, b])
    count_a, count_b = len(facts[a].members), len(facts[b].members)
    assert lines[0] == (
        f"pid namespace {facts[a].id} (level 1, init {w.a_init}, {count_a} processes, "
        f"user namespace {ns_id_of('/proc/self/ns/user')})"
    )
    init_line = f"├─ {w.a_init}/1 {command_line(w.a_init)}"
    assert init_line in lines
    b_nspid = "/".join(map(str, proc.status(w.b_init).nspid))
    assert any(line.endswith(f"{b_nspid} {command_line(w.b_init)}") for line in lines)
    b_title = f"pid namespace {facts[b].id} (level 2, init {w.b_init}, {count_b} processes"
    assert any(b_title in line for line in lines)
    sleeper = next(p for p in facts[b].members if p != w.b_init)
    sleeper_line = "/".join(map(str, proc.status(sleeper).nspid)) + " sleep 1000"
    b_init_at = next(i for i, line in enumerate(lines) if f"─ {b_nspid} " in line)
    under = lines[b_init_at + 1]
    assert under.endswith(f"└─ {sleeper_line}")
    assert len(under) - len(sleeper_line) > lines[b_init_at].index(b_nspid), "nested deeper"
    oddball = "/".join(map(str, proc.status(w.oddball).nspid)) + " sleep 1000"
    assert f"├─ {oddball}" in lines, "the oddball's parent is outside A: it is not nested"


def test_tree_selects_a_namespace_by_pid_id_inode_and_path(w: World) -> None:
    c = ns_inode(w.c_init)
    expected = as_json("tree", "--json", "--ns", f"pid:{w.c_init}")
    (only,) = expected["namespaces"]
    assert only["inode"] == c and only["children"] == []
    sleeper = next(p for p in truth([c])[c].members if p != w.c_init)
    for form in ([str(sleeper)], ["--ns", str(only["id"])], ["--ns", str(c)]):
        assert as_json("tree", "--json", *form) == expected
    assert as_json("tree", "--json", "--ns", f"/proc/{w.c_init}/ns/pid") == expected


def test_ls_shows_a_namespace_that_only_pid_for_children_names(tmp_path: Path) -> None:
    """unshare(NEWPID), first child exits: the namespace has no process left, but the
    creator's pid_for_children still names it (D3: child_reaper is never cleared)."""
    read_end, write_end = os.pipe()
    creator = os.fork()
    if creator == 0:
        try:
            os.close(read_end)
            syscalls.set_parent_death_signal(signal.SIGKILL)
            syscalls.unshare(cf.NEWPID)
            first = os.fork()
            if first == 0:
                os._exit(0)
            os.waitpid(first, 0)
            os.write(write_end, b"+")
            signal.pause()
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        wait_ready(read_end, 1)
        empty = proc.ns_inode(creator, "pid_for_children")
        doc = as_json("ls", "--json")
        row = next(r for r in doc["namespaces"] if r["inode"] == empty)
        assert row["nprocs"] == 0
        assert row["init"] is None and row["command"] is None
        assert row["level"] == 1
        assert row["parent"] == ns_id_of("/proc/self/ns/pid")
        assert row["id"] == ns_id_of(f"/proc/{creator}/ns/pid_for_children")
    finally:
        os.close(read_end)
        stop([creator])


def test_inside_a_namespace_without_its_own_proc_the_host_proc_is_the_root() -> None:
    """After unshare(NEWPID) and fork, without a new /proc mount: /proc still counts
    pids from the host, so the picture's root is the host namespace; NS_GET_PARENT
    refuses parents above the caller's namespace, so parents are not named."""
    read_end, write_end = os.pipe()
    creator = os.fork()
    if creator == 0:
        try:
            os.close(read_end)
            syscalls.unshare(cf.NEWPID)
            inner = os.fork()
            if inner == 0:
                try:
                    view = proc_view.namespaces_picture()
                    report = {
                        "aligned": namespaces.proc_is_callers(),
                        "me": os.getpid(),
                        "ls": data.ls_document(view),
                    }
                    os.write(write_end, json.dumps(report).encode())
                finally:
                    os._exit(0)
            os.waitpid(inner, 0)  # its report is written: the pid goes after it
            os.write(write_end, b"\n" + str(inner).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        raw = reader.read()
    os.waitpid(creator, 0)
    text, _, pid = raw.rpartition(b"\n")
    inner_host_pid = int(pid)
    report = json.loads(text)
    assert report["aligned"] is False
    assert report["me"] == 1
    rows = {row["init"]: row for row in report["ls"]["namespaces"]}
    root = rows[1]
    assert (root["level"], root["parent"], root["inode"]) == (0, None, ns_inode(os.getpid()))
    mine = rows[inner_host_pid]
    assert (mine["level"], mine["parent"], mine["nprocs"]) == (1, None, 1)


def test_tree_draws_svg_and_png_with_one_cluster_per_namespace(w: World, tmp_path: Path) -> None:
    svg, png = tmp_path / "t.svg", tmp_path / "t.png"
    done = pidns("tree", "--ns", f"pid:{w.a_init}", "--svg", str(svg), "--png", str(png))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "</svg>" in text
    a, b = ns_inode(w.a_init), ns_inode(w.b_init)
    facts = truth([a, b])
    for fact in facts.values():
        assert f"<title>cluster_ns_{fact.id}</title>" in text
        assert f"pid namespace {fact.id}" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tree_without_graphviz_says_how_to_install_it(w: World, tmp_path: Path) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no dot there
    out = tmp_path / "t.svg"
    done = pidns("tree", "--svg", str(out), env=env)
    assert done.returncode == 127
    assert done.stderr.count("\n") == 1
    assert "apt install graphviz" in done.stderr
    assert not out.exists()


def test_tree_reports_a_picture_dot_cannot_write(w: World, tmp_path: Path) -> None:
    done = pidns("tree", "--svg", str(tmp_path / "missing" / "t.svg"))
    assert done.returncode == 1
    assert done.stderr.startswith("pidns tree: dot could not write")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tree", "--bogus"], "unknown option '--bogus'"),
        (["tree", "0"], "not a pid: '0'"),
        (["tree", "12", "--ns", "pid:1"], "give PID or --ns, not both"),
        (["tree", "--ns"], "--ns needs a value"),
        (["tree", "--ns", "nonsense"], "bad namespace 'nonsense'"),
        (["tree", "--ns", "99999999999"], "no pid namespace 99999999999 is visible"),
        (["tree", "4194304"], "no process 4194304 is visible"),
        (["ls", "extra"], "unexpected argument 'extra'"),
    ],
)
def test_bad_usage_is_one_line_and_status_2(args: list[str], message: str) -> None:
    done = pidns(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_closed_output_pipe_ends_quietly_with_141() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pidns", "tree"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_help_is_status_0() -> None:
    for name in ("ls", "tree", "pid"):
        done = pidns(name, "--help")
        assert done.returncode == 0
        assert done.stdout.startswith(f"usage: pidns {name}")
