"""The mailslot path: `\\MAILSLOT\\MESSNGR` datagrams (RFC 1002 §4.4, [MS-MAIL] §2.2.1)."""

from __future__ import annotations

import os
import secrets
import socket

from messengerd.config.options import DATAGRAM_SERVICE_PORT
from messengerd.sender.outgoing import Delivery, OutgoingMessage, Unreachable, invalid_parameter
from messengerd.wire.datagram import MESSENGER_DATAGRAM_BYTES, build_mailslot_datagrams
from messengerd.wire.errors import WireError
from messengerd.wire.names import MESSENGER_SUFFIX, NetBIOSName


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
        raise Unreachable(f"cannot send to {address}:{port}/udp: {exc.strerror or exc}") from None
    except WireError as exc:
        raise invalid_parameter(str(exc)) from None
    if pending:
        raise Unreachable(f"{address}:{port}/udp: {os.strerror(pending)}")
    return Delivery("mailslot", address, port, len(datagrams))
