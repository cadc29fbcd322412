"""Measure profile rows (docs/profiles.md) directly with system calls, on whatever kernel
this runs on, and print them as JSON: how tests/test_kernel_rows.py verifies the rows
on booted kernels where the real scenario backend cannot run (3.8 has no pidfds).

Standard library only, run as root: in a guest of ``pidns check --kernel`` (where it may
also change the guest's global pid_max), or on the host with ``--host`` (read-only for
everything global). Every process it makes is its own child and reaped before it ends.

    python3 tests/kernel_rows.py [--host]
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import select
import signal
import struct
import sys
import time

from pidns.linux import features

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


WALL, WCLONE, WNOTHREAD, WNOWAIT = 0x40000000, 0x80000000, 0x20000000, 0x01000000


def _waitid(idtype: int, ident: int, extra: int) -> str | None:
    """waitid(WEXITED|WNOHANG|WNOWAIT|extra): None when the kernel took it, else the errno."""
    try:
        os.waitid(idtype, ident, os.WEXITED | os.WNOHANG | WNOWAIT | (extra & 0xFFFFFFFF))
    except OSError as exc:
        return _errno_name(exc.errno)
    except OverflowError:  # __WCLONE is bit 31: a negative C int
        os.waitid(idtype, ident, os.WEXITED | os.WNOHANG | WNOWAIT | extra - (1 << 32))
    return None


def waitid_flags() -> object:
    """Which waitid(2) calls the kernel refuses: __WALL/__WCLONE/__WNOTHREAD, P_PGID 0; and
    wait4 with WNOWAIT. The child is a zombie (a WNOWAIT waitid without flags saw it)."""

    def body() -> object:
        os.setpgid(0, 0)  # a group of our own (a guest's init may leave us in group 0)
        child = os.fork()
        if child == 0:
            os._exit(7)
        os.waitid(os.P_PID, child, os.WEXITED | WNOWAIT)
        found: dict[str, str | None] = {
            "pid_wall": _waitid(os.P_PID, child, WALL),
            "all_wall": _waitid(os.P_ALL, 0, WALL),
            "pid_wnothread": _waitid(os.P_PID, child, WNOTHREAD),
            "pgid_zero": _waitid(os.P_PGID, 0, 0),
            "pgid_own": _waitid(os.P_PGID, os.getpgid(0), 0),
        }
        try:
            os.waitpid(child, os.WNOHANG | WNOWAIT)
            found["wait4_nowait"] = None
        except OSError as exc:
            found["wait4_nowait"] = _errno_name(exc.errno)
        os.waitpid(child, 0)
        return found

    return in_child(body)


def unshare_with_a_thread() -> object:
    """unshare(NEWPID) while a second thread exists (3.8 implies CLONE_THREAD: EINVAL)."""

    def body() -> object:
        import threading  # noqa: PLC0415

        stop = threading.Event()
        thread = threading.Thread(target=stop.wait)
        thread.start()
        err = unshare(CLONE_NEWPID)
        stop.set()
        thread.join()
        return {"errno": _errno_name(err) if err else None}

    return in_child(body)


CLONE_NEWCGROUP = 0x02000000
CLONE_NEWTIME = 0x00000080


def unshare_flags() -> object:
    """unshare(NEWCGROUP), unshare(NEWTIME), each in a child of its own: 0 or the errno."""
    found = {}
    for name, flag in (("newcgroup", CLONE_NEWCGROUP), ("newtime", CLONE_NEWTIME)):
        found[name] = in_child(lambda flag=flag: _errno_name(unshare(flag) or None))
    return found


CLONE_VM, CLONE_SIGHAND, CLONE_THREAD = 0x100, 0x800, 0x10000
SYS_EXIT = 60


def _clone_exiting(flags: int) -> str | None:
    """libc clone(2) of a child on a stack of its own that only calls exit(2) (libc's
    syscall(SYS_exit) as its function): None when made (and reaped), else the errno."""
    stack = ctypes.create_string_buffer(1 << 16)
    top = (ctypes.addressof(stack) + (1 << 16)) & ~15
    fn = ctypes.cast(_libc.syscall, ctypes.c_void_p)
    _libc.clone.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    pid = _libc.clone(fn, ctypes.c_void_p(top), flags, ctypes.c_void_p(SYS_EXIT))
    if pid < 0:
        return _errno_name(ctypes.get_errno())
    if not flags & CLONE_THREAD:
        with contextlib.suppress(ChildProcessError):  # reaped already if it was the init
            os.waitpid(pid, WALL)
    return None


def pending_ns_clone() -> object:
    """clone with VM, VM|SIGHAND, THREAD|SIGHAND|VM after unshare(NEWPID) (each in a child
    and a namespace of its own: an init made and gone leaves a dead one): which the
    kernel refuses (pending_ns_refuses)."""

    def attempt(flags: int) -> object:
        err = unshare(CLONE_NEWPID)
        return {"error": _errno_name(err)} if err else _clone_exiting(flags)

    return {
        name: in_child(lambda flags=flags: attempt(flags))
        for name, flags in (
            ("vm", CLONE_VM | signal.SIGCHLD),
            ("vm_sighand", CLONE_VM | CLONE_SIGHAND | signal.SIGCHLD),
            ("thread", CLONE_THREAD | CLONE_SIGHAND | CLONE_VM),
        )
    }


def _namespace_of_a_new_userns() -> tuple[int, int]:
    """A helper (our child) that made a user and a pid namespace and forked their init I:
    (helper, I's pid). SIGKILL I to end both."""
    r, w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(r)
        err = unshare(CLONE_NEWUSER | CLONE_NEWPID)
        if err:
            os.write(w, b"-1")
            os._exit(1)
        init = os.fork()
        if init == 0:
            os.close(w)
            while True:  # the namespace's reaper until it is killed
                try:
                    os.wait()
                except ChildProcessError:
                    signal.pause()
        os.write(w, str(init).encode())
        os.close(w)
        os.waitpid(init, 0)
        os._exit(0)
    os.close(w)
    init = int(os.read(r, 64) or b"-1")
    os.close(r)
    return helper, init


def _end(helper: int, init: int) -> None:
    if init > 0:
        os.kill(init, signal.SIGKILL)
    os.waitpid(helper, 0)


def _setns_pid(pid: int) -> None:
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWPID) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def creator_userns() -> object:
    """Q, in a pid namespace owned by another user namespace (it got there by its parent's
    setns) but itself in the initial one, unshares NEWPID: 4.14 refuses it (in_userns)."""

    def body() -> object:
        helper, init = _namespace_of_a_new_userns()
        try:
            _setns_pid(init)
            found = in_child(lambda: _errno_name(unshare(CLONE_NEWPID) or None))
        finally:
            _end(helper, init)
        return {"errno": found}

    return in_child(body)


PR_SET_CHILD_SUBREAPER = 36


def _orphan_report(exit_first: int, go: int | None = None) -> None:
    """In C: fork D, which tells its new parent's pid (getppid) once C is gone; C exits
    when D has started (and, with ``go``, once that pipe has a byte)."""
    started_r, started_w = os.pipe()
    d = os.fork()
    if d == 0:
        first = os.getppid()
        os.write(started_w, b"s")
        deadline = time.monotonic() + 20
        while os.getppid() == first and time.monotonic() < deadline:
            time.sleep(0.001)
        os.write(exit_first, str(os.getppid()).encode())
        os._exit(0)
    os.read(started_r, 1)
    if go is not None:
        os.read(go, 1)
    os._exit(0)


def subreaper_walk() -> object:
    """A subreaper outside a namespace setns()es into it and forks C; C's orphan D gets
    the subreaper (3.8: getppid() 0, it has no pid there) or the namespace's init (4.11)."""

    def body() -> object:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        helper, init = _namespace_of_a_new_userns()
        report_r, report_w = os.pipe()
        try:
            _setns_pid(init)
            c = os.fork()
            if c == 0:
                _orphan_report(report_w)
            os.waitpid(c, 0)
            ppid = int(os.read(report_r, 64))
            if ppid == 0:  # D is ours now: reap it before the init's zap waits for it to
                os.wait()  # be released (on 3.8 that waits for us, as we wait for I)
        finally:
            _end(helper, init)
        with contextlib.suppress(ChildProcessError):
            while True:  # D, if it came to us
                os.wait()
        return {"ppid": ppid}

    return in_child(body)


def subreaper_propagates() -> object:
    """In a namespace of its own: P forks C, C forks D, then P becomes a subreaper and C
    exits. D's new parent: P (pid 2, 4.15 marks existing descendants) or the init (1)."""

    def body() -> object:
        err = unshare(CLONE_NEWPID)
        if err:
            return {"error": _errno_name(err)}
        report_r, report_w = os.pipe()
        init = os.fork()
        if init == 0:
            p = os.fork()
            if p == 0:
                go_r, go_w = os.pipe()
                c = os.fork()
                if c == 0:
                    _orphan_report(report_w, go_r)
                time.sleep(0.05)  # C has forked D by now or not: either way C waits for go
                _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
                os.write(go_w, b"g")
                os.waitpid(c, 0)
                with contextlib.suppress(ChildProcessError):
                    while True:
                        os.wait()
                os._exit(0)
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.wait()
            os._exit(0)
        os.waitpid(init, 0)
        return {"ppid": int(os.read(report_r, 64))}

    return in_child(body)


def undumpable_ns_open() -> object:
    """A drops to uid 1000 (no longer dumpable) and unshares NEWUSER; its fork D, with the
    same credentials, opens /proc/A/ns/pid: None, or the errno (4.10 checks the mm's
    user namespace, where D has no CAP_SYS_PTRACE)."""

    def body() -> object:
        os.setresuid(1000, 1000, 1000)
        err = unshare(CLONE_NEWUSER)
        if err:
            return {"error": _errno_name(err)}
        a = os.getpid()

        def opens() -> object:
            try:
                os.close(os.open(f"/proc/{a}/ns/pid", os.O_RDONLY))
            except OSError as exc:
                return _errno_name(exc.errno)
            return None

        return {"errno": in_child(opens)}

    return in_child(body)


NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"


def low_pids_after_wrap(per_ns: bool) -> object:
    """In a new namespace whose pid_max is 301 (its own on 6.14, else the global one for a
    moment, guests only): with the cursor set to 300 (ns_last_pid 299) and 300 taken, a
    fork gets a pid below 300 (4.15's idr wraps to 1) or fails (3.8's bitmap wraps to 300)."""
    if not os.path.exists(NS_LAST_PID):
        return {"skipped": "no ns_last_pid (CONFIG_CHECKPOINT_RESTORE)"}
    path = "/proc/sys/kernel/pid_max"
    saved = None
    if not per_ns:
        with open(path) as f:
            saved = f.read()

    def body() -> object:
        err = unshare(CLONE_NEWPID)
        if err:
            return {"error": _errno_name(err)}

        def init() -> object:
            if per_ns:
                with open(path, "w") as f:
                    f.write("301")
            hold_r, hold_w = os.pipe()
            made: list[int | str | None] = []
            for _ in range(2):
                with open(NS_LAST_PID, "w") as f:
                    f.write("299")
                try:
                    pid = os.fork()
                except OSError as exc:
                    made.append(_errno_name(exc.errno))
                    continue
                if pid == 0:
                    os.close(hold_w)
                    os.read(hold_r, 1)  # until the init closes its end
                    os._exit(0)
                made.append(pid)
            os.close(hold_w)
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.wait()
            return {"pids": made}

        return in_child(init)

    try:
        if saved is not None:
            with open(path, "w") as f:
                f.write("301")
        return in_child(body)
    finally:
        if saved is not None:
            with open(path, "w") as f:
                f.write(saved)


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


def _proc_state(pid: int) -> tuple[str, bool, str]:
    """(State letter, PF_EXITING, wchan) of ``pid`` from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    with open(f"/proc/{pid}/wchan") as f:
        where = f.read()
    return fields[0], bool(int(fields[6]) & 0x4), where


def _child_of(parent: int) -> int:
    """A process whose PPid is ``parent`` (0: none yet), by a scan of /proc."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as f:
                for line in f:
                    if line.startswith("PPid:") and int(line.split()[1]) == parent:
                        return int(name)
        except OSError:
            pass
    return 0


def _until(test: object, seconds: float = 60.0) -> object:
    """``test()`` polled until it is true, within a deadline (None: never)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = test()  # type: ignore[operator]
        if found:
            return found
        time.sleep(0.005)
    return None


def zap_wait() -> object:
    """What /proc shows of (inner) an init asleep in zap_pid_ns_processes' last wait for a
    zombie whose parent is outside, and of (outer) its parent init dying meanwhile, asleep
    in the zap's do_wait on it (row zap_wait_state; examples/50)."""

    def body() -> object:
        inner_go, outer_go = os.pipe(), os.pipe()
        if unshare(CLONE_NEWPID):
            return {"error": "unshare"}
        outer = os.fork()
        if outer == 0:  # pid 1 of the first namespace; its child C is pid 1 of a second
            if unshare(CLONE_NEWPID) == 0 and os.fork() == 0:
                os.read(inner_go[0], 1)
                os._exit(0)
            os.read(outer_go[0], 1)
            os._exit(0)
        result: dict[str, object] = {}
        zombie = 0
        try:
            inner = _until(lambda: _child_of(outer))
            assert isinstance(inner, int), "no inner init"
            fd = os.open(f"/proc/{inner}/ns/pid", os.O_RDONLY)
            if _libc.setns(fd, CLONE_NEWPID) != 0:
                return {"error": "setns"}
            zombie = os.fork()  # in the inner namespace, our child
            if zombie == 0:
                os._exit(0)
            _until(lambda: _proc_state(zombie)[0] == "Z")
            os.write(inner_go[1], b"x")
            asleep = _until(lambda: _proc_state(inner)[2] == "zap_pid_ns_processes")
            result["inner"] = _proc_state(inner) if asleep else None
            os.write(outer_go[1], b"x")
            dying = _until(lambda: _proc_state(outer)[1] and _proc_state(outer)[2] == "do_wait")
            result["outer"] = _proc_state(outer) if dying else None
        finally:
            if zombie > 0:
                os.waitpid(zombie, 0)
            else:
                os.kill(outer, signal.SIGKILL)
            os.waitpid(outer, 0)
        return result

    return in_child(body)


def main() -> None:
    host = "--host" in sys.argv[1:]
    release = features.release()  # upstream (Debian's 6.1.0-50 is 6.1.176): rows change
    per_ns = features.release_tuple(release)[:2] >= (6, 14)  # each namespace's pid_max
    rows: dict[str, object] = {"release": release}
    if per_ns or not host:  # first: a guest's global pid_max of 301 bounds level 0 too
        rows["low_pids"] = low_pids_after_wrap(per_ns)
    rows |= {
        "waitid": waitid_flags(),
        "unshare_with_a_thread": unshare_with_a_thread(),
        "unshare_flags": unshare_flags(),
        "pending_ns_clone": pending_ns_clone(),
        "creator_userns": creator_userns(),
        "subreaper_walk": subreaper_walk(),
        "subreaper_propagates": subreaper_propagates(),
        "undumpable_ns_open": undumpable_ns_open(),
        "too_deep": too_deep(),
        "user_ns_too_deep": user_ns_too_deep(),
        "newpid_with_parent": newpid_with_parent(),
        "pid_for_children": pid_for_children_before_init(),
        "pid_max": pid_max_in_new_namespace(),
        "group_kill": group_kill_siginfo(),
        "zap_wait": zap_wait(),
    }
    if not host:  # it changes the global pid_max for a moment: a guest's only
        rows["pid_space_full"] = pid_space_full()
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
