"""A message made ready to send: NetMessageBufferSend's checks and encoding, and what a
send reports ([MS-MSRP] §3.2.4.4, PROTOCOL.md §7-8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from messengerd.config.options import default_computer_name
from messengerd.core import limits, lmerr
from messengerd.core.lmerr import NetError
from messengerd.wire.errors import WireError
from messengerd.wire.names import NETBIOS_NAME_LENGTH, WORKSTATION_SUFFIX, NetBIOSName, alias_name
from messengerd.wire.text import DEFAULT_CODEPAGE, MESSENGER_LINE_BREAK, check_codepage, encode_text

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


class Unreachable(NetError):
    """No session could be opened (refused, timed out, reset): `auto` may try the mailslot."""

    def __init__(self, detail: str) -> None:
        super().__init__(lmerr.NERR_NetworkError, detail)


def computer_name(codepage: str = DEFAULT_CODEPAGE) -> str:
    """This host's name as Windows used it for its messages: upper case, at most 15 bytes."""
    name = default_computer_name().upper() or "MESSENGERD"
    raw = name.encode(codepage, errors="replace")[:NETBIOS_NAME_LENGTH]
    return raw.decode(codepage)


def invalid_parameter(detail: str) -> NetError:
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
        raise invalid_parameter(f"via {via!r} is not one of {', '.join(VIAS)}")
    try:
        codepage = check_codepage(codepage)
    except ValueError as exc:
        raise invalid_parameter(str(exc)) from None
    try:
        recipient = alias_name(msgname, codepage)
    except WireError as exc:
        raise invalid_parameter(f"bad message name: {exc}") from None
    own_name = computer_name(codepage)
    sender_text = own_name if fromname is None else fromname
    try:
        sender = sender_text.encode(codepage)
        body = text if isinstance(text, bytes) else encode_text(text, codepage, line_break)
    except UnicodeEncodeError as exc:
        raise invalid_parameter(
            f"{exc.object[exc.start : exc.end]!r} is not in code page {codepage}"
        ) from None
    if not sender or b"\x00" in sender or len(sender) > limits.MAX_FIELD_BYTES:
        raise invalid_parameter(
            f"the sender name must be 1 to {limits.MAX_FIELD_BYTES} bytes, no NUL"
        )
    if b"\x00" in body:
        raise invalid_parameter("the text contains a NUL, which ends it on every receiver")
    bound = MAX_MAILSLOT_TEXT_BYTES if via in ("mailslot", "rpc") else MAX_SESSION_TEXT_BYTES
    if len(body) > bound:
        raise invalid_parameter(f"the text is {len(body)} bytes; at most {bound} go over {via}")
    calling = own_name.encode(codepage)
    return OutgoingMessage(sender, recipient, body, NetBIOSName(calling, WORKSTATION_SUFFIX))
