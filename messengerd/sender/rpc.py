"""The RPC path: one MS-MSRP NetrSendMessage call over connectionless DCE/RPC on UDP
([MS-MSRP] §3.2.4.1, C706 ch. 12)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from messengerd.config.options import RPC_PORT
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender.outgoing import Delivery, OutgoingMessage
from messengerd.wire import rpc
from messengerd.wire.errors import WireError

log = logging.getLogger(__name__)

RPC_RETRANSMIT_INTERVAL = 1.0
"""Seconds a call waits for its reply before it sends the request again. C706's clients
retransmit with backoff from about a second; the server answers a repeat from its reply
cache, so the message is never delivered twice."""


RPC_MAX_REPLIES = 64
"""Datagrams held unread from one server: a call's replies are one or two (a fack, then the
response); more is a flood, and the rest are dropped."""


class _RpcReplies(asyncio.DatagramProtocol):
    """The datagrams a server sends back on our socket, and the ICMP error of a closed port."""

    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes | OSError] = asyncio.Queue(maxsize=RPC_MAX_REPLIES)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            with contextlib.suppress(asyncio.QueueFull):
                self.replies.put_nowait(exc)


async def send_rpc(
    message: OutgoingMessage, address: str, port: int = RPC_PORT, *, timeout: float
) -> Delivery:
    """Deliver as one NetrSendMessage call over connectionless DCE/RPC on UDP, and wait for
    its response: status 0 is delivered, NERR_NameNotFound is no such alias there, anything
    else NERR_NetworkError. Sent again every RPC_RETRANSMIT_INTERVAL until `timeout`."""
    where = f"{address}:{port}/udp"
    act_id = uuid.uuid4()
    datagrams = rpc.build_netr_send_message_call(
        message.sender, message.recipient.name, message.text, act_id=act_id
    )
    loop = asyncio.get_running_loop()
    try:
        transport, protocol = await loop.create_datagram_endpoint(
            _RpcReplies, remote_addr=(address, port)
        )
    except OSError as exc:
        raise NetError(lmerr.NERR_NetworkError, f"cannot reach {where}: {exc}") from None
    try:
        async with asyncio.timeout(timeout):
            while True:
                for datagram in datagrams:
                    transport.sendto(datagram)
                reply = await _rpc_reply(protocol, act_id, where)
                if reply is None:
                    continue  # nocall, or silence: send the call again
                return _rpc_outcome(reply, address, port, len(datagrams), where)
    except TimeoutError:
        raise NetError(
            lmerr.NERR_NetworkError, f"{where} did not answer the call within {timeout:g} s"
        ) from None
    finally:
        transport.close()


async def _rpc_reply(protocol: _RpcReplies, act_id: uuid.UUID, where: str) -> rpc.CallReply | None:
    """The server's final word on the call, or None when it is time to send it again."""
    while True:
        try:
            async with asyncio.timeout(RPC_RETRANSMIT_INTERVAL):
                data = await protocol.replies.get()
        except TimeoutError:
            return None
        if isinstance(data, OSError):
            raise NetError(lmerr.NERR_NetworkError, f"{where}: {data.strerror or data}")
        try:
            reply = rpc.parse_call_reply(data, act_id=act_id, seqnum=0)
        except WireError as exc:
            log.debug("ignored a datagram from %s: %s", where, exc)
            continue
        if reply.ptype is rpc.PacketType.NOCALL:
            return None
        if reply.ptype in (rpc.PacketType.RESPONSE, rpc.PacketType.FAULT, rpc.PacketType.REJECT):
            return reply
        # working, fack: the server has the call; its response follows.


def _rpc_outcome(
    reply: rpc.CallReply, address: str, port: int, pieces: int, where: str
) -> Delivery:
    status = reply.status
    if reply.ptype is rpc.PacketType.RESPONSE and status == lmerr.NERR_Success:
        return Delivery("rpc", address, port, pieces)
    if reply.ptype is rpc.PacketType.RESPONSE and status == lmerr.NERR_NameNotFound:
        raise NetError(lmerr.NERR_NameNotFound, f"{where} has no such message alias")
    if reply.ptype is rpc.PacketType.RESPONSE:
        said = lmerr.NAMES.get(status or 0, f"status {status}")
        raise NetError(lmerr.NERR_NetworkError, f"{where} refused the message: {said}")
    said = rpc.STATUS_NAMES.get(status or 0, f"0x{status or 0:08X}")
    kind = reply.ptype.name.lower()
    raise NetError(lmerr.NERR_NetworkError, f"{where} answered the call with a {kind}: {said}")
