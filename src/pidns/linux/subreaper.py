"""The fallback where no pid namespace can be had: a child subreaper stands in for pid 1.

A process that sets PR_SET_CHILD_SUBREAPER becomes the reaper of every orphan among its
descendants (kernel/exit.c:find_new_reaper walks up to the nearest subreaper), so the
init's reap loop works unchanged: every process the command starts, however it detaches
(double fork, setsid), stays a descendant and ends up its child.

What it cannot borrow from a pid namespace is the kernel's zap: ``kill(-1)`` from a
subreaper would reach every process the user may signal, and nothing kills the
descendants when the subreaper dies. So the end is done by hand, here:

- ``descendants(pid)``: the tree below ``pid``, from /proc/PID/task/TID/children
  (fs/proc/array.c:children_seq_show, one list per thread);
- ``kill_tree(pid)``: *freeze, then kill*. SIGSTOP every descendant and walk the tree
  again until a walk finds no process it had not stopped and each one found is stopped
  (or dead): a stopped process cannot fork, and a fork racing with the SIGSTOP is
  cancelled (kernel/fork.c:copy_process fails when a signal is pending), so the set is
  closed and no process forks away while it is being killed. Then SIGKILL each and wait
  until each has exited. Every process is held by a pidfd from the moment it is found
  (checked to be still the child it was listed as), so a recycled pid is never hit.

A process of another user (a setuid program) cannot be signalled: EPERM, and it is left
to its own end; pids are not isolated, and /proc still shows the host.
"""

from __future__ import annotations

import contextlib
import os
import select
import time

from pidns.linux import fastsignal as signal

SIGKILL = int(signal.SIGKILL)
SIGSTOP = int(signal.SIGSTOP)
SETTLED = frozenset("TtZX")  # stopped, traced, zombie, dead (fs/proc/array.c:task_state_array)
FREEZE_TIMEOUT = 2.0  # seconds; a process in uninterruptible sleep may take that to stop


def children(pid: int) -> list[int]:
    """The children of every thread of ``pid`` (empty once it has gone)."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(x) for x in f.read().split()]
        except OSError:
            continue
    return found


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, parents before children."""
    return [child for child, _parent in _tree(pid)]


def _tree(pid: int) -> list[tuple[int, int]]:
    """(process, its parent) for every process below ``pid``, parents first."""
    tree: list[tuple[int, int]] = []
    seen = {pid}
    frontier = [pid]
    while frontier:
        below: list[int] = []
        for parent in frontier:
            for child in children(parent):
                if child not in seen:
                    seen.add(child)
                    below.append(child)
                    tree.append((child, parent))
        frontier = below
    return tree


def _stat(pid: int) -> tuple[str, int]:
    """(state letter, parent pid) from /proc/PID/stat; ("X", 0) once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rpartition(b")")[2].split()
        return fields[0].decode(), int(fields[1])
    except (OSError, IndexError, ValueError):
        return "X", 0


def _signal(pid: int, sig: int) -> bool:
    """Send ``sig``; False if the process is gone or not ours to signal."""
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_tree(pid: int, sig: int) -> int:
    """Send ``sig`` to every descendant of ``pid`` (one walk); how many got it."""
    return sum(_signal(child, sig) for child in descendants(pid))


def _pin(child: int, parent: int) -> int:
    """A pidfd of ``child`` if it is still ``parent``'s child (its pid not reused since
    the walk: the pidfd then names that very process), else -1."""
    try:
        fd = os.pidfd_open(child)
    except OSError:
        return -1
    if _stat(child)[1] != parent:
        os.close(fd)
        return -1
    return fd


def freeze(pid: int, timeout: float = FREEZE_TIMEOUT) -> dict[int, int]:
    """SIGSTOP the tree below ``pid`` until it is closed: a walk that finds nothing new,
    every process found stopped or dead. Returns {pid: pidfd} of what was stopped."""
    stopped: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while True:
        tree = _tree(pid)
        fresh = [(child, parent) for child, parent in tree if child not in stopped]
        for child, parent in fresh:
            fd = _pin(child, parent)
            if fd < 0:
                continue
            try:
                signal.pidfd_send_signal(fd, SIGSTOP)
            except (ProcessLookupError, PermissionError):
                os.close(fd)
                continue
            stopped[child] = fd
        settled = all(_stat(child)[0] in SETTLED for child in stopped)
        if (not fresh and settled) or time.monotonic() >= deadline:
            return stopped
        if not fresh:
            time.sleep(0.001)  # some are still on their way to the stop


def kill_tree(pid: int, cgroup: str | None = None, timeout: float = 5.0) -> int:
    """cgroup.kill (the init's own cgroup, or ``cgroup``) where there is one; then freeze
    the tree below ``pid``, SIGKILL all of it through pidfds, and wait until each has
    exited (a pidfd polls readable then: kernel/pid.c:pidfd_poll); how many."""
    for path in [cgroup] if cgroup is not None else _entered:
        with contextlib.suppress(OSError):
            _write(os.path.join(path, "cgroup.kill"), "1")
    pidfds = freeze(pid)
    for fd in pidfds.values():
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, SIGKILL)
    poller = select.poll()
    for fd in pidfds.values():
        poller.register(fd, select.POLLIN)
    left = set(pidfds.values())
    deadline = time.monotonic() + timeout
    while left:
        wait = deadline - time.monotonic()
        if wait <= 0:
            break
        for fd, _events in poller.poll(wait * 1000):
            left.discard(fd)
            poller.unregister(fd)
    for fd in pidfds.values():
        os.close(fd)
    return len(pidfds)


# -- cgroup v2: cgroup.kill where a cgroup is delegated to us ------------------------------
#
# Where the caller's cgroup v2 directory is writable (delegated, as systemd delegates a
# user's own), the init makes a child cgroup ``pidns-<its pid>`` there, steps into it to
# start the command (which, and every process it forks, is born in it), and steps back out.
# Writing 1 to its cgroup.kill then SIGKILLs every process in it at once, forks in flight
# included (kernel/cgroup/cgroup.c:cgroup_kill, CGRP_KILL checked in cgroup_post_fork;
# 5.14+). The freeze-and-kill of the tree still follows, for any process that moved
# itself out of the cgroup; the directory is removed once it is empty.

CGROUP_PREFIX = "pidns-"
_entered: list[str] = []  # in the init: the cgroup it made, while it exists


def cgroup_dir() -> str | None:
    """The caller's cgroup v2 directory if it may make cgroups below it and move
    processes in and out (writable, cgroup.procs writable); else None."""
    try:
        with open("/proc/self/cgroup", "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
        with open("/proc/self/mountinfo", "rb") as f:
            mounts = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    path = next((line[3:] for line in lines if line.startswith("0::")), None)
    if path is None or path.endswith(" (deleted)"):
        return None
    for line in mounts:
        fields = line.split()
        sep = fields.index("-") if "-" in fields else -1
        if sep > 0 and len(fields) > sep + 1 and fields[sep + 1] == "cgroup2":
            directory = fields[4] + ("" if path == "/" else path)
            procs = os.path.join(directory, "cgroup.procs")
            if os.access(directory, os.W_OK) and os.access(procs, os.W_OK):
                return directory
            return None
    return None


def cgroup_for(init_pid: int) -> str | None:
    """The cgroup the fallback's init ``init_pid`` made, if it exists."""
    directory = cgroup_dir()
    if directory is None:
        return None
    path = os.path.join(directory, f"{CGROUP_PREFIX}{init_pid}")
    return path if os.path.isdir(path) else None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_cgroup() -> str | None:
    """Make this process's child cgroup and move into it (the command started now is
    born there); None where no cgroup is delegated or it lacks cgroup.kill."""
    directory = cgroup_dir()
    if directory is None:
        return None
    path = os.path.join(directory, f"{CGROUP_PREFIX}{os.getpid()}")
    try:
        os.mkdir(path, 0o755)
    except OSError:
        return None
    try:
        if not os.path.exists(os.path.join(path, "cgroup.kill")):
            raise OSError("no cgroup.kill (before 5.14)")
        _write(os.path.join(path, "cgroup.procs"), str(os.getpid()))
    except OSError:
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return None
    _entered.append(path)
    return path


def leave_cgroup() -> None:
    """Move this process back to its parent cgroup, once the command is in the child."""
    for path in _entered:
        _write(os.path.join(os.path.dirname(path), "cgroup.procs"), str(os.getpid()))


def forget_cgroup() -> None:
    """Use no cgroup after all (this process could not step out of it)."""
    _entered.clear()


def clean_up_after(init_pid: int) -> None:
    """Once the fallback's init ``init_pid`` is reaped: kill whatever is left in the
    cgroup it made (an init killed before it could empty it leaves its descendants
    there) and remove that cgroup. The one cleanup for ``pidns run`` and the server."""
    left = cgroup_for(init_pid)
    if left is not None:
        kill_tree(init_pid, left)
        remove_cgroup(left)


def remove_cgroup(path: str | None = None, timeout: float = 1.0) -> None:
    """rmdir the cgroup (this init's, or ``path``) once its last process has exited."""
    paths = [path] if path is not None else list(_entered)
    deadline = time.monotonic() + timeout
    for each in paths:
        while True:
            try:
                os.rmdir(each)
            except FileNotFoundError:
                pass
            except OSError:  # EBUSY: a process still in it is on its way out
                if time.monotonic() < deadline:
                    time.sleep(0.002)
                    continue
            break
        if each in _entered:
            _entered.remove(each)
