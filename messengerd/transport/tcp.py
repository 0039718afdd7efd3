"""The session service listener (TCP 139): one SessionMachine per connection.

Each connection is a bare `asyncio.Protocol`: bytes go to its machine as they arrive and the
machine's replies go straight back, with no task, stream or timeout context per read. A
message the machine completes is the only thing that waits: its reply leaves once `deliver`
has stored it (DESIGN.md: acknowledged means stored). Bytes that arrive meanwhile wait in the
machine, which bounds them; reading pauses only while the peer does not take our replies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from messengerd.limits import MAX_SESSIONS, SESSION_IDLE_TIMEOUT
from messengerd.protocol.events import (
    CloseConnection,
    Directory,
    Dropped,
    MessageReceived,
    SendData,
)
from messengerd.protocol.session import SessionEvent, SessionMachine

log = logging.getLogger(__name__)

BACKLOG = 1024
"""Connections the kernel queues before accept(): a burst of senders is not refused."""

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
        self.sessions: set[Session] = set()

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port); return the port bound (useful when `port` is 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Session(self), host, port, reuse_address=True, backlog=BACKLOG
        )
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open session; messages being stored are let finish
        storing (what is durable stays so), but get no reply."""
        if self.server is not None:
            self.server.close()
        deliveries = [s.delivery for s in self.sessions if s.delivery is not None]
        for session in list(self.sessions):
            session.close()
        if deliveries:
            await asyncio.gather(*deliveries, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


class Session(asyncio.Protocol):
    """One TCP session: bytes in, the machine's replies out."""

    def __init__(self, listener: SessionListener) -> None:
        self.listener = listener
        self.machine = SessionMachine(listener.directory)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.delivery: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()
        self._last_heard = 0.0
        self._idle: asyncio.TimerHandle | None = None
        self._writing_paused = False
        self._closed = False

    # asyncio's side.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        if peername:
            self.peer = f"{peername[0]}:{peername[1]}"
        listener = self.listener
        if len(listener.sessions) >= listener.max_sessions:
            log.warning(
                "session from %s refused: %d sessions open", self.peer, listener.max_sessions
            )
            self._closed = True
            transport.abort()
            return
        listener.sessions.add(self)
        self._last_heard = self._loop.time()
        self._idle = self._loop.call_at(self._last_heard + listener.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self._last_heard = self._loop.time()
        self._handle(self.machine.receive_data(data))

    def eof_received(self) -> bool:
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("session from %s ended: %s", self.peer, exc)
        self._closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.listener.sessions.discard(self)

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # Ours.

    def close(self) -> None:
        """Close after what is already written has been sent."""
        self._closed = True
        if self.transport is not None:
            self.transport.close()

    def _handle(self, events: Iterable[SessionEvent]) -> None:
        events = iter(events)
        for event in events:
            if self._closed:
                return
            if isinstance(event, SendData):
                assert self.transport is not None
                self.transport.write(event.data)
            elif isinstance(event, MessageReceived):
                # Only a CloseConnection can follow it; it waits until the reply is sent.
                self.delivery = self._loop.create_task(self._deliver(event, list(events)))
                return
            elif isinstance(event, CloseConnection):
                log.info("session from %s closed: %s", self.peer, event.reason)
                self.close()
            elif isinstance(event, Dropped):
                log.info("session from %s: %s", self.peer, event.reason)

    async def _deliver(self, event: MessageReceived, rest: list[SessionEvent]) -> None:
        try:
            stored = await self.listener.deliver(event, self.peer)
        except Exception:
            log.exception("session from %s: a message could not be delivered", self.peer)
            stored = False
        finally:
            self.delivery = None
        if self._closed:
            return  # the peer left (or we stop): stored or not, there is nobody to answer
        assert self.transport is not None
        machine = self.machine
        self.transport.write(machine.message_stored() if stored else machine.message_refused())
        self._handle(rest)
        # Frames that arrived behind the message wait in the machine.
        self._handle(machine.receive_data(b""))

    def _update_reading(self) -> None:
        """Read while the peer takes our replies (asyncio's write flow control)."""
        transport = self.transport
        if self._closed or transport is None:
            return
        if self._writing_paused == transport.is_reading():
            if self._writing_paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _check_idle(self) -> None:
        """Close a session that sent no bytes for idle_timeout (one timer, moved lazily)."""
        if self._closed:
            return
        timeout = self.listener.idle_timeout
        due = self._last_heard + timeout
        if self.delivery is None and self._loop.time() >= due:
            log.debug("session from %s idle for %.0f s; closing", self.peer, timeout)
            self.close()
            return
        if self.delivery is not None:
            due = self._loop.time() + timeout
        self._idle = self._loop.call_at(due, self._check_idle)
