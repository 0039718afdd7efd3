"""The sending side: NetMessageBufferSend over the session and mailslot paths
([MS-MSRP] §3.2.4.4, RFC 1002 §4.2.12, §4.3, §4.4; PROTOCOL.md §3-5, §7).

`send_message` is the asyncio core; `net_message_buffer_send` wraps it for plain code with the
Win32 contract: it returns NERR_Success or raises NetError with NERR_NameNotFound,
NERR_NetworkError or ERROR_INVALID_PARAMETER. Every byte sent comes from messengerd.wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import secrets
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from messengerd.config.options import (
    DATAGRAM_SERVICE_PORT,
    NAME_SERVICE_PORT,
    RPC_PORT,
    SESSION_SERVICE_PORT,
    default_computer_name,
)
from messengerd.core import limits, lmerr
from messengerd.core.lmerr import NetError
from messengerd.protocol.events import NEED_DATA, CloseConnection, SendData
from messengerd.protocol.session_client import (
    Awaiting,
    MessageDelivered,
    MessageRejected,
    ProtocolError,
    SessionClient,
    SessionRefused,
)
from messengerd.transport.netif import broadcast_for
from messengerd.wire import rpc, smb
from messengerd.wire.datagram import MESSENGER_DATAGRAM_BYTES, build_mailslot_datagrams
from messengerd.wire.errors import WireError
from messengerd.wire.names import (
    MESSENGER_SUFFIX,
    NETBIOS_NAME_LENGTH,
    WORKSTATION_SUFFIX,
    NetBIOSName,
    alias_name,
)
from messengerd.wire.nbns import QueryResponse, build_name_query_request, parse_nbns
from messengerd.wire.text import DEFAULT_CODEPAGE, MESSENGER_LINE_BREAK, check_codepage, encode_text

log = logging.getLogger(__name__)

Via = Literal["auto", "session", "mailslot", "rpc"]
VIAS: tuple[str, ...] = get_args(Via)

CRLF = b"\r\n"
"""The line break smbclient -M sends (PROTOCOL.md §8); Windows sent MESSENGER_LINE_BREAK."""

MAX_SESSION_TEXT_BYTES = 1600
"""Text bytes sent over a session. smbclient -M sends at most 1600 (PROTOCOL.md §4) and old
smbd kept 1600 (msgbuf[1600]); Windows itself sent at most 652 ([MS-MSRP] §3.2.4.4). `auto`
holds text to this bound too, since it tries the session first."""
MAX_MAILSLOT_TEXT_BYTES = 4095
"""Text bytes sent over the mailslot, over several datagrams: Windows showed at most 4095
characters of a message (PROTOCOL.md §5)."""

NAME_QUERY_RETRIES = 3
"""BCAST_REQ_RETRY_COUNT: broadcast name queries sent before giving up (RFC 1002 §6)."""
NAME_QUERY_INTERVAL = 0.25
"""BCAST_REQ_RETRY_TIMEOUT: seconds to wait for an answer to each query (RFC 1002 §6)."""
SESSION_TIMEOUT = 10.0
"""Seconds allowed for the TCP connect and for each reply on the session. Windows' NetBT gave
up on a session setup after about that long; a receiver answers a message command at once."""


@dataclass(frozen=True)
class Delivery:
    """How a message went out: the path, the receiver's address and port, and the pieces.

    `pieces` counts D7 blocks on a multi-block session, datagrams on the mailslot, and is 1
    for a D0.
    """

    path: Literal["session", "mailslot", "rpc"]
    address: str
    port: int
    pieces: int
    multi_block: bool = False


@dataclass(frozen=True)
class OutgoingMessage:
    """A message as it goes on the wire: OEM From, the alias called, OEM text."""

    sender: bytes
    recipient: NetBIOSName
    text: bytes
    calling: NetBIOSName
    """Our own name in the SESSION REQUEST and as the datagrams' SOURCE_NAME."""


class _Unreachable(NetError):
    """No session could be opened (refused, timed out, reset): `auto` may try the mailslot."""

    def __init__(self, detail: str) -> None:
        super().__init__(lmerr.NERR_NetworkError, detail)


class _SingleBlockRejected(Exception):
    """The receiver closed the session or answered ERRunknownsmb to a D0 (smbd without a
    NEGOTIATE does the first): the same text goes again as D5/D7/D6."""


def computer_name(codepage: str = DEFAULT_CODEPAGE) -> str:
    """This host's name as Windows used it for its messages: upper case, at most 15 bytes."""
    name = default_computer_name().upper() or "MESSENGERD"
    raw = name.encode(codepage, errors="replace")[:NETBIOS_NAME_LENGTH]
    return raw.decode(codepage)


def _invalid(detail: str) -> NetError:
    return NetError(lmerr.ERROR_INVALID_PARAMETER, detail)


def prepare_message(
    msgname: str,
    text: str | bytes,
    *,
    fromname: str | None = None,
    via: str = "auto",
    codepage: str = DEFAULT_CODEPAGE,
    line_break: bytes = MESSENGER_LINE_BREAK,
) -> OutgoingMessage:
    """Check and encode what NetMessageBufferSend was given; ERROR_INVALID_PARAMETER if bad.

    `text` as str is encoded in `codepage` with each line break as `line_break`; as bytes it
    is sent as it is (already OEM). Bounds: MAX_SESSION_TEXT_BYTES for `session` and `auto`,
    MAX_MAILSLOT_TEXT_BYTES for `mailslot`, limits.MAX_FIELD_BYTES for From.
    """
    if via not in VIAS:
        raise _invalid(f"via {via!r} is not one of {', '.join(VIAS)}")
    try:
        codepage = check_codepage(codepage)
    except ValueError as exc:
        raise _invalid(str(exc)) from None
    try:
        recipient = alias_name(msgname, codepage)
    except WireError as exc:
        raise _invalid(f"bad message name: {exc}") from None
    own_name = computer_name(codepage)
    sender_text = own_name if fromname is None else fromname
    try:
        sender = sender_text.encode(codepage)
        body = text if isinstance(text, bytes) else encode_text(text, codepage, line_break)
    except UnicodeEncodeError as exc:
        raise _invalid(
            f"{exc.object[exc.start : exc.end]!r} is not in code page {codepage}"
        ) from None
    if not sender or b"\x00" in sender or len(sender) > limits.MAX_FIELD_BYTES:
        raise _invalid(f"the sender name must be 1 to {limits.MAX_FIELD_BYTES} bytes, no NUL")
    if b"\x00" in body:
        raise _invalid("the text contains a NUL, which ends it on every receiver")
    bound = MAX_MAILSLOT_TEXT_BYTES if via in ("mailslot", "rpc") else MAX_SESSION_TEXT_BYTES
    if len(body) > bound:
        raise _invalid(f"the text is {len(body)} bytes; at most {bound} go over {via}")
    calling = own_name.encode(codepage)
    return OutgoingMessage(sender, recipient, body, NetBIOSName(calling, WORKSTATION_SUFFIX))


# --- the session path (RFC 1002 §4.3, [MS-MSRP] §2.2.3) ---------------------------------------


READ_BYTES = 4096
"""Bytes read from the receiver at a time; its replies are 39 bytes each."""


async def _session_attempt(
    message: OutgoingMessage, address: str, port: int, timeout: float, *, single_block: bool
) -> Delivery:
    """One session to the receiver, driven by the caller-side machine (protocol/session_client)."""
    where = f"{address}:{port}"
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
    except TimeoutError:
        raise _Unreachable(f"no answer from {where} within {timeout:g} s") from None
    except OSError as exc:
        # asyncio words a refusal "Connect call failed (addr)"; errno says what happened.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise _Unreachable(f"cannot connect to {where}: {reason}") from None
    client = SessionClient(
        message.sender,
        message.recipient,
        message.text,
        calling=message.calling,
        single_block=single_block,
    )
    try:
        writer.write(client.start())
        while True:
            event = client.next_event()
            if event is NEED_DATA:
                client.receive_data(await _read(reader, where, timeout))
            elif isinstance(event, SendData):
                writer.write(event.data)
            elif isinstance(event, MessageDelivered):
                return Delivery("session", address, port, event.pieces, event.multi_block)
            else:
                raise _failure(event, client.ended_awaiting, where)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read(reader: asyncio.StreamReader, where: str, timeout: float) -> bytes:
    """What the receiver sent next (b"" when it closed); NetError when it says nothing."""
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(READ_BYTES)
    except TimeoutError:
        raise NetError(
            lmerr.NERR_NetworkError, f"{where} sent no reply within {timeout:g} s"
        ) from None
    except OSError:
        return b""  # reset: the receiver is gone as surely as when it closes


def _failure(event: object, awaited: Awaiting, where: str) -> Exception:
    """The exception for how a session attempt ended, other than with the message delivered.

    A receiver that closes the session on a D0 or answers ERRunknownsmb (smbd does the first
    without a NEGOTIATE) is _SingleBlockRejected: the text goes again as D5/D7/D6.
    """
    if isinstance(event, SessionRefused):
        return NetError(lmerr.NERR_NameNotFound, f"{where} refused {event.reason}")
    if isinstance(event, CloseConnection):
        if awaited is Awaiting.SESSION:
            return _Unreachable(f"{where} ended the session request: {event.reason}")
        if awaited is Awaiting.SEND_MESSAGE:
            return _SingleBlockRejected(f"{where} {event.reason}")
        return NetError(lmerr.NERR_NetworkError, f"{where} {event.reason}")
    if isinstance(event, MessageRejected):
        if awaited is Awaiting.SEND_MESSAGE and event.unknown_command:
            return _SingleBlockRejected(f"{where} does not know D0")
        status = smb.describe_status(event.reply)
        command = "" if awaited is Awaiting.SEND_MESSAGE else f"{smb.command_name(event.command)} "
        return NetError(
            lmerr.NERR_NetworkError, f"{where} refused the message: {command}answered {status}"
        )
    assert isinstance(event, ProtocolError), event
    return NetError(lmerr.NERR_NetworkError, f"{where} {event.reason}")


async def send_session(
    message: OutgoingMessage, address: str, port: int = SESSION_SERVICE_PORT, *, timeout: float
) -> Delivery:
    """Deliver over TCP: SESSION REQUEST to the alias, then D0 for text of at most 128 bytes,
    else D5, 128-byte D7 blocks and D6, each after the previous reply ([MS-MSRP] §3.2.4.4).

    A receiver that closes the session on the D0 or answers ERRunknownsmb (smbd does the first
    without a NEGOTIATE) gets the text again, on a new session, as D5/D7/D6.
    """
    if len(message.text) <= smb.MAX_BLOCK_TEXT_BYTES:
        try:
            return await _session_attempt(message, address, port, timeout, single_block=True)
        except _SingleBlockRejected as exc:
            log.debug("D0 not taken (%s); sending it as D5/D7/D6", exc)
    return await _session_attempt(message, address, port, timeout, single_block=False)


# --- the mailslot path (RFC 1002 §4.4, [MS-MAIL] §2.2.1) ---------------------------------------


def send_mailslot(
    message: OutgoingMessage, address: str, port: int = DATAGRAM_SERVICE_PORT
) -> Delivery:
    """Deliver as `\\MAILSLOT\\MESSNGR` datagrams of about 424 bytes, each a whole message.

    UDP confirms nothing: success means sent. A port the host already reported closed (an
    ICMP error waiting on the socket) is NERR_NetworkError.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.connect((address, port))
            source_ip, source_port = sock.getsockname()[:2]
            datagrams = build_mailslot_datagrams(
                message.sender,
                message.recipient.name,
                message.text,
                source_name=NetBIOSName(message.calling.name, MESSENGER_SUFFIX),
                destination_name=message.recipient,
                source_ip=source_ip,
                source_port=source_port,
                datagram_id=secrets.randbelow(0x10000),
                max_datagram=MESSENGER_DATAGRAM_BYTES,
            )
            for datagram in datagrams:
                sock.send(datagram)
            pending = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError as exc:
        raise _Unreachable(f"cannot send to {address}:{port}/udp: {exc.strerror or exc}") from None
    except WireError as exc:
        raise _invalid(str(exc)) from None
    if pending:
        raise _Unreachable(f"{address}:{port}/udp: {os.strerror(pending)}")
    return Delivery("mailslot", address, port, len(datagrams))


# --- the RPC path ([MS-MSRP] §3.2.4.1, C706 ch. 12) -------------------------------------------

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


# --- name resolution (RFC 1002 §4.2.12-4.2.14) ------------------------------------------------


class _Answers(asyncio.DatagramProtocol):
    """Collects name service packets answering one NAME_TRN_ID."""

    def __init__(self, accept: Callable[[bytes], None]) -> None:
        self.accept = accept

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.accept(data)


async def resolve_name(
    name: NetBIOSName,
    *,
    broadcast: str,
    port: int = NAME_SERVICE_PORT,
    retries: int = NAME_QUERY_RETRIES,
    interval: float = NAME_QUERY_INTERVAL,
) -> str:
    """The address of `name` from a broadcast NAME QUERY to `broadcast`:`port`, sent up to
    `retries` times `interval` seconds apart; NERR_NameNotFound when nobody answers or a name
    server answers NAM_ERR (RFC 1002 §4.2.12-4.2.14, §5.1.1.2)."""
    loop = asyncio.get_running_loop()
    trn_id = secrets.randbelow(0x10000)
    answer: asyncio.Future[str] = loop.create_future()

    def accept(data: bytes) -> None:
        try:
            packet = parse_nbns(data)
        except WireError:
            return
        if not isinstance(packet, QueryResponse) or packet.trn_id != trn_id or answer.done():
            return
        if packet.name != name:
            return
        if not packet.positive:
            answer.set_exception(
                NetError(lmerr.NERR_NameNotFound, f"{broadcast} answered {name}: not found")
            )
        elif packet.entries:
            answer.set_result(packet.entries[0].address)

    try:
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Answers(accept), family=socket.AF_INET, allow_broadcast=True
        )
    except OSError as exc:
        raise NetError(lmerr.NERR_NetworkError, f"no UDP socket for name queries: {exc}") from None
    query = build_name_query_request(trn_id, name, broadcast=True)
    try:
        for _ in range(retries):
            try:
                transport.sendto(query, (broadcast, port))
            except OSError as exc:
                raise NetError(
                    lmerr.NERR_NetworkError, f"cannot query {broadcast}:{port}: {exc}"
                ) from None
            try:
                async with asyncio.timeout(interval):
                    return await asyncio.shield(answer)
            except TimeoutError:
                continue
    finally:
        transport.close()
    raise NetError(
        lmerr.NERR_NameNotFound,
        f"no answer to {retries} name queries for {name} on {broadcast}:{port}",
    )


# --- the API ----------------------------------------------------------------------------------


def _check_servername(servername: str | None) -> None:
    """NetMessageBufferSend runs on `servername`; only this computer runs it here."""
    if not servername:
        return
    bare = servername.lstrip("\\").split(".")[0].upper()
    if bare in (".", "LOCALHOST", default_computer_name().upper()):
        return
    raise NetError(
        lmerr.ERROR_NOT_SUPPORTED,
        f"sending through another computer ({servername}) is not supported; "
        "pass host= to reach the recipient's computer directly",
    )


def _check_address(host: str) -> str:
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        raise _invalid(f"host {host!r} is not an IPv4 address") from None


async def send_message(
    msgname: str,
    text: str | bytes,
    *,
    fromname: str | None = None,
    servername: str | None = None,
    via: Via = "auto",
    host: str | None = None,
    port: int = SESSION_SERVICE_PORT,
    datagram_port: int = DATAGRAM_SERVICE_PORT,
    name_port: int = NAME_SERVICE_PORT,
    rpc_port: int = RPC_PORT,
    broadcast: str | None = None,
    codepage: str = DEFAULT_CODEPAGE,
    line_break: bytes = MESSENGER_LINE_BREAK,
    timeout: float = SESSION_TIMEOUT,
) -> Delivery:
    """Send `text` to the alias `msgname` (`MSGNAME<03>`); how it went, or NetError.

    The receiver's address is `host` when given, else a broadcast NAME QUERY to `broadcast`
    (default: this host's LAN broadcast) on `name_port`. `via`: `session` (TCP `port`),
    `mailslot` (UDP `datagram_port`), `rpc` (NetrSendMessage on UDP `rpc_port`) or `auto`: the
    session, then the mailslot when no session can be opened. Errors: ERROR_INVALID_PARAMETER
    for a bad name, text or option; NERR_NameNotFound when the name does not resolve, its
    session is refused or the RPC receiver has no such alias;
    NERR_NetworkError when the network or the receiver fails (a closed port, no reply, an SMB
    error reply); ERROR_NOT_SUPPORTED for another `servername`.
    """
    _check_servername(servername)
    message = prepare_message(
        msgname, text, fromname=fromname, via=via, codepage=codepage, line_break=line_break
    )
    for label, value in (
        ("port", port),
        ("datagram_port", datagram_port),
        ("name_port", name_port),
        ("rpc_port", rpc_port),
    ):
        if not 0 < value <= 0xFFFF:
            raise _invalid(f"{label} {value} is not a port number")
    if not timeout > 0:
        raise _invalid(f"timeout {timeout} is not a positive number of seconds")
    if host is not None:
        address = _check_address(host)
    else:
        try:
            where = _check_address(broadcast) if broadcast else broadcast_for("0.0.0.0")
        except ValueError as exc:
            raise _invalid(str(exc)) from None
        address = await resolve_name(message.recipient, broadcast=where, port=name_port)
        log.debug("%s is at %s", message.recipient, address)
    if via == "mailslot":
        return send_mailslot(message, address, datagram_port)
    if via == "rpc":
        return await send_rpc(message, address, rpc_port, timeout=timeout)
    try:
        return await send_session(message, address, port, timeout=timeout)
    except _Unreachable as exc:
        if via == "session":
            raise NetError(exc.code, exc.detail) from None
        log.debug("no session (%s); sending over the mailslot", exc.detail)
    try:
        return send_mailslot(message, address, datagram_port)
    except _Unreachable as exc:
        raise NetError(exc.code, exc.detail) from None


def net_message_buffer_send(
    msgname: str,
    text: str | bytes,
    *,
    fromname: str | None = None,
    servername: str | None = None,
    via: Via = "auto",
    host: str | None = None,
    port: int = SESSION_SERVICE_PORT,
    datagram_port: int = DATAGRAM_SERVICE_PORT,
    name_port: int = NAME_SERVICE_PORT,
    rpc_port: int = RPC_PORT,
    broadcast: str | None = None,
    codepage: str = DEFAULT_CODEPAGE,
    line_break: bytes = MESSENGER_LINE_BREAK,
    timeout: float = SESSION_TIMEOUT,
) -> int:
    """NetMessageBufferSend: NERR_Success, or NetError with its code (see send_message).

    Blocks until the receiver answered; from a coroutine, `await send_message(...)` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("net_message_buffer_send() blocks the event loop; await send_message()")
    delivery = asyncio.run(
        send_message(
            msgname,
            text,
            fromname=fromname,
            servername=servername,
            via=via,
            host=host,
            port=port,
            datagram_port=datagram_port,
            name_port=name_port,
            rpc_port=rpc_port,
            broadcast=broadcast,
            codepage=codepage,
            line_break=line_break,
            timeout=timeout,
        )
    )
    log.debug("delivered: %s", delivery)
    return lmerr.NERR_Success
