"""The command-line launcher's terminal supervisor: ``pidns run`` and ``pidns exec``.

``supervise`` forwards every signal the launcher gets to pid 1 (pidfd_send_signal, so a
recycled pid can never be hit), follows the terminal's job control (the init reports
terminal stops on the status channel), and returns the command's exit status. The
Python API never uses it: a library must not block the caller's signals.
"""

from __future__ import annotations

import os
import select

from pidns.core import exits
from pidns.linux import fastsignal as signal
from pidns.linux import launcher, spawn, syscalls
from pidns.linux.init import CATCHABLE

SIGCHLD = int(signal.SIGCHLD)
SIGCONT = int(signal.SIGCONT)
SIGSTOP = int(signal.SIGSTOP)


def block_signals() -> tuple[int, spawn.Inherited]:
    """Take the command-line process over: block every catchable signal, and stop
    ignoring SIGCHLD (the kernel would reap pid 1 for us and lose its status). Returns a
    signalfd that reads them all, and the signal state before, for the command."""
    try:
        before = signal.pthread_sigmask(signal.SIG_BLOCK, CATCHABLE)
    except OSError as exc:
        raise launcher.preparation_failure("rt_sigprocmask", exc) from None
    inherited = spawn.Inherited.from_caller(before)
    if SIGCHLD in inherited.ignored:
        signal.signal(SIGCHLD, signal.SIG_DFL)
    try:
        return syscalls.signalfd(CATCHABLE), inherited
    except OSError as exc:
        raise launcher.preparation_failure("signalfd", exc, "forwarding signals") from None


def foreground_terminal() -> tuple[int, bool]:
    """(fd of the controlling terminal among 0, 1, 2 or -1; whether we are its foreground)."""
    for fd in (0, 1, 2):
        try:
            group = os.tcgetpgrp(fd)  # ENOTTY unless fd is our controlling terminal
        except OSError:
            continue
        return fd, group == os.getpgrp()
    return -1, False


def supervise(ns: launcher.RunningNamespace, sfd: int, *, terminal: int = -1) -> int:
    """Forward every signal the launcher gets to pid 1 until the namespace ends; follow the
    terminal's job control; the command's exit status.

    When the init reports the command stopped by ^Z (or SIGTTIN/SIGTTOU), the launcher
    stops itself, so the shell that started it sees the job stop; on SIGCONT (``fg``) it
    gives the terminal back to the command's process group and forwards the SIGCONT.
    """
    poller = select.poll()
    poller.register(sfd, select.POLLIN)
    poller.register(ns.pidfd, select.POLLIN)
    channel = ns.channel
    if channel >= 0:
        poller.register(channel, select.POLLIN)
    while ns.wait_status is None:
        while ns.stops:  # before waiting: a stop may have come with the ready line
            ns.stops.pop()
            if terminal >= 0:
                os.kill(os.getpid(), SIGSTOP)
        ready = [fd for fd, _ in poller.poll()]
        if sfd in ready:
            for info in syscalls.read_signals(sfd):
                if info.signo == SIGCHLD:
                    continue
                if info.signo == SIGCONT and terminal >= 0:
                    _give_terminal(terminal, ns.pid)
                ns.launcher_forwarded.append(info.signo)
                ns.send_signal(info.signo)
        if channel >= 0 and channel in ready:
            ns.read_channel()
            if ns.channel < 0:
                poller.unregister(channel)
                channel = -1
        if ns.pidfd in ready:
            ns.poll()
    if terminal >= 0:
        _take_terminal_back(terminal, ns.pid)
    status = ns.exit_status
    return exits.EXIT_SETUP if status is None else status


def _give_terminal(terminal: int, group: int) -> None:
    """Make ``group`` the terminal's foreground if the launcher holds it (after ``fg``)."""
    try:
        if os.tcgetpgrp(terminal) == os.getpgrp():
            os.tcsetpgrp(terminal, group)
    except OSError:
        pass


def _take_terminal_back(terminal: int, group: int) -> None:
    try:
        if os.tcgetpgrp(terminal) == group:
            os.tcsetpgrp(terminal, os.getpgrp())
    except OSError:
        pass
