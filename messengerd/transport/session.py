"""The session service listener (TCP 139): one SessionMachine per connection.

Each connection is a bare `asyncio.Protocol`: bytes go to its machine as they arrive and the
machine's replies go straight back. A completed message is awaited in a task of its own, as
aiosmtpd awaits handle_DATA: `accept(message, peer)` stores it, and its reply is written once
the outcome is known (DESIGN.md: acknowledged means stored). Frames that arrive meanwhile
wait in the machine, which bounds them.

Connections are accepted by a loop of our own rather than asyncio's create_server, for two
reasons. A connection over the limits (MAX_SESSIONS, MAX_SESSIONS_PER_SOURCE) is closed
before any transport is made for it. And when the process runs out of file descriptors,
asyncio's server logs a traceback for every attempt, up to its backlog each time the socket
is readable (hundreds of thousands in seconds); this loop pauses for ACCEPT_RETRY_DELAY
instead, the connections waiting in the listen backlog, and says so once.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from messengerd.core.limits import (
    ACCEPT_RETRY_DELAY,
    MAX_SESSIONS,
    MAX_SESSIONS_PER_SOURCE,
    SESSION_IDLE_TIMEOUT,
)
from messengerd.core.message import Outcome
from messengerd.core.ratelog import SummaryLog
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
"""Connections the kernel queues before accept(): a burst of senders is not refused, and
while accepting pauses they wait there."""

OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
"""accept() errors that say the process or system has no room for another connection now."""

THIS_HOST = "this host"
"""Who the log says ran out of file descriptors."""

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
        max_per_source: int = MAX_SESSIONS_PER_SOURCE,
        idle_timeout: float = SESSION_IDLE_TIMEOUT,
    ) -> None:
        self.directory = directory
        self.accept = accept
        self.codepage = codepage
        self.max_sessions = max_sessions
        self.max_per_source = max_per_source
        self.idle_timeout = idle_timeout
        self.sessions: set[Session] = set()
        self.per_source: Counter[str] = Counter()
        """Open sessions by the peer's address."""
        self.accepting: set[asyncio.Task[None]] = set()
        """Messages being accepted (stored) now, one task each."""
        self.summary = SummaryLog(log)
        """What peers make the listener do, logged summed up (refusals, drops, closes)."""
        self._socket: socket.socket | None = None
        self._serving: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on (host, port); return the port bound (useful when `port` is 0)."""
        sock = tcp_listener(host, port, BACKLOG)
        self._socket = sock
        self._serving = asyncio.get_running_loop().create_task(self._serve(sock))
        return sock.getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every session; messages being stored are let finish
        storing (what is durable stays so), but get no reply."""
        if self._serving is not None:
            self._serving.cancel()
            await asyncio.gather(self._serving, return_exceptions=True)
            self._serving = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        for session in list(self.sessions):
            session.close()
        if self.accepting:
            await asyncio.gather(*self.accepting, return_exceptions=True)
        self.summary.flush()

    async def _serve(self, sock: socket.socket) -> None:
        """Accept connections until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                connection, address = await loop.sock_accept(sock)
            except ConnectionAbortedError:
                continue  # the caller gave up while it waited in the backlog
            except OSError as exc:
                # Out of descriptors (or any other failure): wait, never spin or flood the log.
                reason = "out of file descriptors" if exc.errno in OUT_OF_RESOURCES else "failed"
                detail = f"{exc.strerror or exc}; retrying in {ACCEPT_RETRY_DELAY:g} s"
                self.summary.note(THIS_HOST, f"accepting sessions {reason}", detail)
                await asyncio.sleep(ACCEPT_RETRY_DELAY)
                continue
            host = address[0]
            refusal = self._refusal(host)
            if refusal is not None:
                connection.close()
                self.summary.note(host, "session refused", refusal)
                continue
            try:
                await loop.connect_accepted_socket(
                    functools.partial(Session, self, host), connection
                )
            except OSError as exc:
                connection.close()
                self.summary.note(host, "session failed", str(exc))

    def _refusal(self, host: str) -> str | None:
        """Why a new session from `host` is refused, or None to take it."""
        if len(self.sessions) >= self.max_sessions:
            return f"{self.max_sessions} sessions open"
        if self.per_source[host] >= self.max_per_source:
            return f"{self.max_per_source} sessions from {host} open"
        return None


class Session(asyncio.Protocol):
    """One TCP session: bytes in, the machine's replies out."""

    def __init__(self, listener: SessionListener, host: str) -> None:
        self.listener = listener
        self.host = host
        self.machine = SessionMachine(listener.directory, codepage=listener.codepage)
        self.transport: asyncio.Transport | None = None
        self.peer = host
        self.closed = False
        self._peer_done = False
        """The peer closed its side: the session's end is no event worth a log line."""
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
        listener.sessions.add(self)
        listener.per_source[self.host] += 1
        self._idle = self._loop.call_later(listener.idle_timeout, self._check_idle)

    def data_received(self, data: bytes) -> None:
        self.machine.receive_data(data)
        self._pump()

    def eof_received(self) -> bool:
        self._peer_done = True
        self.machine.receive_data(b"")
        self._pump()
        return False  # the peer is done: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("session from %s ended: %s", self.peer, exc)
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        listener = self.listener
        if self in listener.sessions:
            listener.sessions.discard(self)
            listener.per_source[self.host] -= 1
            if not listener.per_source[self.host]:
                del listener.per_source[self.host]

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
                self.listener.summary.note(self.host, "session packet dropped", event.reason)
            elif isinstance(event, CloseConnection):
                if self._peer_done:
                    log.debug("session from %s ended: %s", self.peer, event.reason)
                else:
                    self.listener.summary.note(self.host, "session closed", event.reason)
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
