"""The commands on kernels that lack what today's has, exercised on this kernel by
PIDNS_FEATURES_MISSING (pidns.linux.features): each falls back, or says in one line which
feature is missing and exits 125. The same commands on real 3.8.13 and 6.1 kernels:
tests/test_kernels.py."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pidns
from pidns.linux import features
from pidns.scenario.backend import run
from pidns.scenario.model_backend import ModelBackend
from pidns.scenario.parser import parse
from pidns.scenario.real import RealBackend
from test_real_backend import as_nobody
from test_run_support import (
    needs_root,
    nspid,
    run_cli,
)

pytestmark = [pytest.mark.real]


def _without(names: str) -> dict[str, str]:
    return {**os.environ, features.ENV: names}


@pytest.fixture
def target() -> Iterator[pidns.Popen]:
    with pidns.Popen(["sleep", "60"]) as process:
        yield process


@needs_root
def test_exec_before_5_8_joins_through_the_proc_ns_files(target: pidns.Popen) -> None:
    result = run_cli(
        "exec", "--target", str(target.pid), "--mount", "--", "sh", "-c",
        'echo "$$"; readlink /proc/self/ns/pid /proc/self/ns/mnt',
        env=_without("setns_pidfd"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    inside, pid_ns, mnt_ns = result.stdout.split()
    assert inside == "3"  # after the init (1) and the command (2)
    assert pid_ns == os.readlink(f"/proc/{target.pid}/ns/pid")
    assert mnt_ns == os.readlink(f"/proc/{target.pid}/ns/mnt")


def test_exec_without_pidfds_names_the_feature_and_exits_125(target: pidns.Popen) -> None:
    result = run_cli("exec", "--target", str(target.pid), "--", "true", env=_without("pidfd_open"))
    assert result.returncode == 125
    assert result.stderr.splitlines() == [
        f"pidns exec: pidfd_open (pidfd_open(2), Linux 5.3) is missing on this kernel "
        f"({os.uname().release}), needed for pidns exec"
    ]
    assert nspid(target.pid)  # nothing happened to the target


@pytest.mark.parametrize("missing", ["ns_get_nstype", "nspid"])
def test_pid_without_what_it_reads_names_the_feature_and_exits_125(missing: str) -> None:
    result = run_cli("pid", "1", env=_without(missing))
    assert result.returncode == 125
    (line,) = result.stderr.splitlines()
    row = features.FEATURES[missing]
    assert line.startswith(f"pidns pid: {missing} ({row.what}, Linux {row.since}) is missing")


def test_pid_works_without_the_pid_ioctls_through_nspid() -> None:
    result = run_cli("pid", "--json", str(os.getpid()), env=_without("ns_get_pid"))
    assert result.returncode == 0, result.stderr
    assert f'"result": {os.getpid()}' in result.stdout
    assert '"method": "nspid"' in result.stdout


# -- the real scenario backend without clone3, pidfds, NSpid, NS_GET_PARENT (3.8) ---------

_BEFORE_4_1 = (
    "clone3,pidfd_open,pidfd_thread,set_tid,nspid,ns_get_parent,pid_for_children,"
    "waitid_pidfd,setns_pidfd,ns_get_pid,per_ns_pid_max"
)
_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _check_before_4_1(*names: str) -> dict[str, dict[str, Any]]:
    argv = ["check", "--json", *(str(_EXAMPLES / f"{n}.pidns") for n in names)]
    done = run_cli(*argv, timeout=120, env=_without(_BEFORE_4_1))
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    return {Path(s["path"]).stem: s for s in document["scenarios"]}


def test_real_backend_before_4_1_runs_nested_namespaces_from_its_own_steps() -> None:
    # births one level down (world pids through root's procfs of the world), setns into a
    # child's namespace, unshare then fork (the namespace tracked from the steps), zap
    shown = _check_before_4_1(
        "01_seed_login_flow", "37_pid_numbers_are_sequential",
        "38_gvisor_setns_into_child", "43_group_kill_shares_one_siginfo",
    )  # fmt: skip
    for name, scenario in shown.items():
        assert scenario["ok"] and not scenario["unsupported"], name
        assert scenario["backends"] == ["model", "real"], name


def test_real_backend_before_4_1_names_what_a_step_lacks() -> None:
    shown = _check_before_4_1(
        "32_set_tid", "39_nested_teardown", "49_nsfs_ioctls", "12_pid_for_children_link"
    )
    why = {name: s["unsupported"] for name, s in shown.items()}
    assert all(s["ok"] for s in shown.values())
    assert "needs clone3's set_tid (Linux 5.5)" in why["32_set_tid"]
    assert "needs NSpid in /proc/PID/status (Linux 4.1)" in why["39_nested_teardown"]
    assert "needs the NS_GET_PARENT/NS_GET_USERNS ioctls (Linux 4.9)" in why["49_nsfs_ioctls"]
    assert "pid_for_children link (Linux 4.12)" in why["12_pid_for_children_link"]


@needs_root
def test_real_backend_before_4_1_as_nobody_in_its_own_user_namespace() -> None:
    texts = [
        (_EXAMPLES / f"{n}.pidns").read_text()
        for n in ("01_seed_login_flow", "38_gvisor_setns_into_child")
    ]

    def work() -> list[list[str]]:
        os.environ[features.ENV] = _BEFORE_4_1
        features.forget()
        out = []
        for text in texts:
            backend = RealBackend()
            assert backend.userns  # no CAP_SYS_ADMIN: the world has its own user namespace
            trace = run(parse(text, "t.pidns"), backend)
            assert trace.error is None, trace.error
            out.append([r.result for r in trace.records])
        return out

    real = as_nobody(work)
    model = [[r.result for r in run(parse(t, "t.pidns"), ModelBackend()).records] for t in texts]
    assert real == model
