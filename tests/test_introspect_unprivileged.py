"""``pidns ls``/``tree``/``pid`` run as uid 65534: what it can read, and what it says it could not.

A child of the test drops to uid 65534 and makes its own namespaces with
clone(NEWUSER|NEWPID) (U, and U2 inside it); root makes R beside them. The unprivileged
child runs the commands (in-process: the interpreter lives under /root, which uid 65534
cannot enter) while root reads the truth from /proc.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from pidns.cli import introspect
from pidns.core import flags as cf
from pidns.linux import proc, syscalls
from test_introspect_world import (
    command_line,
    ns_id_of,
    ns_inode,
    start_init,
    stop,
    truth,
)
from test_run_support import needs_root

pytestmark = [pytest.mark.real, needs_root]

NOBODY = 65534


def _run(name: str, *args: str) -> dict[str, Any]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = introspect.main(name, list(args))
    return {"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()}


def _unprivileged(r_init: int, results: int, go: int) -> None:
    """In the child: drop to nobody, make U (and U2), run the commands, report, wait."""
    syscalls.set_parent_death_signal(signal.SIGKILL)
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    u_init = start_init(2, nested_sleepers=1, flags=cf.NEWUSER | cf.NEWPID)
    try:
        report = {
            "me": os.getpid(),
            "u_init": u_init,
            "ls": _run("ls", "--json"),
            "tree": _run("tree", "--json"),
            "tree_text": _run("tree"),
            "pid": _run("pid", "1", "--from", f"pid:{u_init}", "--json"),
            "pid_r": _run("pid", "1", "--from", f"pid:{r_init}"),
            "tree_r": _run("tree", str(r_init)),
        }
        os.write(results, json.dumps(report).encode() + b"\n")
        os.read(go, 1)  # root reads /proc while everything is still alive
    finally:
        stop([u_init])


@pytest.fixture(scope="module")
def seen() -> Iterator[dict[str, Any]]:
    r_init = start_init(2)
    results_r, results_w = os.pipe()
    go_r, go_w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(results_r)
            os.close(go_w)
            _unprivileged(r_init, results_w, go_r)
        finally:
            os._exit(0)
    os.close(results_w)
    os.close(go_r)
    try:
        with os.fdopen(results_r, "rb") as reader:
            line = reader.readline()
        assert line, "the unprivileged child died before reporting"
        report: dict[str, Any] = json.loads(line)
        report["r_init"] = r_init
        yield report
    finally:
        os.close(go_w)  # EOF: the child stops U and exits
        stop([child, r_init])


def _walk(namespaces: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for ns in namespaces:
        yield ns
        yield from _walk(ns["children"])


def test_ls_as_nobody_lists_its_own_namespaces_with_their_owner(seen: dict[str, Any]) -> None:
    u_init = seen["u_init"]
    u = ns_inode(u_init)
    u2_init = next(p for p in proc.children(u_init) if ns_inode(p) != u)
    u2 = ns_inode(u2_init)
    facts = truth([u, u2])
    owner = ns_id_of(f"/proc/{u_init}/ns/user")
    assert owner != ns_id_of("/proc/self/ns/user"), "U is owned by its new user namespace"
    assert seen["ls"]["status"] == 0
    doc = json.loads(seen["ls"]["stdout"])
    rows = {row["inode"]: row for row in doc["namespaces"]}
    root_id = ns_id_of("/proc/self/ns/pid")
    parents = {u: root_id, u2: facts[u].id}
    for inode, fact in facts.items():
        assert rows[inode] == {
            "id": fact.id,
            "inode": inode,
            "level": fact.level,
            "parent": parents[inode],
            "owner": owner,
            "init": fact.init,
            "nprocs": len(fact.members),
            "command": command_line(fact.init) if fact.init else None,
            "name": None,  # not made by pidns run --name
        }
    root = rows[ns_inode(os.getpid())]
    assert (root["level"], root["parent"], root["init"]) == (0, None, 1)
    assert root["owner"] == ns_id_of("/proc/self/ns/user")


def test_nobody_does_not_see_roots_namespace_and_says_so(seen: dict[str, Any]) -> None:
    r_init = seen["r_init"]
    r = ns_inode(r_init)
    r_members = truth([r])[r].members
    doc = json.loads(seen["ls"]["stdout"])
    assert r not in {row["inode"] for row in doc["namespaces"]}
    assert doc["hidden"]["processes"] >= len(r_members)
    assert doc["hidden"]["namespaces"] >= 1
    note = seen["ls"]["stderr"]
    assert note.count("\n") == 1
    assert note.startswith(f"pidns ls: could not inspect {doc['hidden']['processes']} process"), (
        note
    )
    tree = json.loads(seen["tree"]["stdout"])
    shown = {p["pid"] for ns in _walk(tree["namespaces"]) for p in ns["processes"]}
    assert not shown & set(r_members)
    assert re.fullmatch(  # other users' processes come and go: the counts may differ
        r"pidns tree: could not inspect \d+ process(es)? and \d+ pid namespaces?: .*\n",
        seen["tree_text"]["stderr"],
    )
    assert seen["tree_r"]["status"] == 2
    assert seen["tree_r"]["stderr"] == f"pidns tree: no process {r_init} is visible\n"
    assert seen["pid_r"]["status"] == 2
    assert seen["pid_r"]["stderr"] == (
        f"pidns pid: cannot open /proc/{r_init}/ns/pid: Permission denied\n"
    )


def test_tree_as_nobody_places_host_processes_it_cannot_read(seen: dict[str, Any]) -> None:
    """Root's host processes are unreadable for nobody but at level 0: they are in the
    root namespace, the only one at that level (fs/proc/array.c:task_state)."""
    tree = json.loads(seen["tree"]["stdout"])
    (root,) = tree["namespaces"]
    pids = {p["pid"] for p in root["processes"]}
    assert {1, os.getpid(), seen["me"]} <= pids
    assert root["nprocs"] == len(root["processes"])


def test_tree_as_nobody_matches_proc_in_its_namespaces(seen: dict[str, Any]) -> None:
    u_init = seen["u_init"]
    u = ns_inode(u_init)
    tree = json.loads(seen["tree"]["stdout"])
    spaces = {ns["inode"]: ns for ns in _walk(tree["namespaces"])}
    members = truth([u])[u].members
    assert sorted(p["pid"] for p in spaces[u]["processes"]) == members
    for shown in spaces[u]["processes"]:
        status = proc.status(shown["pid"])
        assert shown["pids"] == list(status.nspid)
        assert shown["ppid"] == status.ppid
        assert shown["command"] == command_line(shown["pid"])


def test_pid_as_nobody_translates_through_its_own_namespace(seen: dict[str, Any]) -> None:
    assert seen["pid"]["status"] == 0, seen["pid"]["stderr"]
    doc = json.loads(seen["pid"]["stdout"])
    assert doc["result"] == seen["u_init"]
    assert doc["from"] == ns_id_of(f"/proc/{seen['u_init']}/ns/pid")
    assert doc["to"] == ns_id_of("/proc/self/ns/pid")
    assert doc["method"] in ("ioctl", "nspid")
