"""Pid translation between real namespaces: the ioctls, the NSpid route, and ``pidns pid``."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pidns.linux import namespaces, proc, translate
from test_introspect_world import World, ns_id_of, ns_inode, truth, world
from test_run_support import needs_root

pytestmark = [pytest.mark.real, needs_root]


@pytest.fixture(scope="module")
def w() -> Iterator[World]:
    with world() as made:
        yield made


@pytest.fixture(scope="module")
def fds(w: World) -> Iterator[dict[str, int]]:
    """Open namespace fds: host, A, B (inside A), C (beside A)."""
    opened = {
        "host": os.open("/proc/self/ns/pid", os.O_RDONLY),
        "A": os.open(f"/proc/{w.a_init}/ns/pid", os.O_RDONLY),
        "B": os.open(f"/proc/{w.b_init}/ns/pid", os.O_RDONLY),
        "C": os.open(f"/proc/{w.c_init}/ns/pid", os.O_RDONLY),
    }
    yield opened
    for fd in opened.values():
        os.close(fd)


def expected_pid(nspid: tuple[int, ...], where: list[str], space: str) -> int:
    """The kernel's rule (kernel/pid.c:pid_nr_ns): a number only in the task's own
    namespace and its ancestors. ``where`` lists the task's namespaces, host first."""
    return nspid[where.index(space)] if space in where else 0


def world_processes(w: World) -> list[tuple[int, tuple[int, ...], list[str]]]:
    """(host pid, NSpid, namespaces from host inwards) of every process in the world."""
    a, b, c = ns_inode(w.a_init), ns_inode(w.b_init), ns_inode(w.c_init)
    chains = {a: ["host", "A"], b: ["host", "A", "B"], c: ["host", "C"]}
    facts = truth([a, b, c])
    return [
        (pid, proc.status(pid).nspid, chains[inode])
        for inode, fact in facts.items()
        for pid in fact.members
    ]


@pytest.mark.parametrize("method", ["ioctl", "nspid"])
def test_every_process_translates_between_every_pair_of_namespaces(
    w: World, fds: dict[str, int], method: str
) -> None:
    checked = 0
    for _, nspid, where in world_processes(w):
        for source, target in itertools.product(where, fds):
            pid = nspid[where.index(source)]
            got = translate.translate(pid, fds[source], fds[target], method=method)
            assert got == expected_pid(nspid, where, target), (nspid, source, target)
            checked += 1
    assert checked > 40


def test_the_two_routes_agree_and_auto_prefers_the_ioctls(w: World, fds: dict[str, int]) -> None:
    _, nspid, _ = next(p for p in world_processes(w) if len(p[1]) == 3)
    by_ioctl = translate.translate_reporting(nspid[2], fds["B"], fds["host"])
    assert by_ioctl == (nspid[0], translate.METHOD_IOCTL)
    by_nspid = translate.translate_reporting(nspid[2], fds["B"], fds["host"], method="nspid")
    assert by_nspid == (nspid[0], translate.METHOD_NSPID)


@pytest.mark.parametrize("method", ["ioctl", "nspid"])
def test_a_pid_nobody_has_in_the_source_is_an_error(fds: dict[str, int], method: str) -> None:
    with pytest.raises(ProcessLookupError):
        translate.translate(4_000_000, fds["B"], fds["host"], method=method)


def test_a_task_outside_the_source_namespace_is_not_found_there(
    w: World, fds: dict[str, int]
) -> None:
    """The C init's host pid means nothing in A (A's pid numbers are A's own)."""
    c_host = w.c_init
    a_members = {nspid[1] for _, nspid, where in world_processes(w) if where[-1] == "A"}
    if c_host in a_members:
        pytest.skip("the number happens to be in use in A too")
    with pytest.raises(ProcessLookupError):
        translate.translate(c_host, fds["A"], fds["host"])


def test_bad_arguments_raise_value_error(fds: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="positive"):
        translate.translate(0, fds["host"], fds["host"])
    with pytest.raises(ValueError, match="method"):
        translate.translate(1, fds["host"], fds["host"], method="guess")


def test_open_namespace_reads_every_documented_form(w: World) -> None:
    b = ns_inode(w.b_init)
    b_id = ns_id_of(f"/proc/{w.b_init}/ns/pid")
    for spec in (f"pid:{w.b_init}", f"/proc/{w.b_init}/ns/pid", str(b_id), str(b)):
        fd = namespaces.open_namespace(spec)
        try:
            assert os.fstat(fd).st_ino == b, spec
        finally:
            os.close(fd)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("pid:x", "bad pid in 'pid:x'"),
        ("pid:0", "bad pid in 'pid:0'"),
        ("pid:4194304", "no such process or file: process 4194304"),
        ("/etc/hostname", "/etc/hostname is not a namespace file"),
        ("/proc/self/ns/net", "/proc/self/ns/net is not a pid namespace"),
        ("99999999999", "no pid namespace 99999999999 is visible"),
        ("self", "bad namespace 'self'"),
    ],
)
def test_open_namespace_refuses_with_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(namespaces.NamespaceError, match=message) as caught:
        namespaces.open_namespace(spec)
    assert "\n" not in str(caught.value)


def pidns(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pidns", "pid", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_translates_and_reports_as_json(w: World) -> None:
    sleeper_b = next(
        (pid, nspid)
        for pid, nspid, where in world_processes(w)
        if where[-1] == "B" and pid != w.b_init
    )
    host, nspid = sleeper_b
    done = pidns(str(nspid[2]), "--from", f"pid:{w.b_init}", "--to", f"pid:{w.a_init}")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{nspid[1]}\n", "")
    done = pidns(str(nspid[2]), "--from", f"pid:{w.b_init}", "--json")
    assert done.returncode == 0
    fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
    try:  # what this kernel has: the ioctls (6.11+), NS_GET_ID (6.18)
        method = "ioctl" if translate.via_ioctl(1, fd, fd) is not None else "nspid"
        id_source = namespaces.name_of(fd)[1]
    finally:
        os.close(fd)
    assert json.loads(done.stdout) == {
        "pid": nspid[2],
        "from": ns_id_of(f"/proc/{w.b_init}/ns/pid"),
        "to": ns_id_of("/proc/self/ns/pid"),
        "result": host,
        "method": method,
        "id_source": id_source,
    }


def test_cli_prints_0_and_exits_1_when_the_target_cannot_see_it(w: World) -> None:
    done = pidns(str(w.a_init), "--to", f"pid:{w.c_init}")
    assert (done.returncode, done.stdout, done.stderr) == (1, "0\n", "")


def test_cli_no_such_process_is_one_line_and_status_1() -> None:
    done = pidns("4194304")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == "pidns pid: no process with pid 4194304 in your pid namespace\n"


@pytest.mark.parametrize(
    "args", [[], ["x"], ["1", "--from"], ["1", "--to", "nonsense"], ["1", "2"], ["1", "--bad"]]
)
def test_cli_bad_usage_is_status_2(args: list[str]) -> None:
    done = pidns(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("pidns pid: ")
