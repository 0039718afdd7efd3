"""The sending side: NetMessageBufferSend over the session, mailslot and RPC paths
([MS-MSRP] §3.2.4, RFC 1002 §4.2.12, §4.3, §4.4; PROTOCOL.md §3-7).

`send_message` is the asyncio core; `net_message_buffer_send` wraps it for plain code with the
Win32 contract: it returns NERR_Success or raises NetError with NERR_NameNotFound,
NERR_NetworkError or ERROR_INVALID_PARAMETER. Every byte sent comes from messengerd.wire; the
session exchange is messengerd.protocol.session_client's machine. One module per path:
outgoing (the checks and encoding), session, mailslot, rpc, names (finding the receiver).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from messengerd.config.options import (
    DATAGRAM_SERVICE_PORT,
    NAME_SERVICE_PORT,
    RPC_PORT,
    SESSION_SERVICE_PORT,
    default_computer_name,
)
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender.mailslot import send_mailslot
from messengerd.sender.names import NAME_QUERY_INTERVAL, NAME_QUERY_RETRIES, resolve_name
from messengerd.sender.outgoing import (
    CRLF,
    MAX_MAILSLOT_TEXT_BYTES,
    MAX_SESSION_TEXT_BYTES,
    VIAS,
    Delivery,
    OutgoingMessage,
    Unreachable,
    Via,
    computer_name,
    invalid_parameter,
    prepare_message,
)
from messengerd.sender.rpc import send_rpc
from messengerd.sender.session import SESSION_TIMEOUT, send_session
from messengerd.transport.netif import broadcast_for
from messengerd.wire.text import DEFAULT_CODEPAGE, MESSENGER_LINE_BREAK

log = logging.getLogger(__name__)

__all__ = [
    "CRLF",
    "MAX_MAILSLOT_TEXT_BYTES",
    "MAX_SESSION_TEXT_BYTES",
    "NAME_QUERY_INTERVAL",
    "NAME_QUERY_RETRIES",
    "SESSION_TIMEOUT",
    "VIAS",
    "Delivery",
    "OutgoingMessage",
    "Via",
    "computer_name",
    "net_message_buffer_send",
    "prepare_message",
    "resolve_name",
    "send_mailslot",
    "send_message",
    "send_rpc",
    "send_session",
]


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
        raise invalid_parameter(f"host {host!r} is not an IPv4 address") from None


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
            raise invalid_parameter(f"{label} {value} is not a port number")
    if not timeout > 0:
        raise invalid_parameter(f"timeout {timeout} is not a positive number of seconds")
    if host is not None:
        address = _check_address(host)
    else:
        try:
            where = _check_address(broadcast) if broadcast else broadcast_for("0.0.0.0")
        except ValueError as exc:
            raise invalid_parameter(str(exc)) from None
        address = await resolve_name(message.recipient, broadcast=where, port=name_port)
        log.debug("%s is at %s", message.recipient, address)
    if via == "mailslot":
        return send_mailslot(message, address, datagram_port)
    if via == "rpc":
        return await send_rpc(message, address, rpc_port, timeout=timeout)
    try:
        return await send_session(message, address, port, timeout=timeout)
    except Unreachable as exc:
        if via == "session":
            raise NetError(exc.code, exc.detail) from None
        log.debug("no session (%s); sending over the mailslot", exc.detail)
    try:
        return send_mailslot(message, address, datagram_port)
    except Unreachable as exc:
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
