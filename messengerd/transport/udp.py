"""The name service (UDP 137) and datagram service (UDP 138) listeners."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import lru_cache

from messengerd.core.limits import REASSEMBLY_TIMEOUT
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Dropped, MessageReceived
from messengerd.protocol.nameservice import NameService
from messengerd.transport.netif import local_address_for

log = logging.getLogger(__name__)

Deliver = Callable[[MessageReceived, str], Awaitable[bool]]


class NameServiceProtocol(asyncio.DatagramProtocol):
    """Feeds each UDP 137 datagram to a NameService and sends its answer back to the peer.

    The protocol on the broadcast address's socket is given the unicast socket's transport
    to answer from: a reply from the broadcast socket would carry that address as source.
    """

    def __init__(self, service: NameService, bind: str) -> None:
        self.service = service
        self.bind = bind
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:
            self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        local_ip = self.bind if self.bind != "0.0.0.0" else _local_address(addr[0])
        try:
            reply = self.service.receive(data, local_ip=local_ip, source=addr[0])
        except Exception:
            log.exception("name service packet from %s:%d dropped", *addr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("name service socket: %s", exc)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send a request of our own (a registration broadcast) from this protocol's socket."""
        if self.transport is None or self.transport.is_closing():
            raise OSError("the name service socket is closed")
        self.transport.sendto(data, addr)


class DatagramServiceProtocol(asyncio.DatagramProtocol):
    """Feeds each UDP 138 datagram to a DatagramService and delivers what it completes."""

    def __init__(self, service: DatagramService, deliver: Deliver) -> None:
        self.service = service
        self.deliver = deliver
        self.loop = asyncio.get_running_loop()
        self.tasks: set[asyncio.Task[bool]] = set()
        self.expiry = self.loop.create_task(self._expire_forever())

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        peer = f"{addr[0]}:{addr[1]}"
        try:
            events = self.service.receive(data, peer=addr, now=self.loop.time())
        except Exception:
            log.exception("datagram from %s dropped", peer)
            return
        for event in events:
            if isinstance(event, MessageReceived):
                task = self.loop.create_task(self.deliver(event, peer))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif isinstance(event, Dropped):
                log.debug("datagram from %s dropped: %s", peer, event.reason)

    def error_received(self, exc: Exception) -> None:
        log.debug("datagram socket: %s", exc)

    async def _expire_forever(self) -> None:
        while True:
            await asyncio.sleep(REASSEMBLY_TIMEOUT / 2)
            for event in self.service.expire(self.loop.time()):
                log.debug("datagram reassembly dropped: %s", event.reason)

    async def close(self) -> None:
        """Stop expiring and wait for deliveries already under way."""
        self.expiry.cancel()
        await asyncio.gather(self.expiry, *self.tasks, return_exceptions=True)


@lru_cache(maxsize=256)
def _local_address(peer: str) -> str:
    return local_address_for(peer)
