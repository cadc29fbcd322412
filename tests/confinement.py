"""The environments where namespaces are refused, made on the real kernel for one process
(a forked test child) and its descendants: never the host's sysctls or mounts.

- ``seccomp_like_docker()``: a seccomp filter that answers the namespace system calls as
  Docker's default profile does for a container without CAP_SYS_ADMIN: clone3 ENOSYS (so
  that glibc falls back to clone, whose flags a filter can see), unshare and setns EPERM,
  clone with any CLONE_NEW* flag EPERM. Built as classic BPF with struct.
- ``drop_capability(cap)``: out of the bounding, effective, permitted and inheritable
  sets (capset through ctypes), as a container's root without CAP_SYS_ADMIN.
- ``disable_user_namespaces()``: a user namespace of our own in which
  user.max_user_namespaces is 0 (the knob is per user namespace: kernel/ucount.c), so
  nothing below it can make one.
- ``mask_proc()``: a private mount namespace in which parts of /proc are covered the way
  container engines mask them (/dev/null over a file, a read-only tmpfs over a directory).

No tests here.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import struct

from pidns.core import flags as cf
from pidns.linux import mounts, syscalls, userns

# -- seccomp ---------------------------------------------------------------------------

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
AUDIT_ARCH_X86_64 = 0xC000003E
# x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl)
NR_CLONE, NR_UNSHARE, NR_SETNS, NR_CLONE3 = 56, 272, 308, 435
NAMESPACE_FLAGS = (
    cf.NEWNS | cf.NEWCGROUP | cf.NEWUTS | cf.NEWIPC | cf.NEWUSER | cf.NEWPID | cf.NEWNET
)
# classic BPF opcodes (include/uapi/linux/bpf_common.h)
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10
_JSET_K = 0x05 | 0x40
_RET_K = 0x06
_SECCOMP_DATA_NR, _SECCOMP_DATA_ARCH, _SECCOMP_DATA_ARG0 = 0, 4, 16

seccomp_supported = platform.machine() == "x86_64"


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _program() -> bytes:
    """Docker's default refusals: clone3 is ENOSYS; unshare, setns, and clone with a
    namespace flag are EPERM."""
    code: list[tuple[int, str | None, str | None, int] | str] = [
        (_LD_W_ABS, None, None, _SECCOMP_DATA_ARCH),
        (_JEQ_K, None, "allow", AUDIT_ARCH_X86_64),
        (_LD_W_ABS, None, None, _SECCOMP_DATA_NR),
        (_JEQ_K, "enosys", None, NR_CLONE3),
        (_JEQ_K, "eperm", None, NR_UNSHARE),
        (_JEQ_K, "eperm", None, NR_SETNS),
        (_JEQ_K, None, "allow", NR_CLONE),
        (_LD_W_ABS, None, None, _SECCOMP_DATA_ARG0),  # the low word of clone's flags
        (_JSET_K, "eperm", "allow", NAMESPACE_FLAGS),
        "allow",
        (_RET_K, None, None, SECCOMP_RET_ALLOW),
        "eperm",
        (_RET_K, None, None, SECCOMP_RET_ERRNO | errno.EPERM),
        "enosys",
        (_RET_K, None, None, SECCOMP_RET_ERRNO | errno.ENOSYS),
    ]
    return _assemble(code)


def seccomp_like_docker() -> None:
    """Install the filter in the calling process (inherited by every descendant)."""
    if not seccomp_supported:
        raise OSError(errno.ENOSYS, "the test filter is written for x86_64")
    _install(_program())


def _assemble(code: list[tuple[int, str | None, str | None, int] | str]) -> bytes:
    """Classic BPF from (opcode, jump-if-true label, jump-if-false label, k) entries and
    the labels (strings) between them."""
    labels: dict[str, int] = {}
    index = 0
    for item in code:
        if isinstance(item, str):
            labels[item] = index
        else:
            index += 1
    out = b""
    index = 0
    for item in code:
        if isinstance(item, str):
            continue
        op, true, false, k = item
        jt = 0 if true is None else labels[true] - index - 1
        jf = 0 if false is None else labels[false] - index - 1
        out += struct.pack("HBBI", op, jt, jf, k)
        index += 1
    return out


def seccomp_refuse(refusals: dict[int, int]) -> None:
    """Install, in the calling process and its descendants, a filter answering each
    system call number of ``refusals`` with its errno, and allowing everything else."""
    if not seccomp_supported:
        raise OSError(errno.ENOSYS, "the test filter is written for x86_64")
    code: list[tuple[int, str | None, str | None, int] | str] = [
        (_LD_W_ABS, None, None, _SECCOMP_DATA_ARCH),
        (_JEQ_K, None, "allow", AUDIT_ARCH_X86_64),
        (_LD_W_ABS, None, None, _SECCOMP_DATA_NR),
    ]
    for nr in refusals:
        code.append((_JEQ_K, f"refuse{nr}", None, nr))
    code += ["allow", (_RET_K, None, None, SECCOMP_RET_ALLOW)]
    for nr, err in refusals.items():
        code += [f"refuse{nr}", (_RET_K, None, None, SECCOMP_RET_ERRNO | err)]
    _install(_assemble(code))


def _install(program: bytes) -> None:
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
    syscalls.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


# -- capabilities ----------------------------------------------------------------------

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_libc = ctypes.CDLL(None, use_errno=True)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capability(cap: int = userns.CAP_SYS_ADMIN) -> None:
    """Remove ``cap`` from every set of the calling process, for good. (Without
    CAP_SETPCAP the bounding set stays: such a process has no capability to drop.)"""
    with contextlib.suppress(PermissionError):
        syscalls.prctl(PR_CAPBSET_DROP, cap)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    word, bit = divmod(cap, 32)
    mask = ~(1 << bit) & 0xFFFFFFFF
    data[word].effective &= mask
    data[word].permitted &= mask
    data[word].inheritable &= mask
    if _libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


# -- sysctls in a user namespace of our own ---------------------------------------------


def disable_user_namespaces(*, pid_namespaces_too: bool = False) -> None:
    """Enter a new user namespace (the caller is root in it) whose
    user.max_user_namespaces is 0; with ``pid_namespaces_too``, max_pid_namespaces too."""
    uid, gid = os.getuid(), os.getgid()
    syscalls.unshare(cf.NEWUSER)
    userns.write_id_maps(userns.MAP_ROOT, uid, gid)
    knobs = ["max_user_namespaces"] + (["max_pid_namespaces"] if pid_namespaces_too else [])
    for knob in knobs:
        with open(f"/proc/sys/user/{knob}", "w") as f:
            f.write("0")


# -- a masked /proc ---------------------------------------------------------------------

MASKED = ("/proc/keys", "/proc/timer_list", "/proc/acpi")


def mask_proc() -> tuple[str, ...]:
    """A private mount namespace (as root) in which MASKED are covered; returns them."""
    syscalls.unshare(cf.NEWNS)
    mounts.make_private_recursive()
    done = []
    for path in MASKED:
        if os.path.isdir(path):
            syscalls.mount("tmpfs", path, "tmpfs", syscalls.MS_RDONLY)
        elif os.path.exists(path):
            syscalls.mount("/dev/null", path, None, syscalls.MS_BIND)
        else:
            continue
        done.append(path)
    return tuple(done)


def hidepid_proc() -> None:
    """A private mount namespace (as root) whose /proc is a procfs with hidepid=invisible:
    other users' processes are not shown (fs/proc/base.c:has_pid_permissions)."""
    syscalls.unshare(cf.NEWNS)
    mounts.make_private_recursive()
    syscalls.mount("proc", "/proc", "proc", mounts.PROC_FLAGS, "hidepid=invisible")


NEEDS_ROOT = (mask_proc, hidepid_proc)  # setups made before a test drops to 65534
