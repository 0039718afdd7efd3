"""SessionListener on real loopback sockets: its limits, its timer, and messages that wait
to be stored while more frames arrive."""

from __future__ import annotations

import asyncio
import logging

import pytest

from messengerd.protocol.events import MessageReceived
from messengerd.transport.tcp import SessionListener
from messengerd.wire import nbss, smb
from tests.unit.test_session_machine import ALICE_WORKSTATION, BOB, Aliases, d0

LOOPBACK = "127.0.0.1"
WAIT = 5.0
"""Seconds any one step may take before the test fails instead of hanging."""


class Store:
    """A deliver() whose calls wait until `release` is set; it records what it got."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.release.set()
        self.messages: list[bytes] = []
        self.entered = asyncio.Event()

    async def __call__(self, event: MessageReceived, peer: str) -> bool:
        self.entered.set()
        await self.release.wait()
        self.messages.append(event.text)
        return True


async def listen(store: Store, **options: float) -> tuple[SessionListener, int]:
    listener = SessionListener(Aliases(BOB), store, **options)  # type: ignore[arg-type]
    return listener, await listener.start(LOOPBACK, 0)


async def reply(reader: asyncio.StreamReader) -> bytes:
    """The SMB of the next SESSION MESSAGE from the listener."""
    async with asyncio.timeout(WAIT):
        header = await reader.readexactly(nbss.NBSS_HEADER_LENGTH)
        _, length = nbss.frame_header(header)
        return await reader.readexactly(length)


def status(body: bytes) -> int:
    return int.from_bytes(body[5:9], "little")


async def closed(reader: asyncio.StreamReader) -> bool:
    """True once the listener has closed the connection (EOF or reset)."""
    try:
        async with asyncio.timeout(WAIT):
            return await reader.read(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.asyncio
async def test_a_message_waits_for_its_store_and_the_frames_behind_it_are_answered_after():
    store = Store()
    listener, port = await listen(store)
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        store.release.clear()
        # Two messages in one write: the second must wait until the first is stored.
        writer.write(d0(b"first") + d0(b"second"))
        async with asyncio.timeout(WAIT):
            await store.entered.wait()
        await asyncio.sleep(0.1)
        assert store.messages == [] and not reader.at_eof()
        store.release.set()
        first, second = await reply(reader), await reply(reader)
        assert (first[4], status(first)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        assert (second[4], status(second)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        assert store.messages == [b"first", b"second"]
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_sessions_beyond_the_limit_are_closed_at_once_with_a_log_line(caplog):
    caplog.set_level(logging.WARNING, "messengerd.transport.tcp")
    listener, port = await listen(Store(), max_sessions=2)
    request = nbss.session_request(BOB, ALICE_WORKSTATION)
    try:
        held = []
        for _ in range(2):
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(request)
            async with asyncio.timeout(WAIT):
                assert await reader.readexactly(4) == nbss.positive_response()
            held.append(writer)
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        assert await closed(reader)
        assert "refused: 2 sessions open" in caplog.text
        # One of the two leaves: the next session is taken again.
        held.pop().close()
        async with asyncio.timeout(WAIT):
            while len(listener.sessions) > 1:
                await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(request)
        async with asyncio.timeout(WAIT):
            assert await reader.readexactly(4) == nbss.positive_response()
        for each in [*held, writer]:
            each.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_an_idle_session_is_closed_and_one_that_keeps_talking_is_not():
    listener, port = await listen(Store(), idle_timeout=0.4)
    try:
        idle_reader, idle = await asyncio.open_connection(LOOPBACK, port)
        talk_reader, talking = await asyncio.open_connection(LOOPBACK, port)
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(8):  # 0.8 s of keepalives, each well inside the timeout
            talking.write(nbss.keepalive())
            await asyncio.sleep(0.1)
        assert await closed(idle_reader)
        assert loop.time() - started >= 0.4
        talking.write(d0(b"still here"))
        body = await reply(talk_reader)
        assert (body[4], status(body)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        idle.close()
        talking.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_a_session_whose_message_is_being_stored_is_not_idle():
    store = Store()
    listener, port = await listen(store, idle_timeout=0.2)
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        store.release.clear()
        writer.write(d0(b"slow store"))
        await asyncio.sleep(0.6)  # three idle timeouts while the store takes its time
        store.release.set()
        body = await reply(reader)
        assert status(body) == 0 and store.messages == [b"slow store"]
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_stop_lets_a_message_being_stored_finish_and_closes_its_session():
    store = Store()
    listener, port = await listen(store)
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    store.release.clear()
    writer.write(d0(b"at shutdown"))
    async with asyncio.timeout(WAIT):
        await store.entered.wait()
    stopping = asyncio.create_task(listener.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # it waits for the store
    store.release.set()
    async with asyncio.timeout(WAIT):
        await stopping
    assert store.messages == [b"at shutdown"]
    assert await closed(reader)
    writer.close()
