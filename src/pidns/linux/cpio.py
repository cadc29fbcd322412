"""The cpio "newc" format the kernel unpacks an initramfs from (init/initramfs.c), written
and read without the cpio program: the guest of ``pidns check --kernel`` is made of it,
and sends its saved files back in it.

The kernel's unpacker makes no missing parent directories, so the writer adds every
parent of a path before the path, once per archive.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

FORMAT = "newc-1"  # part of the cache key of built archives
_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


class Writer:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(
        self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, *rdev, len(encoded), 0)
        header = _MAGIC + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.out.write(header + encoded + _pad(len(header) + len(encoded)))
        self.out.write(body + _pad(len(body)))

    def _parents(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent and parent not in self.dirs:
            self.directory(parent)

    def directory(self, path: str, parents: bool = True, mode: int = 0o755) -> None:
        path = path.strip("/")
        if not path or path in self.dirs:
            return
        if parents:
            self._parents(path)
        self.dirs.add(path)
        self._entry(path, stat.S_IFDIR | mode)

    def device(self, path: str, major: int, minor: int, mode: int = 0o666) -> None:
        """A character device node (e.g. dev/urandom, which Python reads at start-up)."""
        path = path.strip("/")
        self._parents(path)
        self._entry(path, stat.S_IFCHR | mode, rdev=(major, minor))

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self._parents(path)
        self._entry(path, stat.S_IFLNK | 0o777, target.encode())

    def data(self, path: str, body: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self._parents(path)
        self._entry(path, stat.S_IFREG | mode, body)

    def file(self, path: str, source: str, mode: int | None = None) -> None:
        with open(source, "rb") as f:
            body = f.read()
        self.data(path, body, stat.S_IMODE(os.stat(source).st_mode) if mode is None else mode)

    def add(self, path: str, source: str, parents: bool = True) -> None:
        """``source`` as it is: a directory, a symlink or a regular file (others skipped)."""
        info = os.lstat(source)
        if stat.S_ISDIR(info.st_mode):
            self.directory(path, parents, stat.S_IMODE(info.st_mode))
        elif stat.S_ISLNK(info.st_mode):
            self.symlink(path, os.readlink(source))
        elif stat.S_ISREG(info.st_mode):
            self.file(path, source)

    def finish(self) -> None:
        self._entry(_TRAILER, 0)


def read(data: bytes) -> list[tuple[str, bytes]]:
    """The regular files of an archive, as ``(name, contents)``."""
    files: list[tuple[str, bytes]] = []
    offset = 0
    while offset + 110 <= len(data):
        if data[offset : offset + 6] != _MAGIC:
            raise ValueError(f"not a newc cpio archive at byte {offset}")
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = offset + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == _TRAILER:
            break
        if stat.S_ISREG(mode):
            files.append((name, data[body_at : body_at + size]))
        offset = body_at + size + (-size % 4)
    return files
