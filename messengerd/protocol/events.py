"""What the protocol machines hand back to whoever drives them, and the answers they take.

Every machine has h11's shape (STYLE.md): `receive_data(...)` feeds input, `next_event()`
returns the next event or a sentinel, `send(answer)` turns the caller's answer into bytes,
and `expire(now)` / `next_deadline()` keep its timers without reading a clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal, Protocol

from messengerd.core.message import MessagePath, Outcome
from messengerd.wire.names import NetBIOSName


class Sentinel(enum.Enum):
    """What `next_event()` returns when it has no event to give."""

    NEED_DATA = "need data"
    """Nothing more until more input arrives."""
    PAUSED = "paused"
    """The machine waits for the caller's answer (`send(...)`) to the event it gave last."""


NEED_DATA = Sentinel.NEED_DATA
PAUSED = Sentinel.PAUSED


@dataclass(frozen=True)
class MessageReceived:
    """A complete message, still as the OEM bytes the sender put on the wire.

    The machine is PAUSED until the caller answers with MessageAccepted or MessageRefused.
    """

    sender: bytes
    recipient: bytes
    text: bytes
    path: MessagePath


@dataclass(frozen=True)
class SendData:
    """Bytes to send now: to the peer of a stream, or to `address` for a datagram machine."""

    data: bytes
    address: tuple[str, int] | None = None


@dataclass(frozen=True)
class CloseConnection:
    """The machine is done with this peer; `reason` is for the log."""

    reason: str


@dataclass(frozen=True)
class Dropped:
    """Input ignored on purpose (not for us, malformed, over a limit); `reason` is for the log."""

    reason: str


@dataclass(frozen=True)
class MessageAccepted:
    """The caller's answer to a MessageReceived: it is stored (or a copy already was)."""


RefusalReason = Literal["no_room", "not_an_alias", "denied"]
"""Why a completed message is refused: the store cannot take it (the sender may retry), its
recipient is no alias of ours, or the policy refuses its source or sender."""


@dataclass(frozen=True)
class MessageRefused:
    """The caller's answer to a MessageReceived: it was not stored, for `reason`."""

    reason: RefusalReason = "no_room"


def answer_for(outcome: Outcome) -> MessageAccepted | MessageRefused:
    """How a transport answers a message's sender, from what Daemon.accept() did with it.

    A message the policy refused is acknowledged all the same (README: refused messages are
    counted and logged, acknowledged, and not stored): a sender that is told nothing learns
    nothing about the deny lists. A store that failed is refused as "no room", so the sender
    sends again.
    """
    if outcome.status == "error":
        return MessageRefused("no_room")
    return MessageAccepted()


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
