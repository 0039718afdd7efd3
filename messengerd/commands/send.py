"""`messengerd send`: `net send` for machines that lost it (messengerd.sender underneath)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from messengerd.commands.arguments import ipv4, peer_port
from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from messengerd.config.options import (
    DATAGRAM_SERVICE_PORT,
    NAME_SERVICE_PORT,
    RPC_PORT,
    SESSION_SERVICE_PORT,
)
from messengerd.core.lmerr import NetError, describe
from messengerd.sender import CRLF, SESSION_TIMEOUT, VIAS, send_message
from messengerd.wire.text import DEFAULT_CODEPAGE, MESSENGER_LINE_BREAK, check_codepage

log = logging.getLogger(__name__)

STDIN_TEXT = "-"
"""The TEXT that makes `send` read the message from standard input, as smbclient -M does."""


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{seconds:g} is not a positive number of seconds")
    return seconds


def add_parser(subparsers: Any) -> None:
    """Add `send` to the `messengerd` subcommands (the object add_subparsers returned)."""
    send = subparsers.add_parser(
        "send",
        help="send a message, as `net send` did",
        description="Send TEXT to the message alias TO over the session service (TCP 139) or "
        "as a mailslot datagram (UDP 138). TO is found by a broadcast name query unless "
        "--host gives its address. Prints the lmerr name and exits 1 when it fails.",
    )
    send.add_argument("to", metavar="TO", help="the recipient's message alias, e.g. BOB")
    send.add_argument(
        "text", metavar="TEXT", nargs="+", help=f"the message; {STDIN_TEXT} reads standard input"
    )
    send.add_argument("--from", dest="sender", metavar="NAME", help="sender (default: host name)")
    send.add_argument(
        "--via",
        choices=VIAS,
        default="auto",
        help="session, mailslot, rpc (MS-MSRP NetrSendMessage over UDP), or auto: the session, "
        "then the mailslot (default auto)",
    )
    send.add_argument(
        "--host", type=ipv4, metavar="ADDR", help="the recipient's address: no name query"
    )
    send.add_argument(
        "--port",
        type=peer_port,
        default=SESSION_SERVICE_PORT,
        metavar="N",
        help=f"session service TCP port (default {SESSION_SERVICE_PORT})",
    )
    send.add_argument(
        "--rpc-port",
        type=peer_port,
        default=RPC_PORT,
        metavar="N",
        help=f"RPC UDP port for --via rpc (default {RPC_PORT})",
    )
    send.add_argument(
        "--datagram-port",
        type=peer_port,
        default=DATAGRAM_SERVICE_PORT,
        metavar="N",
        help=f"datagram service UDP port (default {DATAGRAM_SERVICE_PORT})",
    )
    send.add_argument(
        "--name-port",
        type=peer_port,
        default=NAME_SERVICE_PORT,
        metavar="N",
        help=f"name service UDP port the query goes to (default {NAME_SERVICE_PORT})",
    )
    send.add_argument(
        "--broadcast",
        type=ipv4,
        metavar="ADDR",
        help="where the name query goes (default: this host's LAN broadcast address)",
    )
    send.add_argument(
        "--codepage",
        default=DEFAULT_CODEPAGE,
        help=f"the recipient's OEM code page (default {DEFAULT_CODEPAGE})",
    )
    send.add_argument(
        "--crlf",
        action="store_true",
        help="send line breaks as CR LF, as smbclient does (default: 0x14, as Windows did)",
    )
    send.add_argument(
        "--timeout",
        type=_seconds,
        default=SESSION_TIMEOUT,
        metavar="S",
        help=f"seconds to wait for the connection and each reply (default {SESSION_TIMEOUT:g})",
    )
    send.set_defaults(handler=cmd_send)


def _message_text(words: list[str]) -> str:
    if words == [STDIN_TEXT]:
        # A piped message ends with the newline `echo` added; it is not part of the text.
        return sys.stdin.read().rstrip("\r\n")
    return " ".join(words)


def cmd_send(args: argparse.Namespace) -> int:
    try:
        codepage = check_codepage(args.codepage)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        delivery = asyncio.run(
            send_message(
                args.to,
                _message_text(args.text),
                fromname=args.sender,
                via=args.via,
                host=args.host,
                port=args.port,
                datagram_port=args.datagram_port,
                name_port=args.name_port,
                rpc_port=args.rpc_port,
                broadcast=args.broadcast,
                codepage=codepage,
                line_break=CRLF if args.crlf else MESSENGER_LINE_BREAK,
                timeout=args.timeout,
            )
        )
    except NetError as exc:
        detail = f" {exc.detail[:1].upper()}{exc.detail[1:]}." if exc.detail else ""
        print(f"messengerd: {exc.name} ({exc.code}): {describe(exc.code)}{detail}", file=sys.stderr)
        return EXIT_FAILED
    log.debug(
        "sent over the %s to %s:%d in %d piece(s)",
        delivery.path,
        delivery.address,
        delivery.port,
        delivery.pieces,
    )
    print(f"The message was successfully sent to {args.to}.")
    return EXIT_OK
