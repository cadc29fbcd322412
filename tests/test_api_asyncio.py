"""pidns.asyncio on the real kernel: asyncio's subprocess interface, on the namespace server."""

from __future__ import annotations

import asyncio
import signal

import pytest

import pidns.asyncio as pidns_asyncio
from pidns.linux import served
from test_run_support import Marker, children, comm, needs_root, nspid, wait_for

pytestmark = [pytest.mark.real, needs_root]


def test_communicate_like_asyncio() -> None:
    async def scenario() -> tuple[tuple[bytes | None, bytes | None], int | None, list[int]]:
        process = await pidns_asyncio.create_subprocess_exec(
            "sh",
            "-c",
            'echo "$$"; read line; echo "got $line"; echo err >&2; exit 3',
            stdin=pidns_asyncio.PIPE,
            stdout=pidns_asyncio.PIPE,
            stderr=pidns_asyncio.PIPE,
        )
        where = nspid(process.pid)
        result = await process.communicate(b"hello\n")
        return result, process.returncode, where

    (out, err), returncode, where = asyncio.run(scenario())
    assert (out, err, returncode) == (b"2\ngot hello\n", b"err\n", 3)
    assert where[1:] == [2]
    server = served.server_pid()
    assert server is not None  # the same server as pidns.run's


def test_waiting_does_not_block_the_loop_and_kill_ends_the_namespace() -> None:
    marker = Marker()

    async def scenario() -> tuple[list[int], int, list[int]]:
        process = await pidns_asyncio.create_subprocess_shell(
            "sleep 1000 & setsid sleep 1000 & wait", cwd=marker.path
        )
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        tick = asyncio.ensure_future(ticker())
        assert await asyncio.to_thread(wait_for, lambda: len(marker.processes("sleep")) == 2)
        waits = asyncio.gather(process.wait(), process.wait())
        await asyncio.sleep(0.2)
        process.kill()
        codes = await asyncio.wait_for(waits, 10)
        tick.cancel()
        return list(codes), ticks, marker.processes()

    try:
        codes, ticks, left = asyncio.run(scenario())
    finally:
        marker.close()
    assert codes == [-signal.SIGKILL, -signal.SIGKILL]
    assert ticks >= 10  # the loop ran while both waited
    assert left == []


def test_many_at_once() -> None:
    async def scenario() -> list[int]:
        processes = await asyncio.gather(
            *(pidns_asyncio.create_subprocess_exec("sh", "-c", f"exit {i}") for i in range(20))
        )
        return [await p.wait() for p in processes]

    assert asyncio.run(scenario()) == list(range(20))
    server = served.server_pid()
    assert server is not None

    def only_a_spare_left() -> bool:  # every init reaped; the next request's spare waits
        return all(comm(pid) == "pidns-spare" for pid in children(server))

    assert wait_for(only_a_spare_left), children(server)


def test_text_is_refused_as_asyncio_does() -> None:
    async def scenario() -> None:
        await pidns_asyncio.create_subprocess_exec("true", text=True)

    with pytest.raises(ValueError, match="text"):
        asyncio.run(scenario())
