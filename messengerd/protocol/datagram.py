"""The datagram service machine: UDP 138 datagrams in, Messenger messages out (PROTOCOL.md §5).

h11's shape (messengerd.protocol.events): the transport feeds each datagram with its source
and the time it arrived to `receive_data`, takes events from `next_event` until NEED_DATA,
and calls `expire(now)` at `next_deadline()`. A mailslot write has no reply, so the machine
never pauses: each MessageReceived is the caller's to store, the machine goes on. Nothing
here reads a clock, logs or touches a socket.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from messengerd.core.limits import MAX_DATAGRAM_BYTES, MAX_PENDING_DATAGRAMS, REASSEMBLY_TIMEOUT
from messengerd.protocol.events import NEED_DATA, Directory, Dropped, MessageReceived, Sentinel
from messengerd.wire.datagram import (
    MESSENGER_MAILSLOT,
    DirectDatagram,
    parse_datagram,
    parse_mailslot_write,
    parse_messenger_payload,
)
from messengerd.wire.errors import WireError
from messengerd.wire.names import recipient_name
from messengerd.wire.text import DEFAULT_CODEPAGE, check_codepage

MAX_FRAGMENTS = 64
"""Fragments kept per datagram: MAX_DATAGRAM_BYTES in pieces of 128 bytes. RFC 1002 senders
fragment only datagrams over about 512 bytes, into pieces of several hundred."""

BROADCAST_RECIPIENT = b"*"
"""The To field of `net send *`: everyone who hears the datagram (PROTOCOL.md §5)."""

Event = MessageReceived | Dropped


@dataclass
class _Reassembly:
    """The fragments of one datagram seen so far (RFC 1002 §4.4.1: keyed by SOURCE_IP, DGM_ID)."""

    started: float
    fragments: list[tuple[int, bytes]] = field(default_factory=list)
    first: DirectDatagram | None = None
    """The fragment at offset 0: its header and names address the whole datagram."""
    end: int | None = None
    """Where the fragment without MORE ends: the whole datagram's user-data length."""
    stored: int = 0

    def add(self, fragment: DirectDatagram, max_bytes: int) -> str | None:
        """Take `fragment`; the reason to abandon the whole datagram, or None."""
        offset, data = fragment.packet_offset, fragment.user_data
        end = offset + len(data)
        if (offset, data) in self.fragments:
            return None  # a retransmission changes nothing
        for other_offset, other in self.fragments:
            low, high = max(offset, other_offset), min(end, other_offset + len(other))
            if low >= high:
                continue
            mine = data[low - offset : high - offset]
            if mine != other[low - other_offset : high - other_offset]:
                return "fragments overlap with different bytes"
        if not fragment.more:
            if self.end is not None and self.end != end:
                return f"two last fragments, ending at {self.end} and {end}"
            self.end = end
        if self.end is not None and max(end, self._furthest()) > self.end:
            return f"a fragment runs past the last fragment's end {self.end}"
        if len(self.fragments) >= MAX_FRAGMENTS:
            return f"more than {MAX_FRAGMENTS} fragments"
        if self.stored + len(data) > max_bytes:
            return f"fragments hold more than {max_bytes} bytes"
        self.fragments.append((offset, data))
        self.stored += len(data)
        if offset == 0 and self.first is None:
            self.first = fragment
        return None

    def _furthest(self) -> int:
        return max((offset + len(data) for offset, data in self.fragments), default=0)

    def assemble(self) -> bytes | None:
        """The whole user data once offset 0 through the last fragment's end are all here."""
        if self.first is None or self.end is None:
            return None
        covered = 0
        for offset, data in sorted(self.fragments):
            if offset > covered:
                return None
            covered = max(covered, offset + len(data))
        if covered < self.end:
            return None
        whole = bytearray(self.end)
        for offset, data in self.fragments:
            whole[offset : offset + len(data)] = data
        return bytes(whole)


class DatagramService:
    """Receives `\\MAILSLOT\\MESSNGR` datagrams for this host (RFC 1002 §4.4, PROTOCOL.md §5).

    Accepts direct unique, direct group and broadcast datagrams, reassembling fragments by
    (SOURCE_IP, DGM_ID) and PACKET_OFFSET. A message is for us when its To field is one of our
    aliases, `*`, or a group the directory listens on, or when the datagram's destination name
    is one of our names or groups. Everything else comes back as a Dropped.
    """

    def __init__(
        self,
        directory: Directory,
        *,
        max_pending: int = MAX_PENDING_DATAGRAMS,
        timeout: float = REASSEMBLY_TIMEOUT,
        max_datagram_bytes: int = MAX_DATAGRAM_BYTES,
        codepage: str = DEFAULT_CODEPAGE,
    ) -> None:
        if max_pending < 1 or timeout <= 0 or max_datagram_bytes < 1:
            raise ValueError("max_pending, timeout and max_datagram_bytes must be positive")
        self._directory = directory
        self._max_pending = max_pending
        self._timeout = timeout
        self._max_datagram_bytes = max_datagram_bytes
        self._codepage = check_codepage(codepage)
        # Insertion order is arrival order, so the first entry is always the oldest.
        self._pending: dict[tuple[str, int], _Reassembly] = {}
        self._events: collections.deque[Event] = collections.deque()

    @property
    def pending(self) -> int:
        """Datagrams waiting for more fragments."""
        return len(self._pending)

    def receive_data(self, data: bytes, *, peer: tuple[str, int], now: float) -> None:
        """Take one UDP 138 payload from `peer` that arrived at `now`.

        Reassemblies that timed out by `now` are dropped first, so a late fragment never
        completes a datagram that `expire` would already have given up on.
        """
        self.expire(now)
        self._events.extend(self._receive(data, peer, now))

    def next_event(self) -> Event | Sentinel:
        """The next message or drop, or NEED_DATA."""
        return self._events.popleft() if self._events else NEED_DATA

    def expire(self, now: float) -> None:
        """Give up on datagrams whose fragments took `timeout` seconds or more (RFC 1002 §4.4):
        a Dropped event each."""
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if now - entry.started < self._timeout:
                break
            del self._pending[key]
            self._events.append(
                Dropped(
                    f"datagram 0x{key[1]:04X} from {key[0]} timed out "
                    f"with {entry.stored} bytes in {len(entry.fragments)} fragments"
                )
            )

    def next_deadline(self) -> float | None:
        """When the oldest reassembly times out; None when none waits."""
        if not self._pending:
            return None
        return next(iter(self._pending.values())).started + self._timeout

    def _receive(self, data: bytes, peer: tuple[str, int], now: float) -> list[Event]:
        try:
            datagram = parse_datagram(data)
        except WireError as exc:
            return [Dropped(f"malformed datagram: {exc}")]
        if not isinstance(datagram, DirectDatagram):
            return [Dropped(f"datagram type 0x{datagram.msg_type:02X} carries no message")]
        if not datagram.is_fragment:
            if len(datagram.user_data) > self._max_datagram_bytes:
                return [Dropped(f"{len(datagram.user_data)} bytes of user data, past the limit")]
            return [self._deliver(datagram, datagram.user_data, peer)]
        return self._reassemble(datagram, peer, now)

    def _reassemble(
        self, fragment: DirectDatagram, peer: tuple[str, int], now: float
    ) -> list[Event]:
        """Add a fragment; the whole datagram's message once its last piece is in."""
        name = f"datagram 0x{fragment.datagram_id:04X} from {fragment.source_ip}"
        end = fragment.packet_offset + len(fragment.user_data)
        # Checked before a reassembly is opened, so bad fragments cannot evict good ones.
        if end > self._max_datagram_bytes:
            return [Dropped(f"{name}: fragment ends at {end}, past the limit")]
        if fragment.first and fragment.packet_offset:
            return [Dropped(f"{name}: FIRST fragment at offset {fragment.packet_offset}")]
        events: list[Event] = []
        key = (fragment.source_ip, fragment.datagram_id)
        entry = self._pending.get(key)
        if entry is None:
            if len(self._pending) >= self._max_pending:
                oldest = next(iter(self._pending))
                del self._pending[oldest]
                events.append(
                    Dropped(
                        f"datagram 0x{oldest[1]:04X} from {oldest[0]} evicted: "
                        f"{self._max_pending} datagrams already waiting for fragments"
                    )
                )
            entry = self._pending[key] = _Reassembly(started=now)
        problem = entry.add(fragment, self._max_datagram_bytes)
        if problem is not None:
            del self._pending[key]
            events.append(Dropped(f"{name}: {problem}"))
            return events
        whole = entry.assemble()
        if whole is not None and entry.first is not None:
            del self._pending[key]
            events.append(self._deliver(entry.first, whole, peer))
        return events

    def _deliver(self, header: DirectDatagram, user_data: bytes, peer: tuple[str, int]) -> Event:
        """The message in a whole datagram's user data, if it is a Messenger message for us."""
        try:
            write = parse_mailslot_write(user_data)
        except WireError as exc:
            return Dropped(f"malformed mailslot write: {exc}")
        if write.mailslot_name.upper() != MESSENGER_MAILSLOT:
            # Browse announcements and logon traffic arrive all the time: not worth a log line.
            return Dropped(f"mailslot {write.mailslot_name!r} is not the Messenger's")
        try:
            sender, recipient, text = parse_messenger_payload(write.data)
        except WireError as exc:
            return Dropped(f"malformed Messenger message: {exc}")
        if not self._addressed_to_us(header, recipient):
            return Dropped(f"message to {recipient!r} for {header.destination_name} is not ours")
        return MessageReceived(sender, recipient, text, path="mailslot")

    def _addressed_to_us(self, header: DirectDatagram, recipient: bytes) -> bool:
        """To is ours, `*` or our group, or the datagram was sent to one of our names."""
        if recipient.rstrip(b" ") == BROADCAST_RECIPIENT:
            return True
        directory = self._directory
        alias = recipient_name(recipient, self._codepage)
        if alias is not None and (directory.is_local(alias) or directory.is_group(alias)):
            return True
        destination = header.destination_name
        return directory.is_local(destination) or directory.is_group(destination)
