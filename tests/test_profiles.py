"""Version-aware profiles: every rule's history, the profile of any release from 3.8 on, the
one selection function `pidns check` uses, and --profile as its override."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from pidns.cli import main
from pidns.core import flags as cf
from pidns.linux import features
from pidns.model import Kernel, KernelError, profiles
from pidns.scenario.backend import run
from pidns.scenario.compare import expectation_failures
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse

ROOT = Path(__file__).parent.parent
GROUP_KILL = ROOT / "examples" / "43_group_kill_shares_one_siginfo.pidns"


def test_the_two_named_profiles_are_their_releases() -> None:
    assert profiles.get("3.8") is profiles.V3_8
    assert profiles.get("6.18") is profiles.V6_18
    assert profiles.V3_8.too_deep_errno == errno.EINVAL
    assert profiles.V6_18.too_deep_errno == errno.ENOSPC


def test_every_row_changes_in_order_and_flips_exactly_at_its_release() -> None:
    for name, (first, changes) in profiles.HISTORY.items():
        releases = [profiles.release_numbers(r) for r, _ in changes]
        assert releases == sorted(releases) and len(set(releases)) == len(releases), name
        assert getattr(profiles.V3_8, name) == first, name
        previous = first
        for release, value in changes:
            major, minor, patch = profiles.release_numbers(release)
            if patch:  # a stable update: the patch before it, in the same line
                before = profiles.for_release(f"{major}.{minor}.{patch - 1}")
            else:
                before = profiles.for_release(
                    f"{major}.{minor - 1}.999" if minor else f"{major - 1}.99"
                )
            assert getattr(before, name) == previous, (name, release)
            assert getattr(profiles.for_release(release), name) == value, (name, release)
            previous = value


def test_debians_6_1_is_between_the_two() -> None:
    p = profiles.for_release("6.1.192")  # Debian's 6.1.0-57 (booted)
    assert p.name == "6.1.192"
    assert (p.too_deep_errno, p.pid_space_full_errno) == (errno.ENOSPC, errno.EAGAIN)
    assert not p.per_ns_pid_max and not p.group_kill_shares_siginfo
    assert p.has_set_tid and p.has_pid_for_children_link and not p.newpid_refuses_parent
    assert not profiles.same_semantics(p, profiles.V6_18)
    assert profiles.same_semantics(profiles.for_release("6.18.44-fc-v857"), profiles.V6_18)
    assert profiles.same_semantics(profiles.for_release("7.2"), profiles.V6_18)


def test_a_stable_update_changes_rows_within_its_line() -> None:
    # booted: Debian's 6.1.0-50 (6.1.176) shares the group kill's zeroed si_pid and sleeps
    # in the zap in S, as 6.18.44 does; its 6.1.0-57 (6.1.192) gives each its own, in I
    older, newer = profiles.for_release("6.1.176"), profiles.for_release("6.1.192")
    assert (older.group_kill_shares_siginfo, older.zap_wait_state) == (True, "S")
    assert (newer.group_kill_shares_siginfo, newer.zap_wait_state) == (False, "I")
    assert older.name == "6.1.176" and profiles.for_release("6.1").name == "6.1"
    assert profiles.release_numbers("6.1.0-50-amd64") == (6, 1, 0)
    assert profiles.release_numbers("6.18") == (6, 18, 0)


@pytest.mark.parametrize("text", ["2.6.32", "3.7", "linux", "", "6"])
def test_releases_before_3_8_or_no_release_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        profiles.for_release(text)


def test_select_takes_the_running_release_unless_overridden() -> None:
    assert profiles.select("3.8.13-pidns").name == "3.8.13"
    assert profiles.select("6.1.192").name == "6.1.192"
    assert profiles.select("6.1.192", "6.18") is profiles.V6_18
    with pytest.raises(ValueError, match=r"older than 3\.8"):
        profiles.select("6.18.1", "3.2")


def test_a_model_of_an_intermediate_release_uses_its_rows() -> None:
    k = Kernel(profile="4.8")  # nesting errno changed in 4.9
    task = k.init
    for _ in range(profiles.MAX_PID_NS_LEVEL):
        task = k.clone(task, cf.NEWPID)
    with pytest.raises(KernelError) as refused:
        k.clone(task, cf.NEWPID)
    assert refused.value.errno == errno.EINVAL


@pytest.mark.parametrize(
    ("profile", "last"),
    [("3.8", "2"), ("6.1.176", "0"), ("6.1.192", "2"), ("6.12.117", "2"), ("6.18", "0")],
)
def test_a_group_kill_shares_the_zeroed_siginfo_as_booted(profile: str, last: str) -> None:
    text = GROUP_KILL.read_text().replace("=> [USR2 from 0]", "")
    trace = run(parse(text, "43"), ModelBackend(profile=profile))
    assert trace.records[-1].result == f"[USR2 from {last}]"
    assert trace.records[6].result == "[USR2 from 2]"  # the first kill: B is visited first


def test_profile_header_accepts_any_release_and_check_notes_where_releases_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Written for 6.1.192 and run on this kernel (6.18 semantics): the kernel is judged by
    # the model of its own release; the file's 6.1.192 expectation gets a note instead.
    path = tmp_path / "g.pidns"
    path.write_text(GROUP_KILL.read_text().replace("[USR2 from 0]", "[USR2 from 2]"))
    path.write_text("%profile 6.1.192\n" + path.read_text())
    if not profiles.for_release(features.release()).group_kill_shares_siginfo:
        pytest.skip("this kernel predates the shared siginfo")
    assert main(["check", "--json", str(path)]) == 0
    scenario = json.loads(capsys.readouterr().out)["scenarios"][0]
    assert scenario["ok"] and scenario["profile"] == "6.1.192"
    notes = scenario["notes"]
    assert any("gives [USR2 from 0] (profile 6.1.192: [USR2 from 2])" in n for n in notes)


def test_check_profile_overrides_the_running_release(capsys: pytest.CaptureFixture[str]) -> None:
    if not profiles.for_release(features.release()).group_kill_shares_siginfo:
        pytest.skip("this kernel predates the shared siginfo")
    # Told the kernel is a 6.1.192, check models it so, and the kernel disagrees at step 13.
    assert main(["check", "--profile", "6.1.192", str(GROUP_KILL)]) == 1
    out = capsys.readouterr().out
    assert "step 13, line 17" in out and "model: [USR2 from 2]" in out
    assert main(["check", "--profile", "6.18", str(GROUP_KILL)]) == 0


def test_check_refuses_a_profile_that_is_no_release(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--profile", "2.6", str(GROUP_KILL)]) == 2
    assert "older than 3.8" in capsys.readouterr().err


def test_docs_show_every_row_with_its_release() -> None:
    text = (ROOT / "docs" / "profiles.md").read_text()
    rows = {
        line.split("|")[-2].strip().strip("`"): line
        for line in text.splitlines()
        if line.startswith("| ") and line.rstrip().endswith("` |")
    }
    for name, (_first, changes) in profiles.HISTORY.items():
        assert name in rows, name
        for release, _value in changes:
            assert f"({release}" in rows[name] or f" {release})" in rows[name], (name, release)


_WAITID = """\
A: fork -> B
B: exit 7
A: wait B nowait wall             => {wall}
A: wait pgrp nowait               => {pgrp}
A: wait B wall                    => B exited 7
"""


@pytest.mark.parametrize(
    ("profile", "wall", "pgrp"),
    [
        ("3.8", "EINVAL", "EINVAL"),
        ("4.7", "B exited 7", "EINVAL"),
        ("5.4", "B exited 7", "B exited 7"),
    ],
)
def test_waitid_takes_wall_from_4_7_and_pgid_zero_from_5_4(
    profile: str, wall: str, pgrp: str
) -> None:
    # the WNOWAIT waits are waitid(2)'s: its own refusals (booted 3.8.13: both EINVAL);
    # the reaping wait is wait4's, which always took __WALL
    text = f"%profile {profile}\n" + _WAITID.format(wall=wall, pgrp=pgrp)
    trace = run(parse(text, "t.pidns"), ModelBackend())
    assert trace.error is None and not expectation_failures(trace), trace


_UNDUMPABLE = """\
A: setuid 1000
A: unshare NEWUSER
A: clone PARENT -> D
D: nsparent A                     => {result}
"""


@pytest.mark.parametrize(("profile", "result"), [("3.8", "ENOTTY"), ("4.10", "EACCES")])
def test_an_undumpable_tasks_ns_files_need_the_mms_user_ns_from_4_10(
    profile: str, result: str
) -> None:
    # D has A's credentials, CAP_SYS_PTRACE in A's new user namespace and none in the one
    # A's mm was made in: 3.8 opens the file (and the ioctl is unknown), 4.10 refuses it
    text = f"%profile {profile}\n" + _UNDUMPABLE.format(result=result)
    trace = run(parse(text, "t.pidns"), ModelBackend())
    assert trace.error is None and not expectation_failures(trace), trace
