"""The RPC listener: MS-MSRP NetrSendMessage and ept_map over connectionless DCE/RPC on UDP.

Feeds each datagram to the RpcServer machine (messengerd.protocol.rpc) and carries out what it
says: replies go straight back; a message is accepted in a task of its own, and its call is
answered once the daemon has stored it (acknowledged means stored, as on every path).
"""

from __future__ import annotations

import asyncio
import logging

from messengerd.core.message import Outcome
from messengerd.protocol.events import Dropped, SendData, answer_for
from messengerd.protocol.rpc import CallReceived, RpcServer
from messengerd.transport.session import Accept

log = logging.getLogger(__name__)


class RpcProtocol(asyncio.DatagramProtocol):
    """One UDP socket of the RPC listener. The socket's own port must be known to answer
    ept_map, so the daemon gives every socket of the listener the one `server` it made once
    the port was bound; a datagram that arrives before that is dropped."""

    def __init__(self, accept: Accept) -> None:
        self.accept = accept
        self.server: RpcServer | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.loop = asyncio.get_running_loop()
        self.accepting: set[asyncio.Task[None]] = set()
        self._expiry: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.server is None:
            return
        try:
            self.server.receive_data(data, addr, self.loop.time())
            self._carry_out_events()
        except Exception:
            log.exception("RPC datagram from %s:%d dropped", *addr)
        self._schedule_expiry()

    def error_received(self, exc: Exception) -> None:
        log.debug("RPC socket: %s", exc)

    def _carry_out_events(self) -> None:
        assert self.server is not None
        while True:
            event = self.server.next_event()
            if isinstance(event, SendData):
                self._send(event)
            elif isinstance(event, CallReceived):
                task = self.loop.create_task(self._answer(event))
                self.accepting.add(task)
                task.add_done_callback(self.accepting.discard)
            elif isinstance(event, Dropped):
                log.debug("RPC: %s", event.reason)
            else:
                return

    async def _answer(self, call: CallReceived) -> None:
        peer = f"{call.address[0]}:{call.address[1]}"
        try:
            outcome = await self.accept(call.message, peer)
        except Exception:
            log.exception("RPC call from %s: the message could not be taken", peer)
            outcome = Outcome("error", reason="internal error")
        assert self.server is not None
        reply = self.server.send(call.call, answer_for(outcome))
        if reply is not None:
            self._send(reply)

    def _send(self, event: SendData) -> None:
        if self.transport is not None and event.address is not None:
            self.transport.sendto(event.data, event.address)

    def _schedule_expiry(self) -> None:
        if self.server is None or self._expiry is not None:
            return
        deadline = self.server.next_deadline()
        if deadline is not None:
            self._expiry = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        assert self.server is not None
        self.server.expire(self.loop.time())
        self._carry_out_events()
        self._schedule_expiry()

    async def close(self) -> None:
        """Stop expiring and wait for the messages being accepted."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        await asyncio.gather(*self.accepting, return_exceptions=True)
