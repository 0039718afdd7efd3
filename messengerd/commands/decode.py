"""`messengerd decode`: every Messenger message and name service event in a packet capture."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from messengerd.commands.arguments import peer_port
from messengerd.commands.exits import EXIT_OK, UsageError
from messengerd.config.options import (
    DATAGRAM_SERVICE_PORT,
    NAME_SERVICE_PORT,
    RPC_PORT,
    SESSION_SERVICE_PORT,
)
from messengerd.wire.text import DEFAULT_CODEPAGE, check_codepage


def add_parser(subparsers: Any) -> None:
    """Add `decode` to the `messengerd` subcommands (the object add_subparsers returned)."""
    decode = subparsers.add_parser(
        "decode",
        help="list the messages and name service events in a pcap or pcapng file",
        description="Print every Messenger message (session, mailslot, RPC) and every NetBIOS "
        "name service event in a capture, one a line, decoded by the receiver's own code.",
    )
    decode.add_argument("capture", type=Path, metavar="FILE", help="a .pcap or .pcapng file")
    decode.add_argument("--json", action="store_true", help="print one JSON object per event")
    decode.add_argument(
        "--codepage",
        default=DEFAULT_CODEPAGE,
        help=f"the senders' OEM code page (default {DEFAULT_CODEPAGE})",
    )
    for option, default, what in (
        ("--name-port", NAME_SERVICE_PORT, "name service UDP"),
        ("--datagram-port", DATAGRAM_SERVICE_PORT, "datagram service UDP"),
        ("--session-port", SESSION_SERVICE_PORT, "session service TCP"),
        ("--rpc-port", RPC_PORT, "RPC (NetrSendMessage) UDP"),
    ):
        decode.add_argument(
            option,
            type=peer_port,
            action="append",
            metavar="N",
            help=f"a {what} port to decode (repeatable; default {default})",
        )
    decode.set_defaults(handler=cmd_decode)


def cmd_decode(args: argparse.Namespace) -> int:
    try:
        codepage = check_codepage(args.codepage)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    path: Path = args.capture
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    # Imported here: scapy takes a while, and `messengerd --help` should not wait for it.
    from scapy.error import Scapy_Exception

    from messengerd.decode import decode_capture

    events = decode_capture(
        path,
        codepage=codepage,
        name_ports=args.name_port or [NAME_SERVICE_PORT],
        datagram_ports=args.datagram_port or [DATAGRAM_SERVICE_PORT],
        session_ports=args.session_port or [SESSION_SERVICE_PORT],
        rpc_ports=args.rpc_port or [RPC_PORT],
    )
    try:
        for event in events:
            line = json.dumps(event.to_json(), ensure_ascii=False) if args.json else event.line()
            print(line)
    except (Scapy_Exception, EOFError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable pcap or pcapng capture: {exc}") from None
    except BrokenPipeError:
        # `messengerd decode x.pcap | head` closed the pipe: stop quietly, as cat does, and
        # point stdout at /dev/null so that the flush at exit does not fail once more.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
