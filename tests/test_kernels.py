"""`pidns check --kernel IMAGE`: the initramfs format, the argument handling, the errors, and
(where qemu and the images exist) real boots of Linux 3.8.13 and Debian's 6.1.

The images come from ``PIDNS_TEST_KERNELS`` (``make test`` sets it: the 3.8.13 image this
machine keeps and the 6.1 one it fetches from Debian); without them or without qemu the
boot tests are skipped, saying why. Each kernel is booted twice (a check; the feature
probes and every command): boots cost seconds under TCG.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pidns.cli import main
from pidns.cli.check import _without_kernel
from pidns.core import flags as cf
from pidns.linux import cpio, features, guest
from pidns.model import profiles

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src"
ROWS = Path(__file__).parent / "kernel_rows.py"  # the profile rows, measured directly
# absolute: the tests boot from their own tmp_path, so a path relative to the start is lost
IMAGES = [os.path.abspath(k) for k in os.environ.get("PIDNS_TEST_KERNELS", "").split(":") if k]
needs_images = pytest.mark.skipif(
    not IMAGES, reason="PIDNS_TEST_KERNELS names no kernel image (make test sets it)"
)


def test_cpio_archives_read_back_with_every_parent_made_once(tmp_path: Path) -> None:
    out = io.BytesIO()
    w = cpio.Writer(out)
    w.data("a/b/c.txt", b"hello")
    w.data("a/b/d.txt", b"")
    w.device("dev/urandom", 1, 9)
    w.symlink("bin", "usr/bin")
    w.finish()
    data = out.getvalue()
    assert len(data) % 4 == 0
    assert cpio.read(data) == [("a/b/c.txt", b"hello"), ("a/b/d.txt", b"")]
    assert data.count(b"a/b\0") == 1 and data.count(b"a\0") == 1
    # the kernel's own reader agrees: GNU cpio lists the same entries, if it is installed
    if shutil.which("cpio"):
        listed = subprocess.run(
            ["cpio", "-t", "--quiet"], input=data, capture_output=True, check=True
        ).stdout.split()
        assert listed == [b"a", b"a/b", b"a/b/c.txt", b"a/b/d.txt", b"dev", b"dev/urandom", b"bin"]


def test_cpio_reader_refuses_what_is_no_archive() -> None:
    with pytest.raises(ValueError, match="not a newc cpio archive"):
        cpio.read(b"x" * 200)


def test_the_guest_runs_the_same_arguments_without_kernel() -> None:
    argv = ["--kernel", "K", "--json", "--kernel=K2", "a.pidns", "--random", "3"]
    assert _without_kernel(argv) == ["--json", "a.pidns", "--random", "3"]


def test_an_unreadable_image_is_a_one_line_setup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = str(ROOT / "examples" / "01_seed_login_flow.pidns")
    assert main(["check", "--kernel", str(tmp_path / "nope"), example]) == 125
    err = capsys.readouterr().err
    assert err.strip() == f"pidns check: cannot read kernel image {tmp_path / 'nope'}"


def test_without_qemu_the_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "bzImage"
    image.write_bytes(b"\0" * 16)
    monkeypatch.setenv("PATH", str(tmp_path))
    example = str(ROOT / "examples" / "01_seed_login_flow.pidns")
    assert main(["check", "--kernel", str(image), example]) == 125
    assert "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)" in (
        capsys.readouterr().err
    )


def test_a_bad_scenario_is_refused_before_anything_boots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pidns"
    bad.write_text("A: frobnicate\n")
    assert main(["check", "--kernel", str(tmp_path / "never-read"), str(bad)]) == 2
    assert "bad.pidns:1:" in capsys.readouterr().err


def _boot(image: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    if not os.access(image, os.R_OK):
        pytest.skip(f"no kernel image {image}")
    return subprocess.run(
        [sys.executable, "-m", "pidns", "check", "--kernel", image, *argv],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=False,
    )


@needs_images
@pytest.mark.parametrize("image", IMAGES)
def test_check_in_a_booted_kernel_reports_as_on_the_host(image: str, tmp_path: Path) -> None:
    names = (
        "01_seed_login_flow", "15_nesting_limit", "43_group_kill_shares_one_siginfo",
        "32_set_tid", "48_clone_exit_signal_and_wall",
    )  # fmt: skip
    for name in names:
        shutil.copy(ROOT / "examples" / f"{name}.pidns", tmp_path)
    files = [f"{name}.pidns" for name in names]
    done = _boot(image, "--json", *files, "--random", "3", "--seed", "7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    release = document["summary"]["kernel"]
    assert release != features.release()  # it ran in the guest
    scenarios = {s["path"]: s for s in document["scenarios"]}
    assert len(scenarios) == 8 and all(s["ok"] for s in scenarios.values())
    # the calls that are themselves the missing feature are made, and agree: clone3 is
    # ENOSYS before 5.3; waitid refuses __WALL before 4.7 (profiles.md)
    set_tid = scenarios["32_set_tid.pidns"]
    assert not set_tid["unsupported"]
    old = features.release_tuple(release) < (5, 3)
    assert set_tid["steps"][0]["real"]["result"] == ("ENOSYS" if old else "EINVAL")
    wall = next(
        step["real"]["result"]
        for step in scenarios["48_clone_exit_signal_and_wall.pidns"]["steps"]
        if "nowait wall" in step["text"]
    )
    assert wall == ("EINVAL" if features.release_tuple(release) < (4, 7) else "B exited 7")
    group_kill = scenarios["43_group_kill_shares_one_siginfo.pidns"]
    nesting = scenarios["15_nesting_limit.pidns"]
    assert group_kill["backends"] == ["model", "real"] and not group_kill["unsupported"]
    real = [step["real"]["result"] for step in group_kill["steps"]]
    shares = profiles.for_release(release).group_kill_shares_siginfo  # 6.1.176: 0, 6.1.192: 2
    assert real[-1] == ("[USR2 from 0]" if shares else "[USR2 from 2]")
    if features.release_tuple(release) < (4, 1):  # 32 levels: pids at middle levels unknown
        assert "needs NSpid in /proc/PID/status (Linux 4.1)" in nesting["unsupported"]
        assert (
            "needs clone3(2) (Linux 5.3)"
            in scenarios["48_clone_exit_signal_and_wall.pidns"]["unsupported"]
        )
    else:
        assert document["summary"]["unsupported"] == 0
    if (4, 1) <= features.release_tuple(release) < (4, 9):  # the errno (profiles.md)
        assert any("gives EINVAL (profile 6.18: ENOSPC)" in n for n in nesting["notes"])
    assert "s in qemu" in done.stderr


_COMMANDS = """
import json, os, subprocess, sys
py = sys.executable
probe = subprocess.run([py, "-m", "pidns.linux.features"], capture_output=True, text=True)
rows = subprocess.run([py, sys.argv[1]], capture_output=True, text=True, timeout=300)
found = {"features": json.loads(probe.stdout), "rows": json.loads(rows.stdout)}
for name, argv in [
    ("run", ["run", "--", py, "-c", "import os; print(os.getpid())"]),
    ("ls", ["ls"]),
    ("tree", ["tree"]),
    ("pid", ["pid", "1"]),
    ("exec", ["exec", "--target", "1", "--", py, "-c", "print(1)"]),
]:
    done = subprocess.run([py, "-m", "pidns", *argv], capture_output=True, text=True, timeout=120)
    found[name] = [done.returncode, done.stdout, done.stderr]
os.makedirs(sys.argv[2], exist_ok=True)  # what check --random saves comes back from here
with open(os.path.join(sys.argv[2], "saved.pidns"), "w") as f:
    f.write(found["features"]["release"])
print(json.dumps(found))
"""
_REPORTS: dict[str, dict[str, Any]] = {}


def _report(image: str, tmp_path: Path) -> dict[str, Any]:
    """One boot per image: the feature probes and each command, as the guest saw them."""
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 is not installed")
    if image not in _REPORTS:
        script = tmp_path / "commands.py"
        script.write_text(_COMMANDS)
        read_end, write_end = os.pipe()  # the report is a few kilobytes at most
        try:
            saved = tmp_path / "saved"
            status, _seconds = guest.run(
                image,
                [str(script), str(ROWS), str(saved)],
                [str(script), str(ROWS)],
                save=str(saved),
                stdout=write_end,
            )
        finally:
            os.close(write_end)
        with os.fdopen(read_end) as f:
            _REPORTS[image] = json.loads(f.read())
        assert status == 0
        release = _REPORTS[image]["features"]["release"]
        assert (saved / "saved.pidns").read_text() == release  # the saved files came back
    return _REPORTS[image]


@needs_images
@pytest.mark.parametrize("image", IMAGES)
def test_the_feature_probes_in_a_booted_kernel_match_its_release(
    image: str, tmp_path: Path
) -> None:
    found = _report(image, tmp_path)["features"]
    running = features.release_tuple(found["release"])
    assert found["release"] != os.uname().release  # probed in the guest
    for name, present in found["features"].items():
        since = features.release_tuple(features.FEATURES[name].since)
        assert present is (running >= since), (name, found["release"])


@needs_images
@pytest.mark.parametrize("image", IMAGES)
def test_each_command_works_or_names_the_missing_feature(image: str, tmp_path: Path) -> None:
    found = _report(image, tmp_path)
    for name in ("ls", "tree"):  # /proc and the nsfs files suffice, from 3.8 on
        assert found[name][0] == 0, found[name]
    for name in ("run", "pid", "exec"):
        code, _out, err = found[name]
        if code == 125:
            (line,) = err.splitlines()
            assert "is missing on this kernel" in line and "Linux " in line, (name, line)
        else:
            assert code == 0, (name, err)
    assert found["run"][0] != 0 or found["run"][1].strip() == "2"


def _check_rows(rows: dict[str, Any]) -> None:
    """Each measured row is what the profile of that release says (docs/profiles.md)."""
    p = profiles.for_release(rows["release"])
    assert rows["too_deep"]["errno"] == errno.errorcode[p.too_deep_errno]
    user = p.user_ns_too_deep_errno
    assert rows["user_ns_too_deep"]["errno"] == (None if user is None else errno.errorcode[user])
    assert rows["newpid_with_parent"]["errno"] == ("EINVAL" if p.newpid_refuses_parent else None)
    assert rows["pid_for_children"] == {
        "link": p.has_pid_for_children_link,
        "open_before_init": "ENOENT",  # present or not, nothing to open before an init
    }
    pid_max = rows["pid_max"]
    inside = profiles.PID_MAX_LIMIT if p.per_ns_pid_max else pid_max["outside"]
    assert pid_max["inside"] == inside
    group_kill = rows["group_kill"]
    shared = 0 if p.group_kill_shares_siginfo else group_kill["sender"]
    assert group_kill["si_pid"] == shared
    # the inner init in the zap's last wait, the outer one in the zap's do_wait on it
    assert rows["zap_wait"] == {
        "inner": [p.zap_wait_state, True, "zap_pid_ns_processes"],
        "outer": ["S", True, "do_wait"],
    }
    if "pid_space_full" in rows:  # guests only: it lowers the global pid_max for a moment
        assert rows["pid_space_full"]["errno"] == errno.errorcode[p.pid_space_full_errno]
    wall = None if p.waitid_takes_wall else "EINVAL"
    assert rows["waitid"] == {
        "pid_wall": wall,
        "all_wall": wall,
        "pid_wnothread": wall,
        "pgid_zero": None if p.waitid_pgid_zero else "EINVAL",
        "pgid_own": None,
        "wait4_nowait": "EINVAL",  # wait4 never took WNOWAIT
    }
    implied = "EINVAL" if p.unshare_newpid_implies_thread else None
    assert rows["unshare_with_a_thread"] == {"errno": implied}
    assert rows["unshare_flags"] == {
        "newcgroup": None if p.unshare_flags & cf.NEWCGROUP else "EINVAL",
        "newtime": None if p.unshare_flags & cf.NEWTIME else "EINVAL",
    }
    refuses = p.pending_ns_refuses
    assert rows["pending_ns_clone"] == {
        "vm": "EINVAL" if refuses & cf.VM else None,
        "vm_sighand": "EINVAL" if refuses & (cf.VM | cf.SIGHAND) else None,
        "thread": "EINVAL",  # THREAD needs SIGHAND and VM: refused in every release
    }
    assert rows["creator_userns"] == {"errno": "EINVAL" if p.checks_creator_userns else None}
    bounded = p.subreaper_walk_bounded_by_level  # the init (1), or the subreaper (no pid: 0)
    assert rows["subreaper_walk"] == {"ppid": 1 if bounded else 0}
    assert rows["subreaper_propagates"] == {"ppid": 2 if p.subreaper_propagates else 1}
    mm = p.dumpable_checks_mm_user_ns
    assert rows["undumpable_ns_open"] == {"errno": "EACCES" if mm else None}
    if "skipped" not in rows.get("low_pids", {"skipped": "host before 6.14"}):
        # pid 300 (the cursor at 300 after ns_last_pid 299), then the wrap: below 300 from
        # 1 (4.15's idr) or nothing (the 3.8 bitmap wraps to 300: ENOMEM)
        again = 2 if p.low_pids_before_wrap else errno.errorcode[p.pid_space_full_errno]
        assert rows["low_pids"] == {"pids": [300, again]}


@needs_images
@pytest.mark.parametrize("image", IMAGES)
def test_the_profile_rows_hold_on_a_booted_kernel(image: str, tmp_path: Path) -> None:
    _check_rows(_report(image, tmp_path)["rows"])


@pytest.mark.skipif(os.geteuid() != 0, reason="the rows are measured as root")
def test_the_profile_rows_hold_on_this_kernel() -> None:
    done = subprocess.run(
        [sys.executable, str(ROWS), "--host"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = json.loads(done.stdout)
    assert rows["release"] == features.release()
    _check_rows(rows)
