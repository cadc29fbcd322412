"""``pidns doctor`` in each environment where namespaces are refused, made on the real
kernel for one forked test child (tests/confinement.py), as root and as uid 65534: it
names the cause, gives the fix, and exits 0 only where ``pidns run`` isolates fully. The
125 message of ``pidns run`` in the same environment is the same diagnosis.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
from collections.abc import Callable
from typing import Any

import pytest

import confinement
import pidns.cli.doctor
import pidns.linux.diagnose
from pidns.linux import mounts, syscalls
from test_run_support import cli_captured, drop_privileges, in_child, needs_root

assert pidns.cli.doctor and pidns.linux.diagnose and pwd and mounts and syscalls  # loaded

pytestmark = [pytest.mark.real, needs_root]

AS = ["root", "nobody"]


def confined(setup: Callable[[], object], who: str, args: list[str]) -> tuple[int, str, str]:
    """``pidns ARGS`` in a child confined by ``setup``, as ``who``: uid 65534 drops its
    privileges first, except for the setups that need root (mask_proc), after them."""

    def scenario() -> tuple[int, str, str]:
        needs_root = setup in confinement.NEEDS_ROOT
        if who == "nobody" and not needs_root:
            drop_privileges()
        setup()
        if who == "nobody" and needs_root:
            drop_privileges()
        return cli_captured(args)

    return in_child(scenario)


def doctor_in(setup: Callable[[], object], who: str) -> tuple[int, dict[str, Any], str]:
    """``pidns doctor --json`` under ``setup``: (status, document, stderr)."""
    status, out, err = confined(setup, who, ["doctor", "--json"])
    return status, json.loads(out), err


def row(document: dict[str, Any], name: str) -> dict[str, str]:
    found: list[dict[str, str]] = [c for c in document["checks"] if c["name"] == name]
    assert found, f"no {name!r} row in {document}"
    return found[0]


def run_in(setup: Callable[[], object], who: str, *args: str) -> tuple[int, str, str]:
    return confined(setup, who, ["run", *args])


def nothing() -> None:
    return None


@pytest.mark.parametrize("who", AS)
def test_here_everything_works(who: str) -> None:
    status, doc, err = doctor_in(nothing, who)
    assert status == 0, doc
    assert err == ""
    assert doc["full_isolation"] is True
    for name in ("user namespace", "pid namespace", "mount namespace", "fresh /proc"):
        assert row(doc, name)["state"] == "ok"
    assert ("in a user namespace" in row(doc, "pid namespace")["detail"]) == (who == "nobody")
    assert doc["summary"] == "pidns run works here with full isolation"


def test_the_table_and_the_usage() -> None:
    status, out, _ = in_child(lambda: cli_captured(["doctor"]))
    assert status == 0
    assert out.splitlines()[-1] == "pidns run works here with full isolation"
    assert any(line.startswith("pid namespace") and " ok " in line for line in out.splitlines())
    status, _, err = in_child(lambda: cli_captured(["doctor", "--bogus"]))
    assert (status, err) == (
        2,
        "pidns doctor: unknown option '--bogus' (see pidns doctor --help)\n",
    )


def no_user_namespaces() -> None:
    """A host where user.max_user_namespaces is 0, for a caller without CAP_SYS_ADMIN."""
    confinement.disable_user_namespaces()
    confinement.drop_capability()


@pytest.mark.parametrize("who", AS)
def test_user_namespaces_disabled(who: str) -> None:
    status, doc, _ = doctor_in(no_user_namespaces, who)
    assert status == 1
    assert doc["full_isolation"] is False
    assert row(doc, "user.max_user_namespaces") == {
        "name": "user.max_user_namespaces",
        "state": "refused",
        "detail": "0",
        "cause": "0 refuses every user namespace",
        "fix": "sysctl -w user.max_user_namespaces=15000",
    }
    pid = row(doc, "pid namespace")
    assert pid["state"] == "refused"
    assert "user.max_user_namespaces = 0" in pid["cause"]
    assert "sysctl -w user.max_user_namespaces=15000" in pid["fix"]
    assert "--fallback subreaper" in doc["summary"]
    status, _, err = run_in(no_user_namespaces, who, "--", "true")
    assert status == 125
    assert err == f"pidns run: {pid['cause']}; {pid['fix']}\n"


def test_a_privileged_user_namespace_without_nested_ones_still_isolates() -> None:
    """Root of a user namespace whose max_user_namespaces is 0 holds CAP_SYS_ADMIN there:
    pid namespaces need no user namespace, and the pid limit is what can still refuse."""
    status, doc, _ = doctor_in(confinement.disable_user_namespaces, "root")
    assert status == 0
    assert row(doc, "user namespace")["state"] == "refused"
    assert row(doc, "pid namespace") == {
        "name": "pid namespace",
        "state": "ok",
        "detail": "made",
        "cause": "",
        "fix": "",
    }

    status, doc, _ = doctor_in(
        lambda: confinement.disable_user_namespaces(pid_namespaces_too=True), "root"
    )
    assert status == 1
    pid = row(doc, "pid namespace")
    assert "user.max_pid_namespaces = 0" in pid["cause"]
    assert pid["fix"] == "raise it with 'sysctl -w user.max_pid_namespaces=15000'"


@pytest.mark.parametrize("who", AS)
def test_without_cap_sys_admin_a_user_namespace_stands_in(who: str) -> None:
    status, doc, _ = doctor_in(confinement.drop_capability, who)
    assert status == 0
    assert row(doc, "capabilities")["state"] == "note"
    detail = row(doc, "capabilities")["detail"]
    assert "no CAP_SYS_ADMIN" in detail
    mask = int(detail.split()[1].rstrip(","), 16)
    assert not mask >> 21 & 1
    assert row(doc, "pid namespace")["detail"] == "made (in a user namespace)"


@pytest.mark.skipif(not confinement.seccomp_supported, reason="the filter is for x86_64")
@pytest.mark.parametrize("who", AS)
def test_a_seccomp_filter_like_dockers(who: str) -> None:
    status, doc, _ = doctor_in(confinement.seccomp_like_docker, who)
    assert status == 1
    assert row(doc, "seccomp")["detail"].startswith("filter (1 filters), NoNewPrivs 1")
    pid = row(doc, "pid namespace")
    assert pid["state"] == "refused"
    assert pid["detail"].endswith("at clone: ENOSYS")
    assert "clone3 is refused by a seccomp filter" in pid["cause"]
    assert "--security-opt seccomp=unconfined" in pid["fix"]
    status, _, err = run_in(confinement.seccomp_like_docker, who, "--", "true")
    assert status == 125
    assert err == f"pidns run: {pid['cause']}; {pid['fix']}\n"


@pytest.mark.skipif(not confinement.seccomp_supported, reason="the filter is for x86_64")
def test_exec_under_the_filter_names_it() -> None:
    def scenario() -> tuple[int, str, str]:
        confinement.seccomp_like_docker()
        return cli_captured(["exec", "--target", "1", "--", "true"])

    status, _, err = in_child(scenario)
    assert status == 125
    assert "a seccomp filter refuses namespace system calls" in err
    assert err.count("\n") == 1


def test_a_masked_proc_as_root_is_noted_not_refused() -> None:
    status, doc, _ = doctor_in(confinement.mask_proc, "root")
    assert status == 0
    proc = row(doc, "/proc")
    assert proc["state"] == "note"
    for path in confinement.MASKED:
        assert path in proc["detail"]


def test_a_masked_proc_refuses_an_unprivileged_fresh_proc() -> None:
    status, doc, _ = doctor_in(confinement.mask_proc, "nobody")
    assert status == 1
    assert doc["pid_namespace"] is True
    fresh = row(doc, "fresh /proc")
    assert fresh["state"] == "refused"
    assert "/proc has 3 masked path(s) (/proc/keys, /proc/timer_list, /proc/acpi)" in fresh["cause"]
    assert fresh["fix"].startswith("use --no-mount-proc")
    # 6.18 refuses a subset=pid procfs as well: it is not offered
    assert row(doc, "/proc subset=pid")["state"] == "note"
    assert "subset=pid" not in fresh["fix"]
    assert doc["summary"].startswith("pidns run works here only with --no-mount-proc")
    status, _, err = run_in(confinement.mask_proc, "nobody", "--", "true")
    assert status == 125
    assert err == f"pidns run: {fresh['cause']}; {fresh['fix']}\n"
    status, out, err = run_in(
        confinement.mask_proc, "nobody", "--no-mount-proc", "--", "sh", "-c", "echo $$"
    )
    assert (status, out) == (0, "2\n"), err


def test_a_failure_is_one_line_in_the_unit_of_the_facts() -> None:
    facts = pidns.linux.diagnose.Facts()
    facts.proc = pidns.linux.diagnose.ProcMount(True, "rw,hidepid=invisible", ("/proc/kcore",))
    facts.container = "podman"
    facts.sysctls = dict.fromkeys(facts.sysctls)
    why = pidns.linux.diagnose.proc_refusal(True, facts, subset_allowed=False)
    assert "1 masked path(s) (/proc/kcore)" in why.cause
    assert why.fix == "use --no-mount-proc or start the container with --security-opt unmask=ALL"
    allowed = pidns.linux.diagnose.proc_refusal(True, facts, subset_allowed=True)
    assert "subset=pid" in allowed.fix
    assert facts.proc.option("hidepid") == "invisible"
    assert os.sep not in str(why).split(";")[1].split()[0]  # "use", not a path


def test_kernel_features_come_from_the_probe_module() -> None:
    def scenario() -> tuple[int, str, str]:
        from pidns.linux import features  # noqa: PLC0415

        os.environ[features.ENV] = "per_ns_pid_max"
        features.forget()
        return cli_captured(["doctor", "--json"])

    status, out, _ = in_child(scenario)
    doc = json.loads(out)
    assert row(doc, "feature pidfd_open")["state"] == "ok"
    missing = row(doc, "feature per_ns_pid_max")
    assert missing["state"] == "note"
    assert missing["detail"].startswith("missing: a pid_max per pid namespace (Linux 6.14)")
    assert status == 0  # a missing feature with a fallback does not stop isolation


@pytest.mark.parametrize("who", AS)
def test_a_hidepid_proc_is_noted_and_isolation_still_works(who: str) -> None:
    status, doc, _ = doctor_in(confinement.hidepid_proc, who)
    assert status == 0, doc
    assert "hidepid=invisible: other users' processes hidden" in row(doc, "/proc")["detail"]
    assert row(doc, "fresh /proc")["state"] == "ok"


@pytest.mark.skipif(not confinement.seccomp_supported, reason="the filter is for x86_64")
@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EPERM])
def test_a_call_a_filter_refuses_is_not_called_missing(err: int) -> None:
    """pidfd_open refused by a seccomp filter on a kernel that has it (6.18): the filter
    is named, not the kernel; the same call missing for real is features' line."""

    def scenario() -> tuple[int, str, str]:
        confinement.seccomp_refuse({434: err})  # pidfd_open
        return cli_captured(["run", "--", "true"])

    status, _, text = in_child(scenario)
    assert status == 125
    assert text.startswith(
        f"pidns run: pidfd_open(2) is refused by a seccomp filter ({errno.errorcode[err]}; "
    )
    assert text.endswith("--security-opt seccomp=unconfined\n")
    assert text.count("\n") == 1
    facts_missing = pidns.linux.diagnose.missing_call("pidfd_open", errno.ENOSYS)
    assert facts_missing is not None
    assert "is missing on this kernel" in facts_missing  # no filter here
    assert pidns.linux.diagnose.missing_call("pipe", errno.EPERM) is None
