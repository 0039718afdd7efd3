"""The session service listener (TCP 139): one SessionMachine per connection.

Each connection is a bare `asyncio.Protocol`: bytes go to its machine as they arrive and the
machine's replies go straight back. A completed message is awaited in a task of its own, as
aiosmtpd awaits handle_DATA: `accept(message, peer)` stores it, and its reply is written once
the outcome is known (DESIGN.md: acknowledged means stored). Frames that arrive meanwhile
wait in the machine, which bounds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from messengerd.core.limits import MAX_SESSIONS, SESSION_IDLE_TIMEOUT
from messengerd.core.message import Outcome
from messengerd.protocol.events import (
    CloseConnection,
    Directory,
    Dropped,
    MessageReceived,
    SendData,
    answer_for,
)
from messengerd.protocol.session import SessionMachine
from messengerd.transport.sockets import tcp_listener

log = logging.getLogger(__name__)

BACKLOG = 1024
"""Connections the kernel queues before accept(): a burst of senders is not refused."""

Accept = Callable[[MessageReceived, str], Coroutine[Any, Any, Outcome]]
"""Store a complete message from `peer`; what became of it (Daemon.accept)."""


class SessionListener:
    """Accepts TCP sessions and drives a SessionMachine for each."""

    def __init__(
        self,
        directory: Directory,
        accept: Accept,
        *,
        codepage: str,
        max_sessions: int = MAX_SESSIONS,
        idle_timeout: float = SESSION_IDLE_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.accept = accept
        self.codepage = codepage
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.server: asyncio.Server | None = None
        self.sessions: set[Session] = set()
        self.accepting: set[asyncio.Task[None]] = set()
        """Messages being accepted (stored) now, one task each."""

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port); return the port bound (useful when `port` is 0)."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: Session(self), sock=tcp_listener(host, port, BACKLOG)
        )
        return self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every session; messages being stored are let finish
        storing (what is durable stays so), but get no reply."""
        if self.server is not None:
            self.server.close()
        for session in list(self.sessions):
            session.close()
        if self.accepting:
            await asyncio.gather(*self.accepting, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


class Session(asyncio.Protocol):
    """One TCP session: bytes in, the machine's replies out."""

    def __init__(self, listener: SessionListener) -> None:
        self.listener = listener
        self.machine = SessionMachine(listener.directory, codepage=listener.codepage)
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self._idle: asyncio.TimerHandle | None = None
        self._frames_seen = 0
        self._last_frame = self._loop.time()
        """When the machine last completed a frame: idleness is no complete frame, so a peer
        trickling a byte now and then does not keep its session."""

    # -- asyncio's side ------------------------------------------------------------------

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
            self.closed = True
            transport.abort()
            return
        listener.sessions.add(self)
        self._idle = self._loop.call_later(listener.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.machine.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        self.machine.receive_data(b"")
        self._pump()
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("session from %s ended: %s", self.peer, exc)
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.listener.sessions.discard(self)

    def pause_writing(self) -> None:
        # The peer does not take our replies: stop reading its requests until it does.
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    # -- ours ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close after what is already written has been sent."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _pump(self) -> None:
        """Carry out the machine's events until it needs data or waits for an answer."""
        try:
            self._carry_out_events()
        finally:
            if self.machine.frames_received != self._frames_seen:
                self._frames_seen = self.machine.frames_received
                self._last_frame = self._loop.time()

    def _carry_out_events(self) -> None:
        while not self.closed:
            event = self.machine.next_event()
            if isinstance(event, SendData):
                assert self.transport is not None
                self.transport.write(event.data)
            elif isinstance(event, MessageReceived):
                task = self._loop.create_task(self._accept(event))
                self.listener.accepting.add(task)
                task.add_done_callback(self.listener.accepting.discard)
                return
            elif isinstance(event, Dropped):
                log.info("session from %s: %s", self.peer, event.reason)
            elif isinstance(event, CloseConnection):
                log.info("session from %s closed: %s", self.peer, event.reason)
                self.close()
            else:
                return  # NEED_DATA, or PAUSED until the message is answered

    async def _accept(self, message: MessageReceived) -> None:
        try:
            outcome = await self.listener.accept(message, self.peer)
        except Exception:
            log.exception("session from %s: a message could not be taken", self.peer)
            outcome = Outcome("error", reason="internal error")
        if self.closed:
            return  # the peer left (or we stop): stored or not, there is nobody to answer
        assert self.transport is not None
        self.transport.write(self.machine.send(answer_for(outcome)))
        self._pump()

    def _check_idle(self) -> None:
        """Close a session that completed no frame for idle_timeout (one timer, moved
        lazily); a message being stored is not idleness."""
        if self.closed:
            return
        timeout = self.listener.idle_timeout
        due = self._last_frame + timeout
        if self.machine.message_pending:
            due = self._loop.time() + timeout
        elif self._loop.time() >= due:
            log.debug("session from %s completed no frame in %.0f s; closing", self.peer, timeout)
            self.close()
            return
        self._idle = self._loop.call_at(due, self._check_idle)
