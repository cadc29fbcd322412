"""pam_pidns's session logic on the real kernel, without PAM: each test runs in a forked child
(the namespaces it changes are the child's own), which reports back as JSON.

Covers what a login sees (its next child is pid 1, with mount_proc /proc shows only the
session), the failure policy (nothing stays changed: unprivileged callers, a fault in the
middle of the mount setup) and close_session's return to the original namespaces.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
from collections.abc import Callable
from typing import Any

import pytest

from pidns.core import flags as cf
from pidns.linux import syscalls as sc
from pidns.pam import procfs, session
from pidns.pam.codes import PAM_IGNORE, PAM_SESSION_ERR, PAM_SUCCESS
from pidns.pam.log import Log
from pidns.pam.options import parse

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(os.geteuid() != 0, reason="pam_pidns runs as root in login programs"),
]


def in_child(body: Callable[[], dict[str, Any]], timeout: float = 10.0) -> dict[str, Any]:
    """Run ``body`` in a forked child and return what it returned (or its exception)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            result = body()
        except BaseException as error:
            result = {"exception": f"{type(error).__name__}: {error}"}
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    try:
        chunks = []
        while select.select([read_end], [], [], timeout)[0]:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the child did not finish within {timeout}s")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    report: dict[str, Any] = json.loads(b"".join(chunks))
    assert "exception" not in report, report["exception"]
    return report


def capture() -> tuple[Log, list[str]]:
    lines: list[str] = []
    return Log("test", debug=True, sink=lambda _prio, text: lines.append(text)), lines


def ns(kind: str) -> str:
    try:
        return os.readlink(f"/proc/thread-self/ns/{kind}")
    except OSError as error:
        return errno.errorcode[error.errno or 0]


def first_child_view() -> dict[str, Any]:
    """Fork the 'shell': it reports its pid, its parent, and what /proc lists."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        view = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "proc_pids": sorted(int(n) for n in os.listdir("/proc") if n.isdigit())[:5],
            "ns": os.readlink("/proc/self/ns/pid"),
        }
        os.write(write_end, json.dumps(view).encode())
        os._exit(0)
    os.close(write_end)
    data = os.read(read_end, 65536)
    os.close(read_end)
    os.waitpid(pid, 0)
    seen: dict[str, Any] = json.loads(data)
    return seen


def test_the_next_child_is_pid_1_with_parent_0_and_close_returns() -> None:
    def body() -> dict[str, Any]:
        log, lines = capture()
        before = ns("pid")
        code = session.open_session(1, "nobody", parse([]), log)
        pending = ns("pid_for_children")  # no init yet: does not resolve
        shell = first_child_view()
        closed = session.close_session(1, log)
        return {
            "code": code,
            "pending": pending,
            "shell": shell,
            "closed": closed,
            "back": ns("pid_for_children") == before,
            "lines": lines,
        }

    result = in_child(body)
    assert result["code"] == PAM_SUCCESS
    assert result["pending"] == "ENOENT"
    assert result["shell"]["pid"] == 1
    assert result["shell"]["ppid"] == 0
    # without mount_proc, /proc is still the host's: it shows more than the session
    assert len(result["shell"]["proc_pids"]) == 5
    assert result["closed"] == PAM_SUCCESS
    assert result["back"]
    info = [line for line in result["lines"] if "new pid namespace" in line]
    assert info == [
        f"pam_pidns(test:session): nobody: new pid namespace {result['shell']['ns']} "
        "for the next child"
    ]


def test_mount_proc_shows_only_the_session_and_close_restores_the_mount_namespace(
    tmp_path: Any,
) -> None:
    def body() -> dict[str, Any]:
        os.chdir(tmp_path)
        log, lines = capture()
        mnt_before = ns("mnt")
        code = session.open_session(7, "nobody", parse(["mount_proc"]), log)
        mnt_during = ns("mnt")
        shell = first_child_view()
        # the login process itself cannot see itself in the session's /proc
        self_visible = os.path.exists(f"/proc/{os.getpid()}")
        closed = session.close_session(7, log)
        return {
            "code": code,
            "shell": shell,
            "self_visible": self_visible,
            "changed": mnt_during != mnt_before,
            "closed": closed,
            "mnt_back": ns("mnt") == mnt_before,
            "cwd": os.getcwd(),
            "host_proc_back": os.path.exists(f"/proc/{os.getpid()}"),
            "lines": lines,
        }

    result = in_child(body)
    assert result["code"] == PAM_SUCCESS, result["lines"]
    assert result["changed"]
    assert result["shell"]["pid"] == 1
    assert result["shell"]["proc_pids"] == [1]
    assert not result["self_visible"]
    assert result["closed"] == PAM_SUCCESS
    assert result["mnt_back"]
    assert result["host_proc_back"]
    assert result["cwd"] == str(tmp_path)
    assert any("with its own /proc" in line for line in result["lines"])


def test_a_user_not_selected_gets_nothing() -> None:
    def body() -> dict[str, Any]:
        log, lines = capture()
        before = ns("pid")
        code = session.open_session(1, "nobody", parse(["users=root"]), log)
        return {"code": code, "same": ns("pid_for_children") == before, "lines": lines}

    result = in_child(body)
    assert result["code"] == PAM_IGNORE
    assert result["same"]
    assert result["lines"] == [
        "pam_pidns(test:session): nobody is neither in users nor in a group of groups: "
        "no pid namespace"
    ]


def test_without_cap_sys_admin_the_session_is_refused_and_nothing_changes() -> None:
    def body() -> dict[str, Any]:
        os.setgid(65534)
        os.setgroups([])
        os.setuid(65534)
        log, lines = capture()
        before = {kind: ns(kind) for kind in ("pid", "pid_for_children", "mnt")}
        code = session.open_session(1, "nobody", parse(["mount_proc"]), log)
        after = {kind: ns(kind) for kind in ("pid", "pid_for_children", "mnt")}
        return {"code": code, "same": before == after, "lines": lines}

    result = in_child(body)
    assert result["code"] == PAM_SESSION_ERR
    assert result["same"]
    assert (
        "pam_pidns(test:session): unshare(CLONE_NEWPID): Operation not permitted; session refused"
        in result["lines"]
    )


def test_a_fault_after_the_mount_namespace_changed_undoes_everything(tmp_path: Any) -> None:
    def body() -> dict[str, Any]:
        os.chdir(tmp_path)
        log, lines = capture()
        before = {kind: ns(kind) for kind in ("pid", "pid_for_children", "mnt")}

        def broken_attach(mount_fd: int, target: str = "/proc") -> None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))

        procfs.attach = broken_attach  # the child's copy only
        code = session.open_session(1, "nobody", parse(["mount_proc"]), log)
        after = {kind: ns(kind) for kind in ("pid", "pid_for_children", "mnt")}
        reopened = session.open_session(1, "nobody", parse([]), log)  # not left registered
        return {"code": code, "before": before, "after": after, "cwd": os.getcwd(),
                "reopened": reopened, "lines": lines}  # fmt: skip

    result = in_child(body)
    assert result["code"] == PAM_SESSION_ERR
    assert result["after"] == result["before"]
    assert result["cwd"] == str(tmp_path)
    assert result["reopened"] == PAM_SUCCESS
    assert (
        "pam_pidns(test:session): move_mount(procfs, /proc): Input/output error; session refused"
        in result["lines"]
    )


def test_a_kernel_without_procfs_pidns_falls_back_to_the_pid_namespace_alone() -> None:
    def body() -> dict[str, Any]:
        log, lines = capture()
        mnt_before = ns("mnt")

        def old_kernel(ns_fd: int) -> int:
            raise procfs.Unsupported("this kernel's procfs has no pidns= mount option")

        procfs.detached_proc = old_kernel
        code = session.open_session(1, "nobody", parse(["mount_proc"]), log)
        shell = first_child_view()
        return {"code": code, "shell": shell, "mnt_same": ns("mnt") == mnt_before, "lines": lines}

    result = in_child(body)
    assert result["code"] == PAM_SUCCESS
    assert result["shell"]["pid"] == 1
    assert result["mnt_same"]
    assert (
        "pam_pidns(test:session): mount_proc: this kernel's procfs has no pidns= mount option: "
        "/proc is left as is (ps shows every process)" in result["lines"]
    )


def test_a_second_open_on_the_same_handle_is_refused() -> None:
    def body() -> dict[str, Any]:
        log, lines = capture()
        first = session.open_session(3, "nobody", parse([]), log)
        second = session.open_session(3, "nobody", parse([]), log)
        return {"first": first, "second": second, "lines": lines}

    result = in_child(body)
    assert result["first"] == PAM_SUCCESS
    assert result["second"] == PAM_SESSION_ERR
    assert any("already open on this PAM handle" in line for line in result["lines"])


def test_the_pidfd_ioctl_yields_the_namespace_before_it_has_an_init() -> None:
    def body() -> dict[str, Any]:
        sc.unshare(cf.NEWPID)
        fd = procfs.namespace_for_children()
        inode = os.fstat(fd).st_ino
        cloexec = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        shell = first_child_view()
        return {"inode": inode, "shell_ns": shell["ns"], "cloexec": cloexec}

    result = in_child(body)
    assert result["shell_ns"] == f"pid:[{result['inode']}]"
    assert result["cloexec"]


def test_close_session_in_a_forked_child_leaves_the_session_alone() -> None:
    def body() -> dict[str, Any]:
        log, lines = capture()
        session.open_session(5, "nobody", parse([]), log)
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pid 1 of the session, closing its inherited copy of the handle
            code = session.close_session(5, log)
            os.write(write_end, json.dumps([code, os.getpid(), lines[-1]]).encode())
            os._exit(0)
        os.close(write_end)
        child = json.loads(os.read(read_end, 65536))
        os.waitpid(pid, 0)
        return {"child": child, "parent": session.close_session(5, log)}

    result = in_child(body)
    assert result["child"] == [
        PAM_IGNORE,
        1,
        "pam_pidns(test:session): close_session in a child of the process that opened the "
        "session: ignored",
    ]
    assert result["parent"] == PAM_SUCCESS
