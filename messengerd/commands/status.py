"""`messengerd status`: what the running daemon is doing, asked over its control channel.

Aliases, ports, uptime, messages received, messages the policy refused (by reason) and the
store's size, as lines for a person or (`--json`) the daemon's `status` reply as one JSON
object. With no daemon running it says so in one line and exits 2, as `names` does.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from messengerd.commands.exits import EXIT_OK, control_failure
from messengerd.config.options import front_end_data_dir
from messengerd.control.client import ControlClient
from messengerd.control.protocol import CONTROL_SOCKET, ControlError
from messengerd.core.lmerr import NetError

SERVICES = (("name", "udp"), ("datagram", "udp"), ("session", "tcp"), ("rpc", "udp"))
"""The listeners `status` names, in order, with their transport."""
LABEL_WIDTH = 10
"""Width of the label column of the text output."""
UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))
SIZE_STEP = 1024
SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def add_parser(subparsers: Any) -> None:
    """Add `status` to the `messengerd` subcommands (the object add_subparsers returned)."""
    status = subparsers.add_parser(
        "status",
        help="show the running daemon's aliases, ports, uptime, counts and store",
        description="Ask the running daemon how it is doing: its aliases, ports, uptime, "
        "the messages it received and refused, and its store. Exits 2 when none runs.",
    )
    status.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="the data directory of the daemon to ask (default: your own daemon's, "
        "else the system service's)",
    )
    status.add_argument(
        "--json", action="store_true", help="print the daemon's status as one JSON object"
    )
    status.set_defaults(handler=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    """Run `messengerd status`: EXIT_OK, EXIT_USAGE with no daemon to ask."""
    data_dir: Path = args.data_dir or front_end_data_dir(CONTROL_SOCKET)
    try:
        with ControlClient(data_dir) as client:
            reply = client.request("status")
    except (NetError, ControlError) as exc:
        return control_failure(exc)
    reply.pop("ok", None)
    if args.json:
        print(json.dumps(reply, ensure_ascii=False))
    else:
        for label, text in status_lines(reply):
            print(f"{label:<{LABEL_WIDTH}}  {text}" if label else text)
    return EXIT_OK


def status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    """The `status` reply as (label, text) lines; keys an older daemon lacks are left out."""
    head = f"messengerd {status.get('version', '?')} (pid {status.get('pid', '?')})"
    if isinstance(status.get("uptime"), int | float):
        head += f", up {duration(status['uptime'])}"
    if isinstance(status.get("started_at"), str):
        started = datetime.fromisoformat(status["started_at"]).astimezone()
        head += f" since {started:%Y-%m-%d %H:%M:%S}"
    lines = [("", head), ("data dir", str(status.get("data_dir", "?")))]
    ports = status.get("ports") or {}
    listening = ", ".join(
        f"{service} {ports[service]}/{protocol}"
        for service, protocol in SERVICES
        if service in ports
    )
    where = f"{status.get('bind', '?')}: {listening}; broadcast {status.get('broadcast', '?')}"
    lines.append(("listening", where))
    lines.append(("aliases", ", ".join(status.get("aliases") or []) or "(none)"))
    lines.append(("received", _count(status.get("messages_received", 0), "message")))
    refused = status.get("refused") or {}
    reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(refused.items()))
    total = sum(refused.values())
    lines.append(("refused", f"{_count(total, 'message')}: {reasons}" if total else "none"))
    store = status.get("store", False)
    if store is None:
        lines.append(("store", "none: messages are shown, not kept (--no-store)"))
    elif isinstance(store, dict):
        held = store.get("messages")
        count = "? messages" if held is None else _count(held, "message")
        lines.append(("store", f"{store.get('path')}: {count}, {size(store.get('bytes', 0))}"))
    return lines


def duration(seconds: float) -> str:
    """`2 d 3 h`, `3 h 4 min`, `4 min 5 s` or `5 s`: the two largest units, whole."""
    whole = int(seconds)
    parts: list[str] = []
    for unit, length in UNITS:
        if whole >= length or (unit == "s" and not parts):
            parts.append(f"{whole // length} {unit}")
            whole %= length
        if len(parts) == 2:
            break
    return " ".join(parts)


def size(count: int) -> str:
    """`512 B`, `1.5 KiB`, `3.2 MiB`: a byte count in binary units."""
    value, unit = float(count), 0
    while value >= SIZE_STEP and unit < len(SIZE_UNITS) - 1:
        value /= SIZE_STEP
        unit += 1
    return f"{count} B" if unit == 0 else f"{value:.1f} {SIZE_UNITS[unit]}"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
