"""The pure parts of pidns run: the user-namespace diagnosis, id maps, PATH lookup, exit
statuses, option parsing. No namespaces needed."""

from __future__ import annotations

import errno
import os
import stat
import sys

import pytest

from pidns.cli import exec as exec_cli
from pidns.cli import run as run_cli
from pidns.cli.options import UsageError
from pidns.linux import diagnose, launcher, spawn, userns

KNOBS: dict[str, int | None] = {
    "user.max_user_namespaces": 15000,
    "user.max_pid_namespaces": 15000,
    "kernel.unprivileged_userns_clone": None,
    "kernel.apparmor_restrict_unprivileged_userns": None,
}


def explain(err: int, sysctls: dict[str, int | None], step: str = "clone", seccomp: int = 0) -> str:
    """The one-line message for a failed step of an unprivileged caller, with these
    sysctls and seccomp mode (the rest of the facts as found here)."""
    facts = diagnose.Facts()
    facts.sysctls = sysctls
    facts.status = facts.status._replace(cap_eff=0, seccomp=seccomp)
    facts.container = None
    return str(diagnose.refusal(step, err, user=True, facts=facts))


@pytest.mark.parametrize(
    ("knob", "value", "step", "err", "names"),
    [
        (
            "user.max_user_namespaces",
            0,
            "clone",
            errno.ENOSPC,
            "sysctl -w user.max_user_namespaces=",
        ),
        (
            "kernel.unprivileged_userns_clone",
            0,
            "clone",
            errno.EPERM,
            "unprivileged_userns_clone=1",
        ),
        (  # the namespace is made; writing its maps is denied
            "kernel.apparmor_restrict_unprivileged_userns",
            1,
            "user_namespace",
            errno.EPERM,
            "apparmor_restrict_unprivileged_userns=0",
        ),
    ],
)
def test_each_disabling_knob_is_named_with_its_fix(
    knob: str, value: int, step: str, err: int, names: str
) -> None:
    text = explain(err, {**KNOBS, knob: value}, step)
    assert f"{knob} = {value}" in text
    assert names in text
    assert "\n" not in text


def test_other_user_namespace_failures_are_explained_too() -> None:
    assert "limit is reached" in explain(errno.ENOSPC, KNOBS)
    assert "user.max_user_namespaces = 15000" in explain(errno.ENOSPC, KNOBS)
    assert "seccomp" not in explain(errno.EPERM, KNOBS)  # no filter here: not the cause
    seccomp = explain(errno.EPERM, KNOBS, seccomp=diagnose.SECCOMP_FILTER)
    assert "seccomp filter" in seccomp
    assert "--security-opt seccomp=unconfined" in seccomp
    assert "Docker's default profile" in explain(errno.ENOSYS, KNOBS, seccomp=2)
    apparmor_text = explain(
        errno.EPERM, {**KNOBS, "kernel.apparmor_restrict_unprivileged_userns": 1}, "mount"
    )
    interpreter = os.path.realpath(sys.executable)
    assert f"profile pidns {interpreter} flags=(unconfined) {{ userns, }}" in apparmor_text
    assert explain(errno.ENOMEM, KNOBS).endswith(os.strerror(errno.ENOMEM))
    # AppArmor's restriction shows as EPERM/EACCES, not as a limit
    apparmor = {**KNOBS, "kernel.apparmor_restrict_unprivileged_userns": 1}
    assert "limit" in explain(errno.ENOSPC, apparmor)


def test_the_sysctls_are_read_from_proc() -> None:
    values = diagnose.read_sysctls()
    with open("/proc/sys/user/max_user_namespaces") as f:
        assert values["user.max_user_namespaces"] == int(f.read())
    assert set(values) == {name for name, _ in diagnose.SYSCTLS}


def test_id_maps_and_status() -> None:
    assert userns.id_maps("root", 1000, 100) == ("0 1000 1\n", "0 100 1\n")
    assert userns.id_maps("current", 1000, 100) == ("1000 1000 1\n", "100 100 1\n")
    with pytest.raises(ValueError):
        userns.id_maps("nobody", 1, 1)
    privileged, threads = userns.self_status()
    assert threads >= 1
    assert privileged == (os.geteuid() == 0)  # root in the initial user namespace


def test_self_status_parses_capabilities_and_threads(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "status")
    with open(path, "w") as f:
        f.write("Name:\tx\nThreads:\t7\nCapEff:\t0000000000200000\n")
    assert userns.self_status(path) == (True, 7)
    with open(path, "w") as f:
        f.write("Threads:\t1\nCapEff:\t00000000001fffff\n")  # every capability below 21
    assert userns.self_status(path) == (False, 1)


def test_resolve_searches_path_like_execvp(tmp_path: os.PathLike[str]) -> None:
    first, second = os.path.join(tmp_path, "a"), os.path.join(tmp_path, "b")
    os.mkdir(first)
    os.mkdir(second)
    plain = os.path.join(first, "tool")
    with open(plain, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(plain, 0o644)  # found first, but not executable: keep looking
    runnable = os.path.join(second, "tool")
    with open(runnable, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(runnable, stat.S_IRWXU)
    env = {"PATH": f"{first}:{second}"}
    assert spawn.resolve("tool", env) == runnable
    with pytest.raises(PermissionError):
        spawn.resolve("tool", {"PATH": first})
    with pytest.raises(FileNotFoundError) as missing:
        spawn.resolve("tool", {"PATH": os.fspath(tmp_path)})  # a directory is skipped
    assert missing.value.filename == "tool"
    assert spawn.resolve("./relative", env) == "./relative"


def test_run_options_parse() -> None:
    args = run_cli.parse(["--wait-all", "--grace=2.5", "-c", "--json-report", "-", "ls", "-l"])
    assert args.argv == ["ls", "-l"]
    assert args.report == "-"
    options = args.options
    assert (options.wait_all, options.grace, options.map_user) == (True, 2.5, "current")
    assert run_cli.parse(["--", "--as-pid-1"]).argv == ["--as-pid-1"]
    with pytest.raises(UsageError, match="no command"):
        run_cli.parse(["--no-mount-proc"])


def test_exec_options_parse() -> None:
    args = exec_cli.parse(["-t", "5", "-m", "--", "ls"])
    assert (args.target, args.mount, args.command) == (5, True, ["ls"])
    args = exec_cli.parse(["--target=7", "ls", "-m"])
    assert (args.target, args.mount, args.command) == (7, False, ["ls", "-m"])
    args = exec_cli.parse(["-mUt9", "--preserve-credentials", "-w/tmp", "-R", "/", "id"])
    assert (args.target, args.mount, args.user, args.preserve_credentials) == (9, True, True, True)
    assert (args.wd, args.root, args.command) == ("/tmp", "/", ["id"])
    args = exec_cli.parse(["--pid=/proc/1/ns/pid_for_children", "sh"])
    assert (args.target, args.pid_file) == (None, "/proc/1/ns/pid_for_children")
    assert exec_cli.parse(["--help"]).help
    with pytest.raises(UsageError, match="required"):
        exec_cli.parse(["ls"])
    with pytest.raises(UsageError, match="need --target"):
        exec_cli.parse(["--pid=/proc/1/ns/pid", "-m", "ls"])


def test_a_report_read_together_with_the_ready_line_is_kept() -> None:
    """A quick command's end can reach the launcher in the same read as its start."""
    read_end, write_end = os.pipe()
    status = 15  # wait status: killed by SIGTERM
    os.write(write_end, f"R 2 4242 1000\nX {status} 1000 2000 3000 1 0 - 15 -\n".encode())
    namespace = launcher.RunningNamespace(["sh"], 4241, -1, read_end, direct=False)
    try:
        namespace.await_ready(0)
        assert (namespace.pid, namespace.pid_in_namespace) == (4242, 2)
        assert namespace.command_status == status
        assert (namespace.returncode, namespace.exit_status) == (-15, 143)
        assert namespace.orphans_reaped == 1 and namespace.init_forwarded == [15]
    finally:
        os.close(read_end)
        os.close(write_end)
