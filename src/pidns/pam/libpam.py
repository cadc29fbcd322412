"""The application side of PAM, through ctypes to libpam.so.0: what a login program calls.

Only what the seed's login flow needs: pam_start, pam_open_session, pam_getenvlist,
pam_close_session, pam_end and pam_strerror, with a non-interactive conversation (messages
are printed, prompts are refused: this drives the session stack, not authentication).

libpam is called through ``ctypes.PyDLL``, which keeps the GIL held: a module of the stack
written for pam_python (pam_pidns itself) then runs inside *this* interpreter (pam_python
finds Python already initialised, since libpython's soname is already loaded), and it calls
the Python C API without taking the GIL. With ``ctypes.CDLL`` that would crash.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from types import TracebackType

from pidns.pam import codes


class PamError(Exception):
    """A PAM call failed: ``function`` returned ``code``."""

    def __init__(self, function: str, code: int, text: str) -> None:
        super().__init__(f"{function}: {text} ({codes.name(code)})")
        self.function = function
        self.code = code


class _Message(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class _Response(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


_CONV_FUNC = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(_Message)),
    ctypes.POINTER(ctypes.POINTER(_Response)),
    ctypes.c_void_p,
)


class _Conv(ctypes.Structure):
    _fields_ = [("conv", _CONV_FUNC), ("appdata_ptr", ctypes.c_void_p)]


def _load() -> ctypes.PyDLL:
    lib = ctypes.PyDLL(ctypes.util.find_library("pam") or "libpam.so.0")
    lib.pam_start.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.POINTER(_Conv),
        ctypes.POINTER(ctypes.c_void_p),
    ]
    for name in ("pam_open_session", "pam_close_session", "pam_end"):
        getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.pam_strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.pam_strerror.restype = ctypes.c_char_p
    lib.pam_getenvlist.argtypes = [ctypes.c_void_p]
    lib.pam_getenvlist.restype = ctypes.POINTER(ctypes.c_void_p)
    return lib


_libc = ctypes.CDLL(None)
_libc.calloc.restype = ctypes.c_void_p
_libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]


def _converse(
    count: int,
    messages: ctypes._Pointer[ctypes._Pointer[_Message]],
    responses: ctypes._Pointer[ctypes._Pointer[_Response]],
    _appdata: int | None,
) -> int:
    """Print PAM_TEXT_INFO to stdout and PAM_ERROR_MSG to stderr; refuse any prompt."""
    for index in range(count):
        message = messages[index].contents
        text = (message.msg or b"").decode("utf-8", "replace")
        if message.msg_style in (codes.PAM_PROMPT_ECHO_OFF, codes.PAM_PROMPT_ECHO_ON):
            return codes.PAM_CONV_ERR
        print(text, file=sys.stderr if message.msg_style == codes.PAM_ERROR_MSG else sys.stdout)
    # libpam frees the array (and each resp, all NULL here) with free().
    array = _libc.calloc(max(count, 1), ctypes.sizeof(_Response))
    if not array:
        return codes.PAM_BUF_ERR
    responses[0] = ctypes.cast(array, ctypes.POINTER(_Response))
    return codes.PAM_SUCCESS


class Handle:
    """One PAM transaction (pam_start .. pam_end); a context manager that ends it."""

    def __init__(self, service: str, user: str) -> None:
        self._lib = _load()
        self._conv = _Conv(_CONV_FUNC(_converse), None)  # kept alive as long as the handle
        self._handle = ctypes.c_void_p()
        self._status = codes.PAM_SUCCESS
        code = self._lib.pam_start(
            service.encode(), user.encode(), ctypes.byref(self._conv), ctypes.byref(self._handle)
        )
        if code != codes.PAM_SUCCESS or not self._handle:
            raise PamError("pam_start", code, self._strerror(code))

    def _strerror(self, code: int) -> str:
        text: bytes | None = self._lib.pam_strerror(self._handle, code)
        return (text or b"unknown error").decode("utf-8", "replace")

    def _call(self, function: str, flags: int = 0) -> None:
        code = getattr(self._lib, function)(self._handle, flags)
        if code != codes.PAM_SUCCESS:
            self._status = code
            raise PamError(function, code, self._strerror(code))

    def open_session(self) -> None:
        self._call("pam_open_session")

    def close_session(self) -> None:
        self._call("pam_close_session")

    def environment(self) -> dict[str, str]:
        """pam_getenvlist: the variables the session stack set (pam_env and friends)."""
        array = self._lib.pam_getenvlist(self._handle)
        found: dict[str, str] = {}
        if not array:
            return found
        index = 0
        while array[index]:
            entry = ctypes.string_at(array[index]).decode("utf-8", "replace")
            key, _, value = entry.partition("=")
            found[key] = value
            _libc.free(array[index])
            index += 1
        _libc.free(ctypes.cast(array, ctypes.c_void_p))
        return found

    def end(self) -> None:
        if self._handle:
            self._lib.pam_end(self._handle, self._status)
            self._handle = ctypes.c_void_p()

    def __enter__(self) -> Handle:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.end()
