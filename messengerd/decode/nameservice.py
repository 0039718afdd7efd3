"""Name service traffic in a capture, UDP 137 (RFC 1002 §4.2): one event per packet that
parse_nbns reads, the same parser the daemon's name service uses."""

from __future__ import annotations

from typing import Any

from messengerd.decode.capture import Segment
from messengerd.decode.events import CaptureEvent, endpoint, name_text
from messengerd.wire.errors import WireError
from messengerd.wire.nbns import (
    RCODE_NAMES,
    NameQuery,
    NameRefresh,
    NameRegistration,
    NameRelease,
    NameServicePacket,
    NodeStatus,
    NodeStatusQuery,
    QueryResponse,
    RegistrationResponse,
    ReleaseResponse,
    WaitForAcknowledgement,
    parse_nbns,
)


def name_service_events(segment: Segment, codepage: str) -> list[CaptureEvent]:
    """The event of one name service packet; none for bytes that are not one."""
    try:
        packet = parse_nbns(segment.payload)
    except WireError:
        return []
    name = name_text(packet.name, codepage)
    kind, summary, details = _describe(packet, segment, codepage)
    return [
        CaptureEvent(
            frames=[segment.frame],
            time=segment.time,
            kind=kind,
            src=endpoint(segment.src, segment.sport),
            dst=endpoint(segment.dst, segment.dport),
            summary=f"{name}  {summary}".rstrip(),
            details={"trn_id": packet.trn_id, "name": name, **details},
        )
    ]


def _rcode(packet: NameServicePacket) -> str:
    return RCODE_NAMES.get(packet.rcode, str(packet.rcode))


def _describe(
    packet: NameServicePacket, segment: Segment, codepage: str
) -> tuple[str, str, dict[str, Any]]:
    """The event kind, what follows the name on its line, and its JSON details."""
    if isinstance(packet, NameRegistration):
        kind = "name-overwrite" if packet.overwrite_demand else "name-registration"
        group = "  group" if packet.group else ""
        return kind, f"{packet.address}{group}", {"address": packet.address}
    if isinstance(packet, NameRelease):
        return "name-release", packet.address, {"address": packet.address}
    if isinstance(packet, NameRefresh):
        return "name-refresh", packet.address, {"address": packet.address}
    if isinstance(packet, NameQuery):
        how = "broadcast" if packet.broadcast else "unicast"
        return "name-query", f"from {segment.src} ({how})", {"broadcast": packet.broadcast}
    if isinstance(packet, NodeStatusQuery):
        return "node-status-query", f"to {segment.dst}", {}
    if isinstance(packet, QueryResponse):
        if not packet.positive:
            rcode = _rcode(packet)
            return "negative-name-query-response", rcode, {"rcode": rcode}
        addresses = [entry.address for entry in packet.entries]
        return "name-query-response", " ".join(addresses), {"addresses": addresses}
    if isinstance(packet, NodeStatus):
        names = [name_text(entry.name, codepage) for entry in packet.node_names]
        return "node-status-response", " ".join(names), {"names": names}
    if isinstance(packet, RegistrationResponse):
        addresses = [entry.address for entry in packet.entries]
        if packet.positive:
            return "name-registration-response", " ".join(addresses), {"addresses": addresses}
        rcode = _rcode(packet)
        held = f"held by {' '.join(addresses)} ({rcode})"
        return "name-conflict", held, {"addresses": addresses, "rcode": rcode}
    if isinstance(packet, ReleaseResponse):
        kind = "name-release-response" if packet.positive else "negative-name-release-response"
        return kind, "", {}
    if isinstance(packet, WaitForAcknowledgement):
        return "wait-for-acknowledgement", f"{packet.ttl} s", {"ttl": packet.ttl}
    return type(packet).__name__, "", {}
