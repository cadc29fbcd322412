"""Measure profile rows (docs/profiles.md) directly with system calls, on whatever kernel
this runs on, and print them as JSON: how tests/test_kernel_rows.py verifies the rows
on booted kernels where the real scenario backend cannot run (3.8 has no pidfds).

Standard library only, run as root: in a guest of ``pidns check --kernel`` (where it may
also change the guest's global pid_max), or on the host with ``--host`` (read-only for
everything global). Every process it makes is its own child and reaped before it ends.

    python3 tests/kernel_rows.py [--host]
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import struct
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_PARENT = 0x00008000
SYS_CLONE = 56
_libc = ctypes.CDLL(None, use_errno=True)
_gil = ctypes.PyDLL(None, use_errno=True)
_gil.syscall.restype = ctypes.c_long


def unshare(flags: int) -> int:
    """0 or the errno."""
    return 0 if _libc.unshare(ctypes.c_int(flags)) == 0 else ctypes.get_errno()


def raw_clone(flags: int) -> int:
    """clone(2) without CPython's fork hooks: the child must only os._exit."""
    pid = int(_gil.syscall(ctypes.c_long(SYS_CLONE), ctypes.c_long(flags), ctypes.c_long(0)))
    return pid if pid >= 0 else -ctypes.get_errno()


def in_child(body: object) -> object:
    """Run ``body()`` in a forked child; its JSON-able result comes back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            result = body()  # type: ignore[operator]
        except BaseException as exc:
            result = {"error": repr(exc)}
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def _errno_name(err: int | None) -> str | None:
    return None if err is None else errno.errorcode.get(err, str(err))


def too_deep() -> object:
    """unshare(NEWPID) and fork, level after level: the errno of the first refusal."""

    def body() -> object:
        for level in range(1, 40):
            err = unshare(CLONE_NEWPID)
            if err:
                return {"level": level, "errno": _errno_name(err)}
            pid = os.fork()
            if pid:  # the parent waits for the chain below it, passing its report on
                os._exit(os.waitpid(pid, 0)[1] >> 8)
        return {"level": None, "errno": None}

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        result = body()
        os.write(w, json.dumps(result).encode())
        os._exit(0)
    os.close(w)
    data = os.read(r, 4096)
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def user_ns_too_deep() -> object:
    def body() -> object:
        for level in range(1, 41):
            err = unshare(CLONE_NEWUSER)
            if err:
                return {"level": level, "errno": _errno_name(err)}
            # root of the new one, mapped to root of the last, so that it may nest again
            for name, text in (("setgroups", "deny"), ("uid_map", "0 0 1"), ("gid_map", "0 0 1")):
                try:
                    with open(f"/proc/self/{name}", "w") as f:
                        f.write(text)
                except FileNotFoundError:  # no setgroups file before 3.19
                    pass
        return {"level": None, "errno": None}

    return in_child(body)


def newpid_with_parent() -> object:
    """clone(NEWPID|PARENT) from a helper, so the child is ours to reap."""

    def helper() -> object:
        pid = raw_clone(CLONE_NEWPID | CLONE_PARENT | signal.SIGCHLD)
        if pid == 0:
            os._exit(0)
        return {"errno": _errno_name(-pid) if pid < 0 else None, "pid": max(pid, 0)}

    result = in_child(helper)
    if isinstance(result, dict) and result.get("pid"):
        os.waitpid(result["pid"], 0)  # CLONE_PARENT made it our child
    return result


def pid_for_children_before_init() -> object:
    def body() -> object:
        path = "/proc/self/ns/pid_for_children"
        before = os.path.lexists(path)
        err = unshare(CLONE_NEWPID)
        if err:
            return {"error": _errno_name(err)}
        try:
            os.close(os.open(path, os.O_RDONLY))
            opened = None
        except OSError as exc:
            opened = _errno_name(exc.errno)
        return {"link": before, "open_before_init": opened}

    return in_child(body)


def pid_max_in_new_namespace() -> object:
    """pid_max as a new pid namespace's init reads it, beside the caller's."""

    def body() -> object:
        with open("/proc/sys/kernel/pid_max") as f:
            outside = int(f.read())
        err = unshare(CLONE_NEWPID)
        if err:
            return {"error": _errno_name(err)}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            with open("/proc/sys/kernel/pid_max") as f:  # a sysctl of the reader's ns
                os.write(w, f.read().strip().encode())
            os._exit(0)
        os.close(w)
        inside = int(os.read(r, 64))
        os.waitpid(pid, 0)
        return {"outside": outside, "inside": inside}

    return in_child(body)


def pid_space_full(pid_max: int = 330) -> object:
    """Fork until no pid is left under a small global pid_max (guests only): the errno."""
    path = "/proc/sys/kernel/pid_max"
    with open(path) as f:
        saved = f.read()
    children: list[int] = []
    r, w = os.pipe()
    err: int | None = None
    try:
        with open(path, "w") as f:
            f.write(str(pid_max))
        for _ in range(pid_max + 10):
            try:
                pid = os.fork()
            except OSError as exc:
                err = exc.errno
                break
            if pid == 0:
                os.close(w)
                os.read(r, 1)  # until the pipe closes
                os._exit(0)
            children.append(pid)
    finally:
        with open(path, "w") as f:
            f.write(saved)
        os.close(w)
        os.close(r)
        for pid in children:
            os.waitpid(pid, 0)
    return {"errno": _errno_name(err), "forked": len(children)}


SIGUSR2 = int(signal.SIGUSR2)


def _signalfd(signo: int) -> int:
    mask = (ctypes.c_ulong * 16)()
    mask[(signo - 1) // 64] |= 1 << ((signo - 1) % 64)
    fd = _libc.signalfd(ctypes.c_int(-1), ctypes.byref(mask), ctypes.c_int(os.O_CLOEXEC))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "signalfd")
    return int(fd)


def group_kill_siginfo() -> object:
    """kill(0): D (sees the sender) after E (a new namespace's init, newest, visited
    first): the si_pid D gets."""

    def body() -> object:
        os.setsid()
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        ready_r, ready_w = os.pipe()
        done_r, done_w = os.pipe()
        d = os.fork()
        if d == 0:
            signal.pthread_sigmask(signal.SIG_BLOCK, [SIGUSR2])
            signal.signal(signal.SIGUSR2, lambda *_: None)  # a handler: not ignored
            fd = _signalfd(SIGUSR2)
            os.write(ready_w, b"r")
            select.select([fd], [], [], 30)
            data = os.read(fd, 128)
            os.write(done_w, str(struct.unpack_from("IiiI", data)[3]).encode())
            os._exit(0)
        os.read(ready_r, 1)
        err = unshare(CLONE_NEWPID)
        if err:
            return {"error": _errno_name(err)}
        e = os.fork()  # E: pid 1 of the new namespace, which cannot see us; it ignores USR2
        if e == 0:
            os.read(ready_r, 1)  # until we are done
            os._exit(0)
        os.kill(0, SIGUSR2)
        got = int(os.read(done_r, 64))
        os.close(ready_w)
        os.waitpid(d, 0)
        os.kill(e, signal.SIGKILL)
        os.waitpid(e, 0)
        return {"sender": os.getpid(), "si_pid": got}

    return in_child(body)


def main() -> None:
    host = "--host" in sys.argv[1:]
    rows: dict[str, object] = {
        "release": os.uname().release,
        "too_deep": too_deep(),
        "user_ns_too_deep": user_ns_too_deep(),
        "newpid_with_parent": newpid_with_parent(),
        "pid_for_children": pid_for_children_before_init(),
        "pid_max": pid_max_in_new_namespace(),
        "group_kill": group_kill_siginfo(),
    }
    if not host:  # it changes the global pid_max for a moment: a guest's only
        rows["pid_space_full"] = pid_space_full()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
