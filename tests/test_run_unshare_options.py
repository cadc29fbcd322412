"""unshare's option surface on ``pidns run``, on the real kernel, as root and as uid 65534:
combined short options, -U/-m/-p/-f, --kill-child, --mount-proc=DIR, --propagation,
--setgroups, -R/-w, -S/-G, --map-user/--map-group, subordinate ranges through
newuidmap/newgidmap, -V."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from pidns.cli import COMMANDS
from pidns.core import flags as cf
from pidns.linux import syscalls
from test_run_support import (
    Marker,
    cli_as_nobody,
    cli_captured,
    drop_privileges,
    in_child,
    needs_root,
    proc_mounts,
    propagation_seen,
    run_cli,
    run_until_ready,
)

pytestmark = [pytest.mark.real, needs_root]


def test_unshares_usual_spelling_works() -> None:
    result = run_cli(
        "run", "-Urpf", "--mount-proc", "--kill-child", "--",
        "sh", "-c", 'id -u; echo "$$"; cat /proc/self/uid_map; cat /proc/1/comm',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    uid, pid, uid_map, comm = result.stdout.splitlines()
    assert (uid, pid, uid_map.split(), comm) == ("0", "2", ["0", "0", "1"], "pidns-init")


def test_unprivileged_unshare_spelling() -> None:
    status, out, err = cli_as_nobody(
        "run", "-Urpf", "--mount-proc", "--", "sh", "-c", 'id -u; echo "$$"; cat /proc/self/uid_map'
    )
    assert status == 0, err
    uid, pid, uid_map = out.splitlines()
    assert (uid, pid, uid_map.split()) == ("0", "2", ["0", "65534", "1"])


def test_user_alone_maps_nothing() -> None:
    result = run_cli("run", "-U", "--", "sh", "-c", "id -u; wc -l < /proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["65534", "0"]  # the overflow uid: nothing is mapped


def test_kill_child_takes_an_attached_signal() -> None:
    script = 'trap "exit 0" TERM; echo ready; while :; do sleep 0.02; done'
    with Marker() as marker:
        launcher = run_until_ready(["--kill-child=TERM"], script, marker.path)
        launcher.kill()
        launcher.wait()
        assert marker.survivors() == []
    assert run_cli("run", "--kill-child=NOPE", "true").returncode == 2
    assert run_cli("run", "--kill-child", "TERM", "true").returncode == 127  # TERM: the command


def test_mount_without_proc_and_proc_elsewhere(tmp_path: os.PathLike[str]) -> None:
    host_mnt = os.readlink("/proc/self/ns/mnt")
    result = run_cli(
        "run",
        "-m",
        "--no-mount-proc",
        "--",
        "sh",
        "-c",
        "readlink /proc/self/ns/mnt; cat /proc/1/comm",
    )
    assert result.returncode == 0, result.stderr
    mnt, comm = result.stdout.split()
    assert mnt != host_mnt and comm != "pidns-init"  # a mount namespace, the host's /proc
    target = os.fspath(tmp_path)
    before = proc_mounts()
    result = run_cli("run", f"--mount-proc={target}", "--", "sh", "-c", f"cat {target}/1/comm")
    assert (result.returncode, result.stdout) == (0, "pidns-init\n"), result.stderr
    assert os.listdir(target) == [] and proc_mounts() == before


@pytest.mark.parametrize(
    ("mode", "tag"), [("private", None), ("shared", "shared:"), ("slave", "master:"),
                      ("unchanged", "shared:")],
)  # fmt: skip
def test_propagation(mode: str, tag: str | None) -> None:
    """A shared mount of our own (in a private mount namespace made for the test): what
    becomes of it in the run's mount namespace."""
    optional = propagation_seen(mode)
    if tag is None:
        assert optional == []
    else:
        assert any(field.startswith(tag) for field in optional), optional
    assert run_cli("run", "--propagation", "sideways", "true").returncode == 2


def test_setgroups_allow_and_deny() -> None:
    for value in ("allow", "deny"):
        result = run_cli(
            "run", "-U", "--map-user=0", f"--setgroups={value}", "--",
            "cat", "/proc/self/setgroups",
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (0, f"{value}\n"), result.stderr
    assert run_cli("run", "-r", "--", "cat", "/proc/self/setgroups").stdout == "deny\n"
    # a gid map the namespace writes itself needs setgroups denied (as unshare refuses it)
    result = run_cli("run", "-r", "--setgroups", "allow", "--", "true")
    assert result.returncode == 2 and "exclude each other" in result.stderr
    status, out, err = cli_as_nobody("run", "-U", "--setgroups", "deny", "--", "cat",
                                     "/proc/self/setgroups")  # fmt: skip
    assert (status, out) == (0, "deny\n"), err


def test_root_and_wd() -> None:
    result = run_cli(
        "run", "--no-mount-proc", "-R", "/usr", "-w/lib", "--", "sh", "-c", "ls /; pwd"
    )
    assert result.returncode == 0, result.stderr
    *listing, cwd = result.stdout.split()
    assert sorted(listing) == sorted(os.listdir("/usr"))
    assert cwd == "/lib"
    missing = run_cli("run", "--no-mount-proc", "-R", "/usr", "--", "no-such-command-pidns")
    assert missing.returncode == 127
    bad = run_cli("run", "-w", "/no-such-dir-pidns", "--", "true")
    assert bad.returncode == 125 and "working directory" in bad.stderr


def test_setuid_setgid_and_map_user() -> None:
    result = run_cli("run", "-S", "65534", "-G65534", "--", "sh", "-c", "id -u; id -g; id -G")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["65534", "65534", "65534"]  # supplementary groups gone
    result = run_cli(
        "run", "--map-user", "1000", "--map-group", "1000", "--", "sh", "-c",
        "id -u; id -g; cat /proc/self/uid_map",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    uid, gid, *uid_map = result.stdout.split()
    assert (uid, gid, uid_map) == ("1000", "1000", ["1000", "0", "1"])
    status, out, err = cli_as_nobody("run", "-r", "-S", "0", "-G", "0", "--", "id", "-u")
    assert (status, out) == (0, "0\n"), err


@pytest.fixture
def subids() -> Iterator[str]:
    """A directory for uid 65534 to work in; /etc/subuid and /etc/subgid are replaced,
    in the scenario's own mount namespace only (see _grant)."""
    if shutil.which("newuidmap") is None:
        pytest.skip("newuidmap is not installed (Debian's uidmap package)")
    directory = tempfile.mkdtemp(prefix="pidns-test-")
    os.chmod(directory, 0o777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def _grant(directory: str, line: str) -> None:
    """In a mount namespace of the calling child: /etc/subuid and /etc/subgid say ``line``."""
    syscalls.unshare(cf.NEWNS)
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    for name in ("subuid", "subgid"):
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(line)
        syscalls.mount(path, f"/etc/{name}", None, syscalls.MS_BIND)


def test_subordinate_ids_let_chown_work_unprivileged(subids: str) -> None:
    def scenario() -> tuple[int, str, str, str]:
        _grant(subids, "nobody:200000:65536\n")
        drop_privileges()
        os.chdir(subids)
        status, out, err = cli_captured(
            ["run", "--map-auto", "-r", "--", "sh", "-c",
             "cat /proc/self/uid_map; touch f; chown 1000:1000 f; stat -c %u:%g f"]
        )  # fmt: skip
        st = os.stat(os.path.join(subids, "f"))
        return status, out, err, f"{st.st_uid}:{st.st_gid}"

    status, out, err, outside = in_child(scenario)
    assert status == 0, err
    *maps, inside = out.splitlines()
    assert [line.split() for line in maps] == [["0", "65534", "1"], ["1", "200001", "65535"]]
    assert inside == "1000:1000"
    assert outside == "201000:201000"  # 1000 inside is 200001 + 999 outside


def test_subordinate_ranges_given_explicitly_and_refused(subids: str) -> None:
    def scenario() -> list[tuple[int, str, str]]:
        _grant(subids, "65534:300000:10\n")
        drop_privileges()
        return [
            cli_captured(["run", "--map-users=1:300000:10", "--map-groups=300000,1,10",
                          "-r", "--", "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map"]),
            cli_captured(["run", "--map-users=1:400000:10", "-r", "--", "true"]),
        ]  # fmt: skip

    granted, refused = in_child(scenario)
    assert granted[0] == 0, granted[2]
    lines = [line.split() for line in granted[1].splitlines()]
    assert lines == [["0", "65534", "1"], ["1", "300000", "10"]] * 2
    assert refused[0] == 125
    assert refused[2].startswith("pidns run: cannot map the ids: newuidmap refused")
    assert refused[2].count("\n") == 1


def test_map_auto_without_a_grant_is_a_usage_error(subids: str) -> None:
    def scenario() -> tuple[int, str, str]:
        _grant(subids, "someone-else:100000:65536\n")
        drop_privileges()
        return cli_captured(["run", "--map-auto", "--", "true"])

    status, _, err = in_child(scenario)
    assert status == 2
    assert "/etc/subuid grants no subordinate ids to nobody (65534)" in err


@pytest.mark.parametrize("command", COMMANDS)
def test_version_on_every_subcommand(command: str) -> None:
    for flag in ("-V", "--version"):
        result = run_cli(command, flag)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("pidns ")
    if command == "stop":  # after a name too, as a table option
        result = run_cli(command, "db", "--version")
        assert (result.returncode, result.stdout.startswith("pidns ")) == (0, True), result


def test_unprivileged_root_wd_mount_proc_dir_user_and_map_user() -> None:
    directory = tempfile.mkdtemp(prefix="pidns-test-")
    os.chmod(directory, 0o777)

    def scenario() -> list[tuple[int, str, str]]:
        return [
            cli_captured(["run", "--no-mount-proc", "-R", "/usr", "-w", "/lib", "--", "pwd"]),
            cli_captured(["run", f"--mount-proc={directory}", "--", "cat", f"{directory}/1/comm"]),
            cli_captured(["run", "-U", "--", "id", "-u"]),
            cli_captured(["run", "--map-user=1000", "--map-group=1000", "--", "sh", "-c",
                          "id -u; id -g"]),
        ]  # fmt: skip

    try:
        results = in_child(scenario, nobody=True)
    finally:
        os.rmdir(directory)
    assert [r[0] for r in results] == [0, 0, 0, 0], [r[2] for r in results]
    assert [r[1] for r in results] == ["/lib\n", "pidns-init\n", "65534\n", "1000\n1000\n"]


def test_unprivileged_socket_activation() -> None:
    def scenario() -> tuple[int, str, str]:
        os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS="1")
        return cli_captured(["run", "--", "sh", "-c", 'echo "$LISTEN_PID $LISTEN_FDS"'])

    status, out, err = in_child(scenario, nobody=True)
    assert (status, out) == (0, "2 1\n"), err
