"""Errno names and numbers, and the one exception type both backends raise."""

from __future__ import annotations

import errno as _errno


def name(number: int) -> str:
    """``22`` -> ``"EINVAL"``."""
    return _errno.errorcode.get(number, f"E{number}")


def number(text: str) -> int:
    """``"EINVAL"`` -> ``22``. Raises ValueError for an unknown name."""
    value = getattr(_errno, text, None)
    if not isinstance(value, int) or not text.startswith("E"):
        raise ValueError(f"unknown errno name {text!r}")
    return value


def is_name(text: str) -> bool:
    try:
        number(text)
    except ValueError:
        return False
    return True


class SyscallError(OSError):
    """A failed system call: carries the errno, as the kernel returns it.

    The model raises it for every failing call; the real backend raises the OSError
    that Python's os module raises, which this class subclasses for uniform handling.
    """

    def __init__(self, err: int, call: str = "") -> None:
        super().__init__(err, f"{call}: {name(err)}" if call else name(err))

    @property
    def name(self) -> str:
        return name(self.errno or 0)
