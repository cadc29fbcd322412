"""The .pidns parser: every op, canonical expectations, and every error with its location."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from pidns.cli.check import SEED_LOGIN_FLOW
from pidns.core import flags as cf
from pidns.core import signals
from pidns.scenario.ast import Disposition, Op
from pidns.scenario.backend import ScenarioError
from pidns.scenario.parser import parse, parse_file, parse_value

SEED = SEED_LOGIN_FLOW  # the contract's own example, as pidns demo runs it


def one(line: str, before: str = "") -> Op:
    """Parse ``before`` + ``line`` and return the last step's op (for brevity)."""
    return parse(before + line).steps[-1].op


def error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse(text, "t.pidns")
    return info.value


# ---- the seed and the whole file --------------------------------------------------------


def test_the_seed_login_flow_parses_into_steps_names_and_values() -> None:
    scenario = parse(SEED, "seed.pidns")
    assert scenario.path == "seed.pidns"
    assert scenario.profile == "6.18"
    assert scenario.names == ("A", "B", "C", "D")
    assert len(scenario.steps) == 15
    first = scenario.steps[0]
    assert (first.index, first.line, first.actor, first.op) == (0, 2, "A", Op.UNSHARE)
    assert first.args.flags == cf.NEWPID
    assert first.expected == "0"
    assert first.text == "A: unshare NEWPID                 => 0"
    fork = scenario.steps[3]
    assert (fork.op, fork.bind, fork.expected) == (Op.FORK, "B", None)
    wait = scenario.steps[11]
    assert (wait.args.target, wait.args.nohang, wait.expected) == ("B", True, "none")
    assert scenario.steps[12].expected == "C killed KILL"
    assert scenario.steps[-1].expected == "ENOMEM"


def test_comments_blank_lines_and_profile_header() -> None:
    scenario = parse("# only a comment\n\n%profile 3.8\n   \nA: getpid # trailing\n")
    assert scenario.profile == "3.8"
    assert parse("%profile 6.1.192\nA: getpid\n").profile == "6.1.192"  # any release from 3.8
    assert [s.line for s in scenario.steps] == [5]
    assert scenario.steps[0].text == "A: getpid"


def test_a_file_is_read_by_path(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "seed.pidns"
    path.write_text(SEED, encoding="utf-8")
    assert parse(path).path == str(path)
    assert parse_file(str(path)).names == ("A", "B", "C", "D")


def test_an_empty_scenario_has_no_steps() -> None:
    assert parse("").steps == ()


# ---- every op ---------------------------------------------------------------------------


def test_fork_and_clone_bind_names_and_parse_flags_and_set_tid() -> None:
    scenario = parse(
        "A: fork -> B\n"
        "A: clone NEWPID|NEWUSER set_tid=1,-1,300 -> C => 7\n"
        "A: clone 0 -> D\n"
        "A: clone clone_newpid|Parent -> E\n"
        "A: clone NEWTIME->F\n"
    )
    fork, clone, plain, prefixed, tight = scenario.steps
    assert (fork.op, fork.bind) == (Op.FORK, "B")
    assert clone.args.flags == cf.NEWPID | cf.NEWUSER
    assert clone.args.set_tid == (1, -1, 300)
    assert (clone.bind, clone.expected) == ("C", "7")
    assert plain.args.flags == 0
    assert prefixed.args.flags == cf.NEWPID | cf.PARENT
    assert (tight.args.flags, tight.bind) == (cf.NEWTIME, "F")
    assert scenario.names == ("A", "B", "C", "D", "E", "F")


def test_unshare_and_setns() -> None:
    scenario = parse(
        "A: fork -> B\n"
        "A: unshare NEWPID|NEWNS => 0\n"
        "A: setns B\n"
        "A: setns B pid\n"
        "A: setns B pid_for_children => ENOENT\n"
        "A: setns root => EINVAL\n"
    )
    unshare, setns, pid, children, root = scenario.steps[1:]
    assert unshare.args.flags == cf.NEWPID | cf.NEWNS
    assert (setns.args.target, setns.args.pid_for_children) == ("B", False)
    assert not pid.args.pid_for_children
    assert children.args.pid_for_children
    assert children.expected == "ENOENT"
    assert root.args.target == "root"


@pytest.mark.parametrize("op", ["getpid", "getppid", "getpgid", "getsid", "setsid", "caught"])
def test_ops_without_arguments(op: str) -> None:
    assert one(f"A: {op}") == Op(op)


def test_pidof_nspid_state() -> None:
    scenario = parse(
        "A: fork -> B\nA: pidof B => 3\nA: nspid => [2]\nB: nspid A => [2]\nA: state B => zombie\n"
    )
    pidof, own, other, state = scenario.steps[1:]
    assert (pidof.op, pidof.args.target, pidof.expected) == (Op.PIDOF, "B", "3")
    assert (own.op, own.args.target, own.expected) == (Op.NSPID, None, "[2]")
    assert other.args.target == "A"
    assert (state.op, state.expected) == (Op.STATE, "zombie")


def test_exit_wait_forms() -> None:
    scenario = parse(
        "A: fork -> B\n"
        "B: exit 3\n"
        "A: wait\n"
        "A: wait any\n"
        "A: wait nohang => none\n"
        "A: wait any nohang\n"
        "A: wait B => B exited 3\n"
        "A: wait B nohang => ECHILD\n"
    )
    exit_, bare, any_, nohang, any_nohang, named, named_nohang = scenario.steps[1:]
    assert (exit_.op, exit_.args.number) == (Op.EXIT, 3)
    assert (bare.args.target, bare.args.nohang) == (None, False)
    assert (any_.args.target, any_.args.nohang) == (None, False)
    assert (nohang.args.target, nohang.args.nohang) == (None, True)
    assert (any_nohang.args.target, any_nohang.args.nohang) == (None, True)
    assert (named.args.target, named.expected) == ("B", "B exited 3")
    assert (named_nohang.args.nohang, named_nohang.expected) == (True, "ECHILD")


def test_kill_takes_a_name_or_a_number_and_signal_zero() -> None:
    scenario = parse(
        "A: fork -> B\nA: kill B TERM\nA: kill -1 SIGKILL\n"
        "A: kill 0 usr1\nA: kill 7 9\nA: kill B 0\n"
    )
    name, all_, group, number, probe = scenario.steps[1:]
    assert (name.args.target, name.args.number, name.args.signal) == ("B", None, 15)
    assert (all_.args.target, all_.args.number, all_.args.signal) == (None, -1, signals.KILL)
    assert (group.args.number, group.args.signal) == (0, 10)
    assert (number.args.number, number.args.signal) == (7, 9)
    assert probe.args.signal == 0


def test_signal_subreaper_setuid() -> None:
    scenario = parse(
        "A: signal USR1 catch\n"
        "A: signal SIGTERM ignore\n"
        "A: signal RTMIN+2 default\n"
        "A: subreaper on\n"
        "A: subreaper off\n"
        "A: setuid 65534 => EPERM\n"
    )
    catch, ignore, default, on, off, setuid = scenario.steps
    assert (catch.args.signal, catch.args.disposition) == (10, Disposition.CATCH)
    assert (ignore.args.signal, ignore.args.disposition) == (15, Disposition.IGNORE)
    assert default.args.signal == signals.number("RTMIN") + 2
    assert default.args.disposition is Disposition.DEFAULT
    assert on.args.on and not off.args.on
    assert (setuid.args.number, setuid.expected) == (65534, "EPERM")


def test_root_may_be_a_target() -> None:
    scenario = parse("A: kill root TERM\nA: pidof root => 1\nA: state root\nA: wait root\n")
    assert [s.args.target for s in scenario.steps] == ["root"] * 4


# ---- canonical expectations -------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("[1,7]", "[1, 7]"),
        ("[ 1 ,  7 ]", "[1, 7]"),
        ("[]", "[]"),
        ("007", "7"),
        ("einval", "EINVAL"),
        ("Esrch", "ESRCH"),
        ("NONE", "none"),
        ("Blocks", "blocks"),
        ("skipped", "skipped"),
        ("Zombie", "zombie"),
        ("B killed SIGKILL", "B killed KILL"),
        ("B killed 9", "B killed KILL"),
        ("B  exited   3", "B exited 3"),
        ("[SIGUSR1 from 0,term from 2]", "[USR1 from 0, TERM from 2]"),
        ("[RTMIN from 1]", "[RTMIN from 1]"),
        ("[63 from 1, SIGRTMIN+1 from 2]", "[RTMIN+29 from 1, RTMIN+1 from 2]"),
        ("B killed IOT", "B killed ABRT"),
        ("B killed sigcld", "B killed CHLD"),
    ],
)
def test_expectations_are_canonical(written: str, canonical: str) -> None:
    assert parse_value(written, frozenset({"B"}))[0] == canonical


def test_expectations_in_a_file_are_canonical() -> None:
    scenario = parse(
        "A: fork -> C\nA: kill C SIGKILL\nA: wait => C killed SIGKILL\nA: nspid => [2 ]\n"
    )
    assert [s.expected for s in scenario.steps] == [None, None, "C killed KILL", "[2]"]


# ---- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("hello", 1, 1, "expected 'ACTOR: OP"),
        ("A getpid => 2", 1, 1, "expected 'ACTOR: OP"),
        ("A:", 1, 3, "missing op"),
        (": getpid", 1, 1, "missing actor"),
        ("1A: getpid", 1, 1, "bad actor '1A'"),
        ("A: frok -> B", 1, 4, "unknown op 'frok'"),
        ("A: Fork -> B", 1, 4, "unknown op 'Fork'"),
        ("A: fork", 1, 4, "fork needs '-> NAME'"),
        ("A: clone NEWPID", 1, 4, "clone needs '-> NAME'"),
        ("A: getpid -> B", 1, 11, "'-> NAME' only follows fork, clone, thread, pidfd, not getpid"),
        ("A: fork ->", 1, 9, "'->' must be followed by a name"),
        ("A: fork -> B C", 1, 14, "'-> NAME' takes one name"),
        ("A: fork -> B->C", 1, 13, "more than one '->'"),
        ("A: getpid =>", 1, 11, "'=>' must be followed"),
        ("A: getpid => 1 => 2", 1, 16, "more than one '=>'"),
        ("root: getpid", 1, 1, "'root' is the world's init: it runs no ops"),
        ("A: fork -> root", 1, 12, "'root' is reserved"),
        ("A: fork -> any", 1, 12, "keyword of wait"),
        ("A: fork -> nohang", 1, 12, "keyword of wait"),
        ("A: thread -> thread", 1, 14, "keyword of wait or pidfd"),
        ("A: pidfd A -> P\nA: kill P TERM", 2, 9, "P is a pidfd, not a process or thread"),
        ("A: pidfd A -> P\nP: getpid", 2, 1, "P is a pidfd, not a process or thread"),
        ("A: pidfd_info A", 1, 15, "A is a process, not a pidfd"),
        ("A: pidfd_info Q", 1, 15, "unknown pidfd 'Q' (no pidfd op makes it)"),
        ("A: waitid P\nA: pidfd A -> P", 1, 11, "P is used before it exists (made at line 2)"),
        ("A: pidfd A -> P\nA: fork -> P", 2, 12, "P is bound twice (already made at line 1)"),
        ("A: clone 0 pidfd=B -> B", 1, 23, "B is bound twice (pidfd=B)"),
        ("A: clone 0 pidfd=9 -> B", 1, 18, "bad name '9'"),
        ("A: pidfd A bogus -> P", 1, 12, "unexpected argument: pidfd TARGET [thread]"),
        ("A: pidfd A", 1, 4, "pidfd needs '-> NAME' for the new pidfd"),
        ("A: thread", 1, 4, "thread needs '-> NAME' for the new thread"),
        ("A: thread -> T\nT: exit_thread 0\nT: getpid", 3, 1, "T called exit at line 2"),
        ("A: exit_thread 256", 1, 16, "exit status out of range 0..255: 256"),
        ("A: pidfd A -> P\nA: pidfd_send_signal P", 2, 23, "missing argument"),
        ("A: fork -> 2B", 1, 12, "bad name '2B'"),
        ("A: fork -> A", 1, 12, "A is bound twice (A exists from the start)"),
        ("A: fork -> B\nA: fork -> B", 2, 12, "B is bound twice (already made at line 1)"),
        ("B: getpid\nA: fork -> B", 1, 1, "B is used before it exists (made at line 2)"),
        ("A: kill B TERM\nA: fork -> B", 1, 9, "B is used before it exists"),
        ("B: fork -> B", 1, 1, "B is used before it exists (made at line 1)"),
        ("A: pidof Z", 1, 10, "unknown process 'Z'"),
        ("Z: getpid", 1, 1, "unknown process 'Z'"),
        ("A: exit 0\nA: getpid", 2, 1, "A called exit at line 1: it makes no more steps"),
        ("A: fork -> B\nB: exit 1\nB: exit 2", 3, 1, "B called exit at line 2"),
        ("A: clone NEWPID|NEWFOO -> B", 1, 17, "unknown flag 'NEWFOO'"),
        ("A: clone NEWPID| -> B", 1, 17, "empty or zero flag"),
        ("A: clone 0x20000000 -> B", 1, 10, "unknown flag '0x20000000'"),
        ("A: clone 0 set_tid= -> B", 1, 20, "set_tid takes integers, not ''"),
        ("A: clone 0 set_tid=1,x -> B", 1, 22, "set_tid takes integers, not 'x'"),
        ("A: clone 0 tid=1 -> B", 1, 12, "expected set_tid=N,N,..."),
        ("A: clone 0 set_tid=1 2 -> B", 1, 22, "unexpected argument"),
        ("A: clone -> B", 1, 9, "missing argument: clone FLAGS"),
        ("A: unshare", 1, 11, "missing argument: unshare FLAGS"),
        ("A: unshare NEWPID NEWNS", 1, 19, "unexpected argument: unshare FLAGS"),
        ("A: getpid 3", 1, 11, "unexpected argument: getpid takes no arguments"),
        ("A: setns", 1, 9, "missing argument: setns TARGET"),
        ("A: setns A pidns", 1, 12, "expected pid or pid_for_children, not 'pidns'"),
        ("A: setns A pid x", 1, 16, "unexpected argument: setns TARGET"),
        ("A: nspid A A", 1, 12, "unexpected argument: nspid [TARGET]"),
        ("A: state", 1, 9, "missing argument: state TARGET"),
        ("A: exit", 1, 8, "missing argument: exit CODE"),
        ("A: exit 256", 1, 9, "exit status out of range 0..255: 256"),
        ("A: exit x", 1, 9, "exit status must be a number, not 'x'"),
        ("A: setuid -1", 1, 11, "uid out of range"),
        ("A: subreaper yes", 1, 14, "expected on or off, not 'yes'"),
        ("A: signal USR1", 1, 15, "missing argument: signal SIG catch|ignore|default"),
        ("A: signal USR1 handle", 1, 16, "expected catch, ignore or default, not 'handle'"),
        ("A: signal SIGFOO catch", 1, 11, "unknown signal 'SIGFOO'"),
        ("A: signal 0 catch", 1, 11, "signal number out of range: 0"),
        ("A: signal 99 catch", 1, 11, "signal number out of range: 99"),
        ("A: signal RTMIN+40 catch", 1, 11, "real-time signal out of range"),
        ("A: kill 1 RTMAX", 1, 11, "signal RTMAX is reserved by the real backend"),
        ("A: kill 1 64", 1, 11, "signal 64 is reserved"),
        ("A: kill 1", 1, 10, "missing argument: kill TARGET|NUMBER SIG"),
        ("A: kill x1 TERM", 1, 9, "unknown process 'x1'"),
        ("A: kill 99999999999 TERM", 1, 9, "pid out of range"),
        ("A: wait any B", 1, 13, "unexpected argument: wait [pgrp] [TARGET|any] [nohang]"),
        ("A: wait => EFOO", 1, 12, "unknown errno name 'EFOO'"),
        ("A: getpid => zombie", 1, 14, "getpid yields a number or an errno, not a state"),
        ("A: getpid => -2", 1, 14, "a negative number is never a result"),
        ("A: getpid => x", 1, 14, "cannot read expected value 'x'"),
        ("A: state A => 0", 1, 15, "state yields a state, not a number"),
        (
            "A: caught => [USR1 at 0]",
            1,
            14,
            "a list holds numbers, signals or 'SIG from PID' items",
        ),
        ("A: caught => [USR1 from 0", 1, 14, "a list must end with ']'"),
        ("A: caught => [FOO from 0]", 1, 14, "unknown signal 'FOO'"),
        ("A: nspid => none", 1, 13, "nspid yields a list or an errno, not a wait result"),
        ("A: wait => Z exited 0", 1, 12, "names 'Z', which is no process of this scenario"),
        ("A: fork -> B\nA: wait => B exited 300", 2, 12, "exit status must be 0..255: 300"),
        ("A: fork -> B\nA: wait => B killed FOO", 2, 12, "unknown signal 'FOO'"),
        ("%profile 2.6", 1, 10, "unknown kernel profile '2.6': kernel 2.6 is older than 3.8"),
        ("%profile six", 1, 10, "unknown kernel profile 'six': not a kernel release"),
        ("%profile", 1, 9, "usage: %profile RELEASE"),
        ("%profile 6.18 3.8", 1, 15, "usage: %profile RELEASE"),
        ("%profile 6.18\n%profile 3.8", 2, 1, "%profile given twice"),
        ("A: getpid\n%profile 3.8", 2, 1, "%profile must come before the first step"),
        ("%version 1", 1, 1, "unknown directive '%version'"),
    ],
)
def test_every_error_names_its_place(text: str, line: int, column: int, message: str) -> None:
    err = error(text)
    assert (err.path, err.line, err.column) == ("t.pidns", line, column), str(err)
    assert message in err.message
    assert str(err).startswith(f"t.pidns:{line}:{column}: ")
    assert err.source == text.splitlines()[line - 1]


def test_render_shows_the_line_and_a_caret_under_the_column() -> None:
    err = error("A: getpid\nA: frok -> B   # typo\n")
    assert err.render().splitlines() == [
        "t.pidns:2:4: unknown op 'frok' (ops: fork, clone, unshare, setns, getpid, getppid, "
        "getpgid, getsid, setsid, pidof, nspid, exit, wait, kill, signal, caught, subreaper, "
        "setuid, state, thread, gettid, exit_thread, exec, pidfd, pidfd_send_signal, waitid, "
        "pidfd_setns, pidfd_info, fdinfo, block, unblock, pending, pid_max, setpgid, "
        "nsparent, ns_pid_in, ns_pid_from)",
        "    A: frok -> B   # typo",
        "       ^",
    ]


def test_tabs_keep_the_caret_under_the_column() -> None:
    err = error("A:\tgetpid\t=> x")
    assert err.column == 14
    assert err.render().splitlines()[1:] == ["    A: getpid => x", "    " + " " * 13 + "^"]


def test_a_missing_file_and_a_non_utf8_file_are_scenario_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read: No such file"):
        parse_file(tmp_path / "absent.pidns")
    bad = tmp_path / "bad.pidns"
    bad.write_bytes(b"A: getpid\nA: ge\xfftpid\n")
    with pytest.raises(ScenarioError) as info:
        parse_file(bad)
    assert (info.value.line, info.value.column, info.value.message) == (2, 6, "not UTF-8")


def test_the_first_error_wins_and_nothing_is_returned() -> None:
    err = error("A: getpid\nA: frok\nA: kill 1 FOO\n")
    assert err.line == 2


def test_pidns_check_exits_2_on_a_parse_error_and_runs_nothing(tmp_path: pathlib.Path) -> None:
    good = tmp_path / "good.pidns"
    good.write_text("A: getpid => 2\n", encoding="utf-8")
    bad = tmp_path / "bad.pidns"
    bad.write_text("A: getpid\nA: frok -> B\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(pathlib.Path(__file__).parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "pidns", "sim", str(good), str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{bad}:2:4: unknown op 'frok'" in done.stderr
    assert "A: frok -> B" in done.stderr
    assert "ok" not in done.stdout  # the good file did not run either
