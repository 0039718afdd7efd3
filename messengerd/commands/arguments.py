"""argparse value types the subcommands share: they reject a bad value in one line."""

from __future__ import annotations

import argparse
import ipaddress

MAX_PORT = 65535


def listen_port(text: str) -> int:
    """A port to listen on: 0-65535, where 0 asks for any free port."""
    return _port(text, lowest=0)


def peer_port(text: str) -> int:
    """A port to send to or look for: 1-65535."""
    return _port(text, lowest=1)


def _port(text: str, *, lowest: int) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not lowest <= port <= MAX_PORT:
        free = "; 0 = any free" if lowest == 0 else ""
        raise argparse.ArgumentTypeError(f"{port} is not a port number ({lowest}-{MAX_PORT}{free})")
    return port


def ipv4(text: str) -> str:
    """A dotted IPv4 address, normalised."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None
