"""NetrSendMessage calls in a capture, UDP 135 and other RPC ports ([MS-MSRP] §3.2,
PROTOCOL.md §6): each client datagram goes through the RpcServer machine, fragments
reassembled and retransmissions folded, exactly as the daemon takes them."""

from __future__ import annotations

from collections import OrderedDict

from messengerd.decode.capture import Segment
from messengerd.decode.events import CaptureEvent, message_event
from messengerd.protocol.events import NEED_DATA, EveryName, MessageAccepted
from messengerd.protocol.rpc import CallReceived, RpcServer
from messengerd.wire import rpc
from messengerd.wire.errors import WireError

MAX_SERVERS = 64
"""Receivers (address, port and boot time) followed at once; the oldest is forgotten."""

ANY_BOOT = 1
"""The boot time of the machine standing for a receiver whose callers have not learnt its
boot time yet (they send 0, which every server takes)."""


class RpcDecoder:
    """RPC segments to a receiver's port in, the messages of their calls out."""

    def __init__(self, codepage: str) -> None:
        self.codepage = codepage
        self._servers: OrderedDict[tuple[str, int, int], RpcServer] = OrderedDict()

    def events(self, segment: Segment) -> list[CaptureEvent]:
        """The messages the client datagram `segment` completes."""
        try:
            boot = rpc.parse_pdu(segment.payload).header.server_boot
        except WireError:
            return []
        server = self._server(segment.dst, segment.dport, boot or ANY_BOOT)
        server.receive_data(segment.payload, (segment.src, segment.sport), segment.time)
        found = []
        while (event := server.next_event()) is not NEED_DATA:
            if isinstance(event, CallReceived):
                found.append(message_event(event.message, segment, [segment.frame], self.codepage))
                # The receiver's own answer is in the capture; ours only frees the call.
                server.send(event.call, MessageAccepted())
        return found

    def _server(self, address: str, port: int, boot: int) -> RpcServer:
        key = (address, port, boot)
        server = self._servers.get(key)
        if server is None:
            if len(self._servers) >= MAX_SERVERS:
                self._servers.popitem(last=False)
            server = RpcServer(EveryName(), port=port, server_boot=boot, codepage=self.codepage)
            self._servers[key] = server
        return server
