"""A pytest plugin: run a test's subprocesses in a pid namespace of its own, and fail the
test, naming them, when any outlive it.

Loaded with ``pytest -p pidns.pytest_plugin``, or by its ``pytest11`` entry point once
pidns is installed. It imports nothing of pidns until a test asks for the fixture, so it
costs pytest's start-up nothing, and ``import pidns`` nothing at all.

The ``pidns_namespace`` fixture (or ``@pytest.mark.usefixtures("pidns_namespace")``):

- makes a paused namespace (``pidns run --pause``: an init that holds it open, with its
  own /proc), then moves pytest's pid_for_children into it (setns(CLONE_NEWPID):
  kernel/pid_namespace.c:pidns_install), so that every process the test starts, and
  everything those start, is in it, whatever it does (setsid, double fork, daemon);
  orphans are reaped by its init, not by the host's;
- when the test ends, moves pytest back (setns into its own pid namespace, which is always
  allowed), and ends the pause: the init names every process still alive from its
  /proc (pid in the namespace, command line, age), kills them all, and exits;
- fails the test with that list when it is not empty.

It needs CAP_SYS_ADMIN in pytest's user namespace (setns to a pid namespace needs it in
the caller's own: pidns_install): run pytest as root, or unprivileged under ``pidns run
--map-current-user -- pytest ...`` (or ``unshare -rc``). Without it the fixture fails the
test with one line that says so.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


class Jail:
    """A paused pid namespace that the calling process's children are born in, between
    ``open()`` and ``close()`` (which returns the processes left, as the report names them:
    ``{"pid", "argv", "age_s"}``)."""

    def __init__(self) -> None:
        self._namespace: Any = None
        self._home = -1  # an fd of the caller's own pid namespace
        self.init_pid = 0

    def open(self) -> Jail:
        from pidns.core import flags  # noqa: PLC0415 (on first use)
        from pidns.linux import launcher, syscalls, userns  # noqa: PLC0415

        if not userns.has_cap_sys_admin():
            raise PermissionError(
                "the pidns_namespace fixture needs CAP_SYS_ADMIN to move pytest's children "
                "into a pid namespace: run pytest as root, or under "
                "'pidns run --map-current-user -- pytest ...'"
            )
        home = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        try:
            namespace = launcher.start([], launcher.Options(pause=True, fallback="fail"))
        except BaseException:
            os.close(home)
            raise
        try:
            syscalls.setns(namespace.pidfd, flags.NEWPID)  # through its init's pidfd
        except BaseException:
            os.close(home)
            namespace.kill()
            namespace.wait()
            namespace.close()
            raise
        self._namespace, self._home, self.init_pid = namespace, home, namespace.init_pid
        return self

    def close(self) -> list[dict[str, Any]]:
        """Back to the caller's own pid namespace; end this one; what was left in it."""
        import signal  # noqa: PLC0415

        from pidns.core import flags  # noqa: PLC0415
        from pidns.linux import syscalls  # noqa: PLC0415

        namespace, self._namespace = self._namespace, None
        if namespace is None:
            return []
        try:
            syscalls.setns(self._home, flags.NEWPID)
        finally:
            os.close(self._home)
            self._home = -1
            ours = [pid for pid in _children_below() if pid != namespace.init_pid]
            namespace.send_signal(signal.SIGTERM)  # ends the pause (catatonit -P's way)
            # The init's exit waits until every process of the namespace is reaped
            # (kernel/pid_namespace.c:zap_pid_ns_processes), our own children too: a
            # Popen the test never waited for would hold it forever.
            for pid in ours:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    continue  # reaped by its Popen meanwhile
            if namespace.wait(60) is None:
                namespace.kill()
                namespace.wait()
            namespace.close()
        survivors: list[dict[str, Any]] = namespace.survivors
        return survivors

    def __enter__(self) -> Jail:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _levels(pid: int | str) -> int:
    """How many pid namespaces number ``pid`` (its NSpid line: fs/proc/array.c), zombies
    too; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return len(line.split()) - 1
    except OSError:
        pass
    return 0


def _children_below() -> list[int]:
    """The caller's children (live or zombie) in a pid namespace below its own: the ones
    born in the jail."""
    mine = _levels("self")
    found = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                found += [int(pid) for pid in f.read().split()]
        except OSError:
            continue
    return [pid for pid in found if _levels(pid) > mine]


def describe(survivors: list[dict[str, Any]]) -> str:
    """One line per process left: ``pid 3 (running 1.2 s): sleep 1000``."""
    lines = [f"{len(survivors)} process(es) left running by the test (now killed):"]
    for process in survivors:
        command = " ".join(process["argv"]) or "?"
        lines.append(f"  pid {process['pid']} (running {process['age_s']:.1f} s): {command}")
    return "\n".join(lines)


@pytest.fixture
def pidns_namespace() -> Iterator[Jail]:
    """Run the test's subprocesses in a pid namespace; fail it if any outlive it."""
    jail = Jail()
    try:
        jail.open()
    except OSError as exc:
        pytest.fail(f"pidns_namespace: {exc}", pytrace=False)
    try:
        yield jail
    finally:
        survivors = jail.close()
    if survivors:
        pytest.fail(describe(survivors), pytrace=False)
