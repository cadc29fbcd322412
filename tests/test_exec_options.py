"""``pidns exec``'s nsenter options on the real kernel, as root and as uid 65534: -U and
--preserve-credentials, -w/--wd, -R/--root, a pid namespace given as an nsfs file
(--pid=/proc/PID/ns/pid, pid_for_children), combined short options, -V."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

import pidns
from pidns.cli import main as cli_main
from pidns.linux import syscalls
from test_run_support import (
    children,
    cli_captured,
    drop_privileges,
    exit_status,
    fork_cli,
    in_child,
    needs_root,
    read_line,
    run_cli,
)

pytestmark = [pytest.mark.real, needs_root]


@pytest.fixture
def target() -> Iterator[pidns.Popen]:
    """A namespace with a user namespace of its own, where root is mapped to 65534."""
    with pidns.Popen(["sleep", "60"], map_user="root") as process:
        yield process


@pytest.fixture
def plain() -> Iterator[pidns.Popen]:
    with pidns.Popen(["sleep", "60"]) as process:
        yield process


def test_user_joins_the_user_namespace_and_becomes_its_root(target: pidns.Popen) -> None:
    t = str(target.pid)
    host_user = os.readlink("/proc/self/ns/user")
    result = run_cli("exec", "-mUt", t, "--", "sh", "-c", "readlink /proc/self/ns/user; id -u")
    assert result.returncode == 0, result.stderr
    user_ns, uid = result.stdout.split()
    assert user_ns == os.readlink(f"/proc/{target.pid}/ns/user") != host_user
    assert uid == "0"
    # without -U, root stays in the host's user namespace
    result = run_cli("exec", "-t", t, "--", "readlink", "/proc/self/ns/user")
    assert result.stdout.strip() == host_user


@pytest.fixture
def nobodys() -> Iterator[int]:
    """The init of a namespace uid 65534 made (its user namespace maps 0 to 65534 only):
    a forked launcher of ours, dropped to 65534, running pidns.cli in-process."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        status = 125
        try:
            os.close(read_end)
            syscalls.set_parent_death_signal(signal.SIGKILL)
            drop_privileges()
            os.dup2(write_end, 1)
            status = cli_main(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        assert read_line(read_end) == "2\n"
        (init,) = children(pid)
        yield init
    finally:
        os.close(read_end)
        os.kill(pid, signal.SIGKILL)  # the init sees it die and ends the namespace
        os.waitpid(pid, 0)


def test_user_makes_root_there_and_preserve_credentials_keeps_the_uid(nobodys: int) -> None:
    """Root (0 outside) is not mapped in 65534's namespace: it shows as the overflow uid
    there, unless -U makes it the namespace's root (nsenter's rule)."""
    t = str(nobodys)
    result = run_cli("exec", "-U", "-t", t, "--", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    uid, *uid_map = result.stdout.split()
    assert (uid, uid_map) == ("0", ["0", "65534", "1"])
    kept = run_cli("exec", "-U", "--preserve-credentials", "-t", t, "--", "id", "-u")
    assert (kept.returncode, kept.stdout) == (0, "65534\n"), kept.stderr


def test_wd_and_root(plain: pidns.Popen) -> None:
    t = str(plain.pid)
    result = run_cli("exec", "-t", t, "-w", "/usr", "--", "pwd")
    assert (result.returncode, result.stdout) == (0, "/usr\n"), result.stderr
    result = run_cli("exec", "-t", t, "-R", "/usr", "-w/lib", "--", "sh", "-c", "ls /; pwd")
    assert result.returncode == 0, result.stderr
    *listing, cwd = result.stdout.split()
    assert sorted(listing) == sorted(os.listdir("/usr")) and cwd == "/lib"
    bad = run_cli("exec", "-t", t, "-w", "/no-such-dir-pidns", "--", "true")
    assert bad.returncode == 125
    assert bad.stderr == (
        "pidns exec: cannot change the working directory to /no-such-dir-pidns: "
        "No such file or directory\n"
    )


@pytest.mark.parametrize("kind", ["pid", "pid_for_children"])
def test_a_pid_namespace_given_as_an_nsfs_file(plain: pidns.Popen, kind: str) -> None:
    path = f"/proc/{plain.pid}/ns/{kind}"
    result = run_cli(
        "exec", f"--pid={path}", "--", "sh", "-c", 'echo "$$"; readlink /proc/self/ns/pid'
    )
    assert result.returncode == 0, result.stderr
    pid, ns = result.stdout.split()
    assert int(pid) >= 3  # after the init and the command
    assert ns == os.readlink(f"/proc/{plain.pid}/ns/pid")


def test_a_file_that_is_no_pid_namespace_is_a_setup_failure(plain: pidns.Popen) -> None:
    for path, words in (
        (f"/proc/{plain.pid}/ns/mnt", "is not a pid namespace"),
        ("/etc/hostname", "is not a pid namespace"),
        ("/no-such-file-pidns", "No such file or directory"),
    ):
        result = run_cli("exec", f"--pid={path}", "--", "true")
        assert result.returncode == 125, result
        assert words in result.stderr and result.stderr.count("\n") == 1
    assert run_cli("exec", "--pid=/proc/1/ns/pid", "-m", "true").returncode == 2


def test_version() -> None:
    assert run_cli("exec", "-V").stdout.startswith("pidns ")


def test_unprivileged_nsfs_path_joins_the_owning_user_namespace() -> None:
    def scenario() -> tuple[int, str, str, int]:
        pid, out = fork_cli(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        assert read_line(out) == "2\n"
        (init,) = children(pid)
        try:
            status, text, err = cli_captured(
                ["exec", f"--pid=/proc/{init}/ns/pid", "--", "sh", "-c", 'echo "$$"; id -u']
            )
        finally:
            os.kill(pid, signal.SIGTERM)
        return status, text, err, exit_status(pid)

    status, text, err, launcher = in_child(scenario, nobody=True)
    assert status == 0, err
    assert text.split() == ["3", "0"]  # the user namespace that owns it was joined first
    assert launcher == 143


def test_unprivileged_user_and_wd() -> None:
    def scenario() -> tuple[int, str, str]:
        pid, out = fork_cli(["run", "--", "sh", "-c", 'echo "$$"; exec sleep 60'])
        assert read_line(out) == "2\n"
        (init,) = children(pid)
        try:
            return cli_captured(
                ["exec", "-U", "-w", "/", "-t", str(init), "--", "sh", "-c", "pwd; id -u"]
            )
        finally:
            os.kill(pid, signal.SIGTERM)
            exit_status(pid)

    status, text, err = in_child(scenario, nobody=True)
    assert (status, text.split()) == (0, ["/", "0"]), err
