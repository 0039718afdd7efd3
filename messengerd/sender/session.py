"""The session path: one message over TCP, driven by the caller-side machine
(messengerd.protocol.session_client; RFC 1002 §4.3, [MS-MSRP] §2.2.3, §3.2.4.4)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from messengerd.config.options import SESSION_SERVICE_PORT
from messengerd.core import lmerr
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
from messengerd.sender.outgoing import Delivery, OutgoingMessage, Unreachable
from messengerd.wire import smb

log = logging.getLogger(__name__)

SESSION_TIMEOUT = 10.0
"""Seconds allowed for the TCP connect and for each reply on the session. Windows' NetBT gave
up on a session setup after about that long; a receiver answers a message command at once."""


class _SingleBlockRejected(Exception):
    """The receiver closed the session or answered ERRunknownsmb to a D0 (smbd without a
    NEGOTIATE does the first): the same text goes again as D5/D7/D6."""


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
        raise Unreachable(f"no answer from {where} within {timeout:g} s") from None
    except OSError as exc:
        # asyncio words a refusal "Connect call failed (addr)"; errno says what happened.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise Unreachable(f"cannot connect to {where}: {reason}") from None
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
            return Unreachable(f"{where} ended the session request: {event.reason}")
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
