"""A received message, as every layer above the wire sees it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from messengerd.core.visible import visible_text
from messengerd.wire.text import DEFAULT_CODEPAGE, decode_text

MessagePath = Literal["session", "mailslot", "rpc"]
"""How a message arrived: an SMB session, a mailslot datagram, or an RPC call (DESIGN.md)."""


@dataclass(frozen=True)
class Message:
    """One complete message: who sent it to whom, its text, and how and when it arrived."""

    sender: str
    recipient: str
    text: str
    path: MessagePath
    peer: str
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    raw: bytes = b""
    codepage: str = DEFAULT_CODEPAGE

    @classmethod
    def from_wire(
        cls,
        sender: bytes,
        recipient: bytes,
        text: bytes,
        *,
        path: MessagePath,
        peer: str,
        codepage: str = DEFAULT_CODEPAGE,
    ) -> Message:
        """Decode the three OEM fields a sender put on the wire."""
        return cls(
            sender=decode_text(sender, codepage),
            recipient=decode_text(recipient, codepage),
            text=decode_text(text, codepage),
            path=path,
            peer=peer,
            raw=text,
            codepage=codepage,
        )

    def to_json(self) -> dict[str, Any]:
        """The keys `messengerd run --json` prints."""
        return {
            "from": self.sender,
            "to": self.recipient,
            "text": self.text,
            "received_at": self.received_at.isoformat(),
            "path": self.path,
            "peer": self.peer,
        }

    def one_line(self) -> str:
        """`[time] FROM -> TO (path, peer): text` for a terminal: line breaks shown as ' | ' but
        for those ending the text (`echo text | smbclient -M` sends one), every other control
        made visible (messengerd.core.visible)."""
        when = self.received_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        sender, recipient = visible_text(self.sender), visible_text(self.recipient)
        text = visible_text(self.text.rstrip("\n").replace("\n", " | "))
        return f"[{when}] {sender} -> {recipient} ({self.path}, {self.peer}): {text}"


OutcomeStatus = Literal["stored", "duplicate", "refused", "error"]


@dataclass(frozen=True)
class Outcome:
    """What `Daemon.accept()` did with a message, for the transport to answer its sender.

    - stored: durable in the inbox (or, with no inbox, taken) under `id`;
    - duplicate: a copy of the message stored as `id` (a broadcast heard twice, a retry);
    - refused: not stored, for `reason` (the policy, or a recipient that is no alias);
    - error: not stored because the store failed (`reason`); the sender may send again.
    """

    status: OutcomeStatus
    id: int | None = None
    reason: str = ""

    @property
    def acknowledged(self) -> bool:
        """True when the sender may be told its message arrived (stored or a copy of one)."""
        return self.status in ("stored", "duplicate")
