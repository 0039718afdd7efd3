"""The session service listener (TCP 139): one SessionMachine per connection."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from messengerd.limits import MAX_SESSIONS, SESSION_IDLE_TIMEOUT
from messengerd.protocol.events import (
    CloseConnection,
    Directory,
    Dropped,
    MessageReceived,
    SendData,
)
from messengerd.protocol.session import SessionMachine

log = logging.getLogger(__name__)

READ_SIZE = 4096
"""Bytes read from a session socket at a time; the machine bounds what it buffers."""

Deliver = Callable[[MessageReceived, str], Awaitable[bool]]
"""Store a message from `peer`; True once it is durable and may be acknowledged."""


class SessionListener:
    """Accepts TCP sessions and drives a SessionMachine for each."""

    def __init__(
        self,
        directory: Directory,
        deliver: Deliver,
        *,
        max_sessions: int = MAX_SESSIONS,
        idle_timeout: float = SESSION_IDLE_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.deliver = deliver
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.server: asyncio.Server | None = None
        self.sessions: set[asyncio.Task[None]] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port); return the port bound (useful when `port` is 0)."""
        self.server = await asyncio.start_server(
            self._serve, host, port, reuse_address=True, backlog=1024
        )
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open session."""
        if self.server is not None:
            self.server.close()
        for task in list(self.sessions):
            task.cancel()
        if self.sessions:
            await asyncio.gather(*self.sessions, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if len(self.sessions) >= self.max_sessions:
            log.warning("session from %s refused: %d sessions open", peer, self.max_sessions)
            writer.close()
            return
        self.sessions.add(task)
        try:
            await self._converse(SessionMachine(self.directory), reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("session from %s ended: %s", peer, exc)
        except Exception:
            log.exception("session from %s failed", peer)
        finally:
            self.sessions.discard(task)
            writer.close()

    async def _converse(
        self,
        machine: SessionMachine,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    data = await reader.read(READ_SIZE)
            except TimeoutError:
                log.debug("session from %s idle for %.0f s; closing", peer, self.idle_timeout)
                return
            if not data:
                return
            events = machine.receive_data(data)
            while events:
                more: list = []
                for event in events:
                    if isinstance(event, SendData):
                        writer.write(event.data)
                    elif isinstance(event, MessageReceived):
                        stored = await self.deliver(event, peer)
                        writer.write(
                            machine.message_stored() if stored else machine.message_refused()
                        )
                        # Frames that arrived behind the message wait in the machine.
                        more = machine.receive_data(b"")
                    elif isinstance(event, CloseConnection):
                        log.info("session from %s closed: %s", peer, event.reason)
                        await writer.drain()
                        return
                    elif isinstance(event, Dropped):
                        log.info("session from %s: %s", peer, event.reason)
                events = more
            await writer.drain()
