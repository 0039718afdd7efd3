"""What the protocol machines hand back to whoever drives them (h11-style small events)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from messengerd.core.message import Path
from messengerd.wire.names import NetBIOSName


@dataclass(frozen=True)
class MessageReceived:
    """A complete message, still as the OEM bytes the sender put on the wire."""

    sender: bytes
    recipient: bytes
    text: bytes
    path: Path


@dataclass(frozen=True)
class SendData:
    """Bytes to write to the peer now."""

    data: bytes


@dataclass(frozen=True)
class CloseConnection:
    """The machine is done with this peer; `reason` is for the log."""

    reason: str


@dataclass(frozen=True)
class Dropped:
    """Input ignored on purpose (not for us, malformed, over a limit); `reason` is for the log."""

    reason: str


class Directory(Protocol):
    """What the machines ask about the names this host answers for."""

    def is_local(self, name: NetBIOSName) -> bool:
        """True for a unique name of ours, e.g. an alias `BOB<03>`."""
        ...

    def is_group(self, name: NetBIOSName) -> bool:
        """True for a group name we listen on, e.g. the workgroup `WORKGROUP<03>` or `*`."""
        ...

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        """Every name we own, with True for group names, for node status answers."""
        ...


class EveryName:
    """A Directory that owns every name, so the bytes alone decide what is delivered.

    For reading captures (`messengerd decode`) and replaying them in tests: every message
    in them comes out, whoever it was for.
    """

    def is_local(self, name: NetBIOSName) -> bool:
        return True

    def is_group(self, name: NetBIOSName) -> bool:
        return True

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        return []
