"""SessionListener on real loopback sockets: its limits, its timer, and messages that wait
to be stored while more frames arrive."""

from __future__ import annotations

import asyncio
import logging

import pytest

from messengerd.core.message import Outcome
from messengerd.protocol.events import MessageReceived
from messengerd.protocol.session import MAX_BUFFERED_BYTES
from messengerd.transport.session import Accept, SessionListener
from messengerd.wire import nbss, smb
from tests.helpers import Names
from tests.unit.protocol.test_session_machine import ALICE_WORKSTATION, BOB, d0

LOOPBACK = "127.0.0.1"
WAIT = 5.0
"""Seconds any one step may take before the test fails instead of hanging."""


class Store:
    """An accept() that stores each message at once, or after hold() only once release()
    is called; it records what it got."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.released.set()
        self.messages: list[bytes] = []
        self.entered = asyncio.Event()

    async def __call__(self, event: MessageReceived, peer: str) -> Outcome:
        self.entered.set()
        await self.released.wait()
        self.messages.append(event.text)
        return Outcome("stored", id=len(self.messages))

    def hold(self) -> None:
        self.released.clear()

    def release(self) -> None:
        self.released.set()


async def listen(store: Accept, **options: float) -> tuple[SessionListener, int]:
    listener = SessionListener(Names(local=[BOB]), store, codepage="cp850", **options)  # type: ignore[arg-type]
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
        store.hold()
        # Two messages in one write: the second must wait until the first is stored.
        writer.write(d0(b"first") + d0(b"second"))
        async with asyncio.timeout(WAIT):
            await store.entered.wait()
        await asyncio.sleep(0.1)
        assert store.messages == [] and not reader.at_eof()
        store.release()
        first, second = await reply(reader), await reply(reader)
        assert (first[4], status(first)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        assert (second[4], status(second)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        assert store.messages == [b"first", b"second"]
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_sessions_beyond_the_limit_are_closed_at_once_with_a_log_line(caplog):
    caplog.set_level(logging.INFO, "messengerd.transport.session")
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
        assert "session refused from 127.0.0.1: 2 sessions open" in caplog.text
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
        store.hold()
        writer.write(d0(b"slow store"))
        await asyncio.sleep(0.6)  # three idle timeouts while the store takes its time
        store.release()
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
    store.hold()
    writer.write(d0(b"at shutdown"))
    async with asyncio.timeout(WAIT):
        await store.entered.wait()
    stopping = asyncio.create_task(listener.stop())
    await asyncio.sleep(0.1)
    assert not stopping.done()  # it waits for the store
    store.release()
    async with asyncio.timeout(WAIT):
        await stopping
    assert store.messages == [b"at shutdown"]
    assert await closed(reader)
    writer.close()


@pytest.mark.asyncio
async def test_messages_stored_at_once_are_answered_in_order_however_many_wait():
    # Every message the machine holds behind the first is taken once the one before is
    # answered, and answered in order.
    store = Store()
    listener, port = await listen(store)
    count = MAX_BUFFERED_BYTES // len(d0(b"m000")) - 1
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"".join(d0(b"m%03d" % number) for number in range(count)))
        for _ in range(count):
            body = await reply(reader)
            assert (body[4], status(body)) == (smb.SMB_COM_SEND_MESSAGE, 0)
        assert store.messages == [b"m%03d" % number for number in range(count)]
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_an_accept_that_raises_gets_an_error_reply_and_the_session_goes_on(caplog):
    caplog.set_level(logging.ERROR, "messengerd.transport.session")
    seen: list[bytes] = []

    async def accept(event: MessageReceived, peer: str) -> Outcome:
        seen.append(event.text)
        if event.text != b"fine":
            raise RuntimeError("a bug in accept")
        return Outcome("stored", id=1)

    listener, port = await listen(accept)
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(d0(b"broken"))
        assert status(await reply(reader)) == smb.ERROR_NO_ROOM.dos_status
        writer.write(d0(b"fine"))
        assert status(await reply(reader)) == 0
        assert seen == [b"broken", b"fine"]
        assert caplog.text.count("a message could not be taken") == 1
        assert "a bug in accept" in caplog.text
        writer.close()
    finally:
        await listener.stop()
    assert not listener.accepting


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (Outcome("stored", id=1), 0),
        (Outcome("duplicate", id=1), 0),
        (Outcome("refused", reason="deny_sources"), 0),
        (Outcome("error", reason="disk full"), smb.ERROR_NO_ROOM.dos_status),
    ],
)
async def test_the_reply_says_what_accept_did(outcome: Outcome, expected: int):
    async def accept(event: MessageReceived, peer: str) -> Outcome:
        return outcome

    listener, port = await listen(accept)
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(d0(b"anything"))
        assert status(await reply(reader)) == expected
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_a_session_trickling_bytes_of_a_frame_it_never_completes_is_idle():
    listener, port = await listen(Store(), idle_timeout=0.4)
    try:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        frame = d0(b"never finished")
        sent = 0
        while sent < 12 and not reader.at_eof():  # a byte every 0.1 s: never a whole frame
            try:
                writer.write(frame[sent : sent + 1])
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.sleep(0.1)
        assert await closed(reader)
        assert sent < 12, "the trickle kept the session open"
        writer.close()
    finally:
        await listener.stop()


@pytest.mark.asyncio
async def test_one_source_gets_at_most_its_share_of_the_sessions(caplog):
    caplog.set_level(logging.INFO, "messengerd.transport.session")
    listener, port = await listen(Store(), max_per_source=2)
    request = nbss.session_request(BOB, ALICE_WORKSTATION)

    async def session(source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(LOOPBACK, port, local_addr=(source, 0))
        writer.write(request)
        return reader, writer

    try:
        held = [await session(LOOPBACK) for _ in range(2)]
        for reader, _ in held:
            async with asyncio.timeout(WAIT):
                assert await reader.readexactly(4) == nbss.positive_response()
        reader, writer = await session(LOOPBACK)
        assert await closed(reader), "a third session from 127.0.0.1 is refused"
        assert "session refused from 127.0.0.1: 2 sessions from 127.0.0.1 open" in caplog.text
        other_reader, other = await session("127.0.0.2")
        async with asyncio.timeout(WAIT):
            assert await other_reader.readexactly(4) == nbss.positive_response()
        assert listener.per_source == {"127.0.0.1": 2, "127.0.0.2": 1}
        for _, each in [*held, (reader, writer), (other_reader, other)]:
            each.close()
        async with asyncio.timeout(WAIT):
            while listener.per_source:
                await asyncio.sleep(0.01)
    finally:
        await listener.stop()


STARVED_LISTENER = """
import asyncio, logging, sys
from messengerd.core.message import Outcome
from messengerd.transport.session import SessionListener
from tests.helpers import Names
from tests.unit.protocol.test_session_machine import BOB

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

async def accept(event, peer):
    return Outcome("stored", id=1)

async def main():
    # No session limit of its own: only the open-file limit stops it.
    listener = SessionListener(
        Names(local=[BOB]), accept, codepage="cp850", max_sessions=10_000, max_per_source=10_000
    )
    print(await listener.start("127.0.0.1", 0), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await listener.stop()

asyncio.run(main())
"""

STARVED_OPEN_FILES = 64
"""The listener's RLIMIT_NOFILE: a few dozen sessions, then EMFILE."""


@pytest.mark.asyncio
async def test_out_of_file_descriptors_pauses_accepting_without_a_log_storm():
    import os
    import resource
    import subprocess
    import sys
    import threading

    def starve() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (STARVED_OPEN_FILES, STARVED_OPEN_FILES))

    process = subprocess.Popen(
        [sys.executable, "-c", STARVED_LISTENER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=starve,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    log_lines: list[str] = []
    assert process.stderr is not None and process.stdout is not None
    reading = threading.Thread(target=lambda: log_lines.extend(process.stderr), daemon=True)
    reading.start()
    sessions: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        port = int(await asyncio.to_thread(process.stdout.readline))
        request = nbss.session_request(BOB, ALICE_WORKSTATION)
        for _ in range(3 * STARVED_OPEN_FILES):  # more connections than it has descriptors
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.write(request)
            sessions.append((reader, writer))

        async def answered(reader: asyncio.StreamReader, within: float) -> bool:
            try:
                async with asyncio.timeout(within):
                    return await reader.readexactly(4) == nbss.positive_response()
            except TimeoutError:
                return False

        first = await asyncio.gather(*(answered(reader, 1.5) for reader, _ in sessions))
        taken = first.count(True)
        assert 0 < taken < STARVED_OPEN_FILES, "accepted until the descriptors ran out"
        # Those it took leave: the rest, waiting in the backlog, are taken once it resumes.
        for (_, writer), ok in zip(sessions, first, strict=True):
            if ok:
                writer.close()
        waiting = [reader for (reader, _), ok in zip(sessions, first, strict=True) if not ok]
        rest = await asyncio.gather(*(answered(reader, WAIT) for reader in waiting[: taken - 8]))
        assert all(rest), "accepting resumed once descriptors were free"
    finally:
        for _, writer in sessions:
            writer.close()
        process.stdin.close()  # type: ignore[union-attr]
        process.wait(WAIT)
        reading.join(WAIT)
    assert not any("Traceback" in line for line in log_lines), "".join(log_lines)
    assert len(log_lines) <= 2, "".join(log_lines)  # the first, and the count at stop
    assert "accepting sessions out of file descriptors from this host" in log_lines[0]
