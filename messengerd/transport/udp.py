"""The name service (UDP 137) and datagram service (UDP 138) listeners.

Each feeds every datagram to its machine and carries out the events that come back. A bug
in a machine costs the datagram that found it, logged with its traceback, never the
listener: asyncio would otherwise close the socket that the network feeds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from functools import lru_cache

from messengerd.core.ratelog import SummaryLog
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Dropped, MessageReceived, SendData
from messengerd.protocol.nameservice import NameDefended, NameService, RegistrationAnswer
from messengerd.transport.netif import local_address_for
from messengerd.transport.session import Accept
from messengerd.wire.nbns import RegistrationResponse, WaitForAcknowledgement

log = logging.getLogger(__name__)

AnswerReceived = Callable[[RegistrationResponse | WaitForAcknowledgement, str], None]
"""Who registers our names: told of each registration answer that reaches us."""


class NameServiceProtocol(asyncio.DatagramProtocol):
    """Feeds each UDP 137 datagram to a NameService and sends its answers.

    The protocol on the broadcast address's socket is given the unicast socket's transport
    to answer from: a reply from the broadcast socket would carry that address as source.
    """

    def __init__(self, service: NameService, bind: str, summary: SummaryLog) -> None:
        self.service = service
        self.bind = bind
        self.summary = summary
        """Where what peers make us do is logged, summed up: one for every socket."""
        self.transport: asyncio.DatagramTransport | None = None
        self.answer_received: AnswerReceived | None = None
        """Set once our own names are being registered (transport.registration)."""
        self.service_for: Callable[[str], NameService | None] | None = None
        """The name service of the subnet our address `local_ip` is on, when each subnet
        has its own (transport.subnets); None, or its None: `service`."""
        self.on_broadcast_address = False
        """True for the socket bound to the broadcast address: what it hears was broadcast."""
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            local_ip = self.bind if self.bind != "0.0.0.0" else _local_address(addr[0])
        except OSError as exc:
            # Finding our address takes a socket: none is left (EMFILE), or no route.
            self.summary.note(addr[0], "name service packet dropped", str(exc))
            return
        service = (self.service_for and self.service_for(local_ip)) or self.service
        try:
            service.receive_data(
                data,
                source=addr,
                local_ip=local_ip,
                now=self.loop.time(),
                broadcast=self.on_broadcast_address,
            )
            while True:
                event = service.next_event()
                if isinstance(event, SendData):
                    if self.transport is not None and event.address is not None:
                        self.transport.sendto(event.data, event.address)
                elif isinstance(event, RegistrationAnswer):
                    if self.answer_received is not None:
                        self.answer_received(event.response, event.source)
                elif isinstance(event, NameDefended):
                    self.summary.note(event.address, "registration defended", str(event.name))
                elif isinstance(event, Dropped):
                    log.debug("name service: %s", event.reason)
                else:
                    return
        except Exception:
            log.exception("name service packet from %s:%d dropped", *addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("name service socket: %s", exc)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send a request of our own (a registration broadcast) from this protocol's socket.

        OSError when it cannot go (no route: "Network is unreachable"). The transport's own
        sendto would hand that error to error_received, after the caller has taken the
        request for sent; so the request goes through a duplicate of the socket's
        descriptor, whose sendto raises. Only a full socket buffer leaves it to the
        transport, which queues it.
        """
        if self.transport is None or self.transport.is_closing():
            raise OSError("the name service socket is closed")
        with socket.socket(fileno=os.dup(self.transport.get_extra_info("socket").fileno())) as sock:
            try:
                sock.sendto(data, addr)
            except BlockingIOError:
                self.transport.sendto(data, addr)


class DatagramServiceProtocol(asyncio.DatagramProtocol):
    """Feeds each UDP 138 datagram to a DatagramService; each message it completes is
    accepted in a task of its own (a mailslot write has no reply to wait for)."""

    def __init__(self, service: DatagramService, accept: Accept) -> None:
        self.service = service
        self.accept = accept
        self.loop = asyncio.get_running_loop()
        self.accepting: set[asyncio.Task[object]] = set()
        self._expiry: asyncio.TimerHandle | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            self.service.receive_data(data, peer=addr, now=self.loop.time())
            self._carry_out_events(peer)
        except Exception:
            log.exception("datagram from %s dropped", peer)
        self._schedule_expiry()

    def _carry_out_events(self, peer: str) -> None:
        while True:
            event = self.service.next_event()
            if isinstance(event, MessageReceived):
                task = self.loop.create_task(self.accept(event, peer))
                self.accepting.add(task)
                task.add_done_callback(self.accepting.discard)
            elif isinstance(event, Dropped):
                log.debug("datagram from %s dropped: %s", peer or "?", event.reason)
            else:
                return

    def _schedule_expiry(self) -> None:
        deadline = self.service.next_deadline()
        if deadline is not None and self._expiry is None:
            self._expiry = self.loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        self.service.expire(self.loop.time())
        self._carry_out_events("")
        self._schedule_expiry()

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram socket: %s", exc)

    async def close(self) -> None:
        """Stop expiring and wait for the messages being accepted."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        await asyncio.gather(*self.accepting, return_exceptions=True)


@lru_cache(maxsize=256)
def _local_address(peer: str) -> str:
    return local_address_for(peer)
