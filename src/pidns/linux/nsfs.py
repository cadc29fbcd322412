"""The nsfs ioctls on a pid namespace fd (include/uapi/linux/nsfs.h, fs/nsfs.c:ns_ioctl).

The one home of the nsfs ioctls. A lean module on purpose: ``pidns ls`` and ``pidns
tree`` are measured against lsns including start-up, and these need only ``fcntl``, not
the ctypes machinery of ``pidns.linux.syscalls``.

Errors the kernel gives (6.18):
- NS_GET_PARENT: EPERM unless the parent is the caller's active pid namespace or below it.
- NS_GET_USERNS: EPERM unless the owner is the caller's user namespace or below it.
- NS_GET_ID: ENOTTY before it existed (absent in 6.13, present in 6.18).
- NS_GET_PID_FROM_PIDNS / NS_GET_PID_IN_PIDNS: ESRCH when the task is not found or not
  visible; ENOTTY before they existed (6.11) and, on some stable kernels, for a pid
  that is not found (fixed by "nsfs: return ESRCH ..." in 2026).
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys

# How a namespace's id was read (render.view.SystemView.id_source)
ID_NS_GET_ID = "NS_GET_ID"  # ids from the nsfs ioctl NS_GET_ID (Linux >= 6.x)
ID_INODE = "inode"  # ids are nsfs inode numbers (older kernels)

_NSIO = 0xB7


def _io(nr: int) -> int:
    return (_NSIO << 8) | nr


def _ior(nr: int, size: int) -> int:
    return (2 << 30) | (size << 16) | (_NSIO << 8) | nr


NS_GET_USERNS = _io(0x1)
NS_GET_PARENT = _io(0x2)
NS_GET_NSTYPE = _io(0x3)
NS_GET_PID_FROM_PIDNS = _ior(0x6, 4)
NS_GET_PID_IN_PIDNS = _ior(0x8, 4)
NS_GET_ID = _ior(0xD, 8)

# The kernel lacks the ioctl (ENOTTY) or refuses it for this kind of file (EINVAL).
UNSUPPORTED = (errno.ENOTTY, errno.EINVAL)


def namespace_id(fd: int) -> int | None:
    """NS_GET_ID: the namespace's 64-bit id; None when the kernel does not have it."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, NS_GET_ID, buf, True)
    except OSError as e:
        if e.errno in UNSUPPORTED:
            return None
        raise
    return int.from_bytes(buf, sys.byteorder)  # a __u64 in the machine's byte order


def id_or_inode(fd: int) -> int:
    """NS_GET_ID where the kernel has it, else the nsfs inode number (what lsns shows)."""
    try:
        found = namespace_id(fd)
    except OSError:
        found = None
    return os.fstat(fd).st_ino if found is None else found


def related(fd: int, request: int) -> int | None:
    """NS_GET_PARENT or NS_GET_USERNS: a new fd (close it), or None when refused (EPERM)
    or unsupported."""
    try:
        return int(fcntl.ioctl(fd, request))
    except OSError as e:
        if e.errno == errno.EPERM or e.errno in UNSUPPORTED:
            return None
        raise


def nstype(fd: int) -> int | None:
    """NS_GET_NSTYPE (CLONE_NEW* of the namespace); None if ``fd`` is no namespace file."""
    try:
        return int(fcntl.ioctl(fd, NS_GET_NSTYPE))
    except OSError:
        return None


def pid_from(fd: int, pid: int) -> int:
    """NS_GET_PID_FROM_PIDNS: ``pid`` of namespace ``fd`` in the caller's numbering.

    Raises OSError: ESRCH (no such task, or not visible to the caller), ENOTTY."""
    return int(fcntl.ioctl(fd, NS_GET_PID_FROM_PIDNS, pid))


def pid_in(fd: int, pid: int) -> int:
    """NS_GET_PID_IN_PIDNS: ``pid`` of the caller's numbering as namespace ``fd`` sees it.

    Raises OSError: ESRCH (no such task, or ``fd`` cannot see it), ENOTTY."""
    return int(fcntl.ioctl(fd, NS_GET_PID_IN_PIDNS, pid))
