"""The Python API for asyncio: ``create_subprocess_exec`` and ``create_subprocess_shell``,
shaped like asyncio's, each command in a new pid namespace made by the same namespace
server as ``pidns.run`` (``pidns.linux.server``).

The namespace is requested in a worker thread (a few milliseconds: the server answers
once the command runs); after that nothing blocks the event loop: the streams are
asyncio's StreamReader/StreamWriter over the pipes, and ``wait()`` follows the status
channel with ``loop.add_reader``.
"""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

from pidns import api

PIPE = subprocess.PIPE
STDOUT = subprocess.STDOUT
DEVNULL = subprocess.DEVNULL


class Process:
    """asyncio.subprocess.Process's interface: ``pid`` (the command, as the caller sees
    it), ``init_pid``, ``returncode``, ``stdin``/``stdout``/``stderr`` streams, ``wait()``,
    ``communicate()``, ``send_signal``, ``terminate``, ``kill`` (the whole namespace)."""

    def __init__(
        self,
        popen: api.Popen,
        stdin: asyncio.StreamWriter | None,
        stdout: asyncio.StreamReader | None,
        stderr: asyncio.StreamReader | None,
    ) -> None:
        self._popen = popen
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._waiters: list[asyncio.Future[int]] = []

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def init_pid(self) -> int:
        return self._popen.init_pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def report(self) -> dict[str, Any]:
        return self._popen.report()

    def send_signal(self, sig: int) -> None:
        self._popen.send_signal(sig)

    def terminate(self) -> None:
        self._popen.terminate()

    def kill(self) -> None:
        """SIGKILL pid 1: every process of the namespace dies with it."""
        self._popen.kill()

    async def wait(self) -> int:
        """Wait until the namespace is empty; the command's returncode."""
        returncode = self._popen.poll()
        if returncode is not None:
            return returncode
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self._waiters.append(waiter)
        if len(self._waiters) == 1:
            self._watch(loop)
        return await waiter

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        namespace = self._popen._namespace
        assert namespace is not None
        channel = namespace.channel

        def readable() -> None:
            loop.remove_reader(channel)  # before poll(), which closes it at the end
            returncode = self._popen.poll()
            if returncode is None and namespace.channel >= 0:
                loop.add_reader(channel, readable)
                return
            if returncode is None:  # the channel is gone: the blocking wait is short
                returncode = self._popen.wait()
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(returncode)
            self._waiters.clear()

        if channel < 0:
            loop.call_soon(readable)
        else:
            loop.add_reader(channel, readable)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes | None, bytes | None]:
        """Send ``input``, read stdout and stderr to EOF, wait; like asyncio's."""

        async def feed() -> None:
            if self.stdin is None:
                return
            try:
                if input:
                    self.stdin.write(input)
                    await self.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the command did not read it all
            self.stdin.close()

        async def read(stream: asyncio.StreamReader | None) -> bytes | None:
            return None if stream is None else await stream.read()

        _, out, err = await asyncio.gather(feed(), read(self.stdout), read(self.stderr))
        await self.wait()
        return out, err

    def __repr__(self) -> str:
        return f"<pidns.asyncio.Process {self.pid}>"


async def create_subprocess_exec(
    program: api.StrOrBytesPath,
    *args: api.StrOrBytesPath,
    stdin: api.File = None,
    stdout: api.File = None,
    stderr: api.File = None,
    limit: int = 2**16,
    **kwds: Any,
) -> Process:
    """Start ``program args`` in a new pid namespace (asyncio.create_subprocess_exec's
    arguments, plus pidns.Popen's namespace options); returns once it runs."""
    return await _create([program, *args], stdin, stdout, stderr, limit, kwds)


async def create_subprocess_shell(
    cmd: str,
    stdin: api.File = None,
    stdout: api.File = None,
    stderr: api.File = None,
    limit: int = 2**16,
    **kwds: Any,
) -> Process:
    """``/bin/sh -c cmd`` in a new pid namespace (asyncio.create_subprocess_shell's)."""
    return await _create(cmd, stdin, stdout, stderr, limit, {**kwds, "shell": True})


async def _create(
    args: api.Args,
    stdin: api.File,
    stdout: api.File,
    stderr: api.File,
    limit: int,
    kwds: dict[str, Any],
) -> Process:
    for name in ("text", "universal_newlines", "encoding", "errors"):
        if kwds.get(name):
            raise ValueError(f"{name} is not supported: the streams carry bytes (as asyncio's)")
    if kwds.get("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")
    kwds["bufsize"] = 0
    loop = asyncio.get_running_loop()

    def start() -> api.Popen:
        return api.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, **kwds)

    popen = await loop.run_in_executor(None, start)
    try:
        writer = reader_out = reader_err = None
        if popen.stdin is not None:
            transport, protocol = await loop.connect_write_pipe(
                asyncio.streams.FlowControlMixin, popen.stdin
            )
            writer = asyncio.StreamWriter(transport, protocol, None, loop)
        if popen.stdout is not None:
            reader_out = await _reader(loop, popen.stdout, limit)
        if popen.stderr is not None:
            reader_err = await _reader(loop, popen.stderr, limit)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return Process(popen, writer, reader_out, reader_err)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: Any, limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    return reader


__all__ = [
    "DEVNULL",
    "PIPE",
    "STDOUT",
    "Process",
    "create_subprocess_exec",
    "create_subprocess_shell",
]
