"""Kernel ABI numbers that are neither clone flags (`pidns.core.flags`) nor errnos: the
syscall numbers pidns calls through ``syscall(2)`` and the wait flags Python's ``os``
lacks. One home, so that the real backend, its probes (`pidns.linux.features`) and the
puppet agree on each number.

Standard library only and no imports: `pidns run` imports this on its start-up path.
"""

from __future__ import annotations

# arch/x86/entry/syscalls/syscall_64.tbl. The numbers from 424 on were allocated after
# the tables were unified: the same on every architecture (asm-generic and x86).
SYS_CLONE = 56  # x86_64: clone(flags, stack, parent_tid, child_tid, tls)
SYS_PIDFD_SEND_SIGNAL = 424  # 5.1
SYS_MOVE_MOUNT = 429  # 5.2, the new mount API (fs/namespace.c)
SYS_FSOPEN = 430  # fs/fsopen.c
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_CLONE3 = 435  # 5.3
SYS_CLOSE_RANGE = 436  # 5.9

# include/uapi/linux/wait.h: __WALL, any child whatever its exit signal (an init's own
# children of exit signal 0 too). os has WNOWAIT but not __WALL.
WALL = 0x40000000
