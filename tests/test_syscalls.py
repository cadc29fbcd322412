"""pidns.linux.syscalls on the real kernel. Each test runs in a forked child, so that
namespaces, masks and mounts it changes never touch the pytest process."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import tempfile

import pytest

import pidns
from pidns.core import flags as cf
from pidns.linux import nsfs, syscalls
from test_run_support import in_child, needs_root

pytestmark = [pytest.mark.real, needs_root]


def _wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def _get(option: int) -> int:
    value = ctypes.c_int(-1)
    syscalls.prctl(option, ctypes.addressof(value))
    return value.value


def test_signalfd_reads_blocked_signals_with_their_sender() -> None:
    def scenario() -> list[tuple[int, int, int, int]]:
        wanted = [int(signal.SIGUSR1), int(signal.SIGCHLD)]
        signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
        fd = syscalls.signalfd(wanted)
        found = [syscalls.read_signals(fd)]  # nothing pending: []
        os.kill(os.getpid(), signal.SIGUSR1)
        child = os.fork()
        if child == 0:
            os._exit(3)
        os.waitid(os.P_PID, child, os.WEXITED | os.WNOWAIT)
        found.append(syscalls.read_signals(fd))
        os.waitpid(child, 0)
        return [(os.getpid(), child, 0, 0)] + [
            (i.signo, i.code, i.pid, i.uid) for batch in found for i in batch
        ]

    (me, child, _, _), *signals = in_child(scenario)
    assert signals == [
        (signal.SIGUSR1, syscalls.SI_USER, me, 0),  # sent by itself
        (signal.SIGCHLD, os.CLD_EXITED, child, 0),
    ]


def test_signalfd_refuses_a_bad_fd_flag() -> None:
    with pytest.raises(OSError) as caught:
        syscalls.signalfd([int(signal.SIGUSR1)], flags=0x40000000)
    assert caught.value.errno == errno.EINVAL


def test_clone_and_clone_bare_make_pid_1_of_a_new_namespace() -> None:
    def scenario() -> tuple[int, int, bool]:
        statuses = []
        for make in (syscalls.clone, syscalls.clone_bare):
            pid, pidfd = make(cf.NEWPID, want_pidfd=True)
            if pid == 0:
                os._exit(40 + os.getpid())  # 41: pid 1 inside
            statuses.append(_wait(pid))
            os.close(pidfd)
        with_set_tid, _ = syscalls.clone(cf.NEWPID, set_tid=[1])
        if with_set_tid == 0:
            os._exit(os.getpid())
        return statuses[0], statuses[1], _wait(with_set_tid) == 1

    assert in_child(scenario) == (41, 41, True)
    with pytest.raises(ValueError):
        syscalls.clone_bare(cf.VM)


def test_unshare_and_setns_move_only_the_pid_namespace_for_children() -> None:
    def scenario() -> tuple[int, int, bool]:
        own = os.open("/proc/self/ns/pid", os.O_RDONLY)
        home = os.fstat(own).st_ino
        syscalls.unshare(cf.NEWPID)
        first = os.fork()
        if first == 0:
            os._exit(os.getpid())  # 1: the init of the new namespace
        syscalls.setns(own, cf.NEWPID)  # back to our own namespace for the next child
        second = os.fork()
        if second == 0:
            at_home = os.stat("/proc/self/ns/pid").st_ino == home and os.getpid() != 1
            os._exit(0 if at_home else 1)
        unmoved = os.stat("/proc/self/ns/pid").st_ino == home
        return _wait(first), _wait(second), unmoved

    assert in_child(scenario) == (1, 0, True)


def test_setns_through_a_pidfd_and_pidfd_send_signal() -> None:
    with pidns.Popen(["sleep", "60"]) as process:

        def scenario() -> tuple[int, int]:
            pidfd = syscalls.pidfd_open(process.pid)
            syscalls.setns(pidfd, cf.NEWPID)
            child = os.fork()
            if child == 0:
                os._exit(os.getpid())
            joined = _wait(child)
            syscalls.pidfd_send_signal(pidfd, signal.SIGTERM)
            return joined, 0

        joined, _ = in_child(scenario)
        assert joined == 3
        assert process.wait(5) == -signal.SIGTERM


def test_pid_in_ns_translates_into_a_namespace() -> None:
    with pidns.Popen(["sleep", "60"]) as process:
        fd = os.open(f"/proc/{process.init_pid}/ns/pid", os.O_RDONLY)
        try:
            assert nsfs.pid_in(fd, process.pid) == 2
            assert nsfs.pid_in(fd, process.init_pid) == 1
            with pytest.raises(OSError) as caught:
                nsfs.pid_in(fd, os.getpid())
            assert caught.value.errno == errno.ESRCH
            assert syscalls.ns_ioctl(fd, nsfs.NS_GET_NSTYPE) == cf.NEWPID
            again = os.open(f"/proc/{process.pid}/ns/pid", os.O_RDONLY)
            mine = os.open("/proc/self/ns/pid", os.O_RDONLY)
            assert nsfs.id_or_inode(fd) == nsfs.id_or_inode(again) != nsfs.id_or_inode(mine)
            os.close(again)
            os.close(mine)
        finally:
            os.close(fd)


def test_prctl_subreaper_parent_death_signal_and_dumpable() -> None:
    def scenario() -> tuple[int, int, int, int]:
        syscalls.set_child_subreaper(True)
        syscalls.set_parent_death_signal(signal.SIGUSR2)
        before = syscalls.prctl(syscalls.PR_GET_DUMPABLE)
        syscalls.prctl(syscalls.PR_SET_DUMPABLE, 0)
        return (
            _get(syscalls.PR_GET_CHILD_SUBREAPER),
            _get(syscalls.PR_GET_PDEATHSIG),
            before,
            syscalls.prctl(syscalls.PR_GET_DUMPABLE),
        )

    assert in_child(scenario) == (1, signal.SIGUSR2, 1, 0)
    with pytest.raises(OSError) as caught:
        syscalls.prctl(-1)
    assert caught.value.errno == errno.EINVAL


def test_mount_and_umount_in_a_private_mount_namespace() -> None:
    target = tempfile.mkdtemp()

    def scenario() -> tuple[bool, bool, bool]:
        syscalls.unshare(cf.NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        syscalls.mount("pidns-syscalls", target, "tmpfs", syscalls.MS_NOSUID, "size=1m")
        with open("/proc/self/mountinfo") as f:
            mounted = "pidns-syscalls" in f.read()
        ok_error = False
        try:
            syscalls.mount(None, "/no/such/dir", "tmpfs")
        except FileNotFoundError:
            ok_error = True
        syscalls.umount(target)
        with open("/proc/self/mountinfo") as f:
            gone = "pidns-syscalls" not in f.read()
        return mounted, ok_error, gone

    try:
        assert in_child(scenario) == (True, True, True)
        with open("/proc/self/mountinfo") as f:
            assert "pidns-syscalls" not in f.read()
    finally:
        os.rmdir(target)


def test_the_new_mount_api_mounts_a_procfs() -> None:
    target = tempfile.mkdtemp()

    def scenario() -> bool:
        syscalls.unshare(cf.NEWNS)
        syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        context = syscalls.fsopen("proc")
        syscalls.fsconfig(context, syscalls.FSCONFIG_CMD_CREATE)
        mount = syscalls.fsmount(context, attr_flags=syscalls.MOUNT_ATTR_NOSUID)
        syscalls.move_mount(mount, "", syscalls.AT_FDCWD, target, syscalls.MOVE_MOUNT_F_EMPTY_PATH)
        return os.readlink(os.path.join(target, "self")) == str(os.getpid())

    try:
        assert in_child(scenario) is True
    finally:
        os.rmdir(target)
