"""Reading packet captures (pcap, pcapng) down to the UDP and TCP payloads the machines take.

The one place `messengerd decode` reads a file with scapy: its PcapReader knows the link types
and both file formats. Everything after it reads the payloads with the runtime's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Importing these layers registers the link types (Ethernet, Linux cooked v1/v2) with scapy.
from scapy.layers.inet import IP
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether  # noqa: F401
from scapy.utils import PcapReader

UDP_PROTOCOL = 17
TCP_PROTOCOL = 6
UDP_HEADER_LENGTH = 8
TCP_MIN_HEADER_LENGTH = 20


@dataclass(frozen=True)
class Segment:
    """One UDP datagram or TCP segment payload from a capture, with its frame number (1-based)."""

    frame: int
    transport: Literal["udp", "tcp"]
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes
    time: float


def read_segments(path: str | Path) -> Iterator[Segment]:
    """Every IPv4 UDP and TCP payload in the capture, in capture order.

    Frames scapy cannot dissect down to IP (NetBEUI, IPX, truncated) are skipped.
    """
    with PcapReader(str(path)) as reader:
        for number, frame in enumerate(reader, start=1):
            ip = frame.getlayer(IP)
            if ip is None:
                continue
            # Slice the frame's own bytes: rebuilding a dissected layer can differ from them.
            packet = ip.original[: ip.len] if ip.len else ip.original
            body = packet[ip.ihl * 4 :]
            transport: Literal["udp", "tcp"]
            if ip.proto == UDP_PROTOCOL and len(body) >= UDP_HEADER_LENGTH:
                transport, payload = "udp", body[UDP_HEADER_LENGTH:]
            elif ip.proto == TCP_PROTOCOL and len(body) >= TCP_MIN_HEADER_LENGTH:
                transport, payload = "tcp", body[(body[12] >> 4) * 4 :]
            else:
                continue
            yield Segment(
                frame=number,
                transport=transport,
                src=ip.src,
                sport=int.from_bytes(body[0:2], "big"),
                dst=ip.dst,
                dport=int.from_bytes(body[2:4], "big"),
                payload=bytes(payload),
                time=float(frame.time),
            )
