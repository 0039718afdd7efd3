"""The session service listener (TCP 139): one SessionMachine per connection.

Each connection is a bare `asyncio.Protocol`: bytes go to its machine as they arrive and the
machine's replies go straight back, with no task, stream or timeout context per read. A
message the machine completes is the only thing that waits: its reply leaves once `accept`
acknowledges it stored (DESIGN.md: acknowledged means stored), from a callback rather than a
task, so that no loop iteration passes between the inbox's answer and the reply. Bytes that
arrive meanwhile wait in the machine, which bounds them; reading pauses only while the peer
does not take our replies.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable, Iterable

from messengerd.core.limits import MAX_SESSIONS, SESSION_IDLE_TIMEOUT
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

Acknowledge = Callable[[bool], None]
"""Called once a message is durable (True: a success reply) or cannot be stored (False)."""

Accept = Callable[[MessageReceived, str, Acknowledge], None]
"""Take a complete message from `peer` to store; call the Acknowledge once, at once or
later, on the listener's loop."""


class SessionListener:
    """Accepts TCP sessions and drives a SessionMachine for each."""

    def __init__(
        self,
        directory: Directory,
        accept: Accept,
        *,
        max_sessions: int = MAX_SESSIONS,
        idle_timeout: float = SESSION_IDLE_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.accept = accept
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.server: asyncio.Server | None = None
        self.sessions: set[Session] = set()
        self.storing = 0
        """Messages accepted and not yet acknowledged."""
        self._stored: asyncio.Future[None] | None = None

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
        for session in list(self.sessions):
            session.close()
        if self.storing:
            self._stored = asyncio.get_running_loop().create_future()
            await self._stored
        if self.server is not None:
            await self.server.wait_closed()

    def _acknowledged(self) -> None:
        self.storing -= 1
        if not self.storing and self._stored is not None and not self._stored.done():
            self._stored.set_result(None)


class Session(asyncio.Protocol):
    """One TCP session: bytes in, the machine's replies out."""

    def __init__(self, listener: SessionListener) -> None:
        self.listener = listener
        self.machine = SessionMachine(listener.directory)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.storing = False
        """A message is being stored: its reply, and what follows it, wait."""
        self._deliveries = 0
        self._waiting: collections.deque[SessionEvent] = collections.deque()
        self._in_accept = False
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
        """Carry out the machine's events. A message stops them until it is acknowledged
        (but for a CloseConnection: input overflowing while it waits); then the rest run,
        and the frames that waited in the machine behind it. A loop, not recursion: a
        message acknowledged at once (no inbox) continues right here."""
        waiting = self._waiting
        waiting.extend(events)
        while waiting and not self._closed:
            if self.storing and not isinstance(waiting[0], CloseConnection):
                return
            event = waiting.popleft()
            if isinstance(event, SendData):
                assert self.transport is not None
                self.transport.write(event.data)
            elif isinstance(event, MessageReceived):
                self._accept(event)
                if not self.storing:
                    # Acknowledged at once: the frames behind it wait in the machine.
                    waiting.extend(self.machine.receive_data(b""))
            elif isinstance(event, CloseConnection):
                log.info("session from %s closed: %s", self.peer, event.reason)
                self.close()
            elif isinstance(event, Dropped):
                log.info("session from %s: %s", self.peer, event.reason)
        waiting.clear()

    def _accept(self, event: MessageReceived) -> None:
        self.storing = True
        self.listener.storing += 1
        self._deliveries += 1
        acknowledge = functools.partial(self._acknowledge, self._deliveries)
        self._in_accept = True
        try:
            self.listener.accept(event, self.peer, acknowledge)
        except Exception:
            log.exception("session from %s: a message could not be delivered", self.peer)
            acknowledge(False)
        finally:
            self._in_accept = False

    def _acknowledge(self, delivery: int, stored: bool) -> None:
        """The message is stored (or cannot be): reply, then carry on with what waited."""
        if delivery != self._deliveries or not self.storing:
            return  # answered already (accept raised after it had sent the message)
        self.storing = False
        self.listener._acknowledged()
        if self._closed:
            return  # the peer left (or we stop): stored or not, there is nobody to answer
        assert self.transport is not None
        machine = self.machine
        self.transport.write(machine.message_stored() if stored else machine.message_refused())
        if self._in_accept:
            return  # acknowledged at once: _handle() goes on by itself
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
        if not self.storing and self._loop.time() >= due:
            log.debug("session from %s idle for %.0f s; closing", self.peer, timeout)
            self.close()
            return
        if self.storing:
            due = self._loop.time() + timeout
        self._idle = self._loop.call_at(due, self._check_idle)
