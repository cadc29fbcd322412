#!/usr/bin/python3
"""The /init of a ``pidns check --kernel`` guest (see pidns.linux.guest): mount what a
pidns command needs, run ``python3 ARGV...`` (``-m pidns ...``) with the source tree on
its path, report its output, exit status and saved files on the serial ports, power off.

Runs as pid 1 of the guest with nothing but Python's standard library and the pidns
tree; every failure still ends in a power-off, so the host never waits for a hung guest.
"""

import ctypes
import io
import json
import os
import subprocess
import sys
import termios
import tty
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
RB_POWER_OFF = 0x4321FEDC


def _mount(source: str, target: str, fstype: str, flags: int = 0) -> int:
    os.makedirs(target, exist_ok=True)
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, None) != 0:
        return ctypes.get_errno()
    return 0


def _devices() -> None:
    if _mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID) == 0:
        return
    for name, major, minor in [("null", 1, 3), ("zero", 1, 5), ("urandom", 1, 9), ("tty", 5, 0)] + [
        (f"ttyS{n}", 4, 64 + n) for n in range(5)
    ]:
        path = f"/dev/{name}"
        if not os.path.exists(path):
            os.mknod(path, 0o666 | 0o020000, os.makedev(major, minor))


def _port(n: int) -> int:
    fd = os.open(f"/dev/ttyS{n}", os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def main() -> None:
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _devices()
    _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV)
    with open("/run.json") as f:
        run = json.load(f)
    out, err, rc = (_port(n) for n in (1, 2, 3))
    os.chdir(run["cwd"])
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONPATH": run["src"],
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIDNS_GUEST": "1",
    }
    status = 125
    try:
        child = subprocess.Popen(
            [run["python"], *run["argv"]],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=env,
        )
        status = child.wait()
        if status < 0:
            status = 128 - status
    except OSError as exc:
        os.write(err, f"pidns guest: cannot run pidns: {exc}\n".encode())
    while True:  # orphans of the command were ours to reap
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    os.write(rc, f"{status}\n".encode())
    if run.get("save"):  # after the status line, on the same port
        _send_saved(rc, run["save"], run["src"])
    for fd in (out, err, rc):
        termios.tcdrain(fd)


def _send_saved(fd: int, directory: str, src: str) -> None:
    sys.path.insert(0, src)
    from pidns.linux import cpio  # noqa: PLC0415 - found through the tree's path only here

    class _Port(io.RawIOBase):
        def write(self, data: Any) -> int:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            return len(data)

    writer = cpio.Writer(_Port())  # type: ignore[arg-type]
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                writer.file(name, path)
    writer.finish()


if __name__ == "__main__":
    try:
        main()
    except BaseException:  # the host must hear of it, and the guest must end
        try:
            import traceback

            os.write(2, ("pidns guest init failed: " + traceback.format_exc()).encode())
        except OSError:
            pass
    os.sync()
    _libc.reboot(RB_POWER_OFF)
