"""B-node name registration, refresh and release (RFC 1002 §5.1.1), without I/O.

`Registrar` is the machine, in h11's shape (messengerd.protocol.events): it is told the time
(`register`, `release`, `expire(now)`) and the answers that arrived (`receive_answer`), and
`next_event` hands back the packets to broadcast and what became of each name;
`next_deadline` says when to call `expire` again. It never touches a socket or a clock, so
the unit tests drive it with numbers. The asyncio runner is messengerd.transport.registration.

A name's life, as Windows 98 lived it (dos_win98_smb_netbeui.pcap frames 21-36):
three NAME REGISTRATION REQUESTs (0x2910) with one NAME_TRN_ID, BCAST_REQ_RETRY_TIMEOUT
apart; any NEGATIVE NAME REGISTRATION RESPONSE in the meantime means another node holds
it. No objection after the last pause: the name is ours, announced with a NAME OVERWRITE
DEMAND (0x2810). A release is three NAME RELEASE REQUESTs (0x3010) with one NAME_TRN_ID
(anyconnect-vpn.pcap frames 548-558). Defending our names against others' registrations is
the name service's job (protocol/nameservice.py), since it is an answer to a request.

Refresh: B nodes have no name server to refresh with (nmbd cites RFC 1001 §15.5.1 and sends
none), but a name's TTL is a promise to those who cached our answers, so each name is
re-announced by a broadcast NAME REFRESH REQUEST (0x4010) once half its TTL is gone, when
nmbd refreshes the names it holds at a name server. A TTL of 0 means forever: no refresh.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass

from messengerd.protocol.events import NEED_DATA, Dropped, Sentinel
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    DEFAULT_TTL,
    ONT_B,
    RegistrationResponse,
    WaitForAcknowledgement,
    build_name_overwrite_demand,
    build_name_refresh_request,
    build_name_registration_request,
    build_name_release_request,
)

BCAST_REQ_RETRY_TIMEOUT = 0.25
"""Seconds between a B node's broadcast requests (RFC 1002 §6: 250 milliseconds)."""
BCAST_REQ_RETRY_COUNT = 3
"""Broadcast registration or release requests sent for a name (RFC 1002 §6: 3)."""
REFRESH_FRACTION = 0.5
"""A name is refreshed when this share of its TTL has passed (nmbd's refresh_time, TTL / 2)."""
TRN_ID_MODULUS = 0x10000
"""NAME_TRN_ID is 16 bits (RFC 1002 §4.2.1.1)."""


# --- events the machine hands back ----------------------------------------------------------


@dataclass(frozen=True)
class Broadcast:
    """Send `data` to the broadcast address's name service port now."""

    data: bytes
    name: NetBIOSName
    what: str
    """For the log: registration, overwrite demand, refresh or release."""


@dataclass(frozen=True)
class NameRegistered:
    """No node objected: `name` is ours (RFC 1002 §5.1.1)."""

    name: NetBIOSName


@dataclass(frozen=True)
class NameConflict:
    """Another node holds `name` unique: it answered our registration negatively."""

    name: NetBIOSName
    owner: str
    """The address the objection came from."""
    rcode: int


@dataclass(frozen=True)
class LateObjection:
    """`owner` objected to `name` after it became ours (RCODE `rcode`); we keep it, as a B
    node that has sent its overwrite demand does (RFC 1002 §5.1.1)."""

    name: NetBIOSName
    owner: str
    rcode: int


Event = Broadcast | NameRegistered | NameConflict | LateObjection | Dropped


class _State(enum.Enum):
    REGISTERING = "registering"
    REGISTERED = "registered"
    RELEASING = "releasing"


@dataclass
class _Name:
    state: _State
    trn_id: int
    due: float | None
    """When the next broadcast for this name is due; None: nothing to send."""
    sends_left: int = 0


def _bare(name: NetBIOSName) -> NetBIOSName:
    return NetBIOSName(name.name, name.suffix)


class Registrar:
    """The names this node registers by broadcast, and where each one stands.

    `register`, `release` and `expire` take the time in seconds on any monotonic clock;
    what they and `receive_answer` bring comes out of `next_event()`; `next_deadline()`
    says when to call `expire` again.
    """

    def __init__(
        self,
        address: str,
        *,
        ttl: int = DEFAULT_TTL,
        nb_flags: int = ONT_B,
        first_trn_id: int = 0,
        retry_timeout: float = BCAST_REQ_RETRY_TIMEOUT,
        retry_count: int = BCAST_REQ_RETRY_COUNT,
        scope: bytes = b"",
    ) -> None:
        if retry_count < 1:
            raise ValueError(f"retry_count {retry_count} sends nothing")
        self.address = address
        self.ttl = ttl
        self.nb_flags = nb_flags
        self.retry_timeout = retry_timeout
        self.retry_count = retry_count
        self.scope = scope
        self._next_trn_id = first_trn_id % TRN_ID_MODULUS
        self._names: dict[NetBIOSName, _Name] = {}
        self._events: collections.deque[Event] = collections.deque()

    # -- queries ---------------------------------------------------------------------------

    def state(self, name: NetBIOSName) -> str | None:
        """'registering', 'registered', 'releasing', or None for a name we know nothing of."""
        entry = self._names.get(_bare(name))
        return entry.state.value if entry else None

    def registered(self) -> list[NetBIOSName]:
        """The names we hold, sorted."""
        return sorted(n for n, e in self._names.items() if e.state is _State.REGISTERED)

    @property
    def busy(self) -> bool:
        """True while a registration or release is still sending or waiting."""
        return any(e.state is not _State.REGISTERED for e in self._names.values())

    def next_deadline(self) -> float | None:
        """When `expire` next has something to do; None when nothing is scheduled."""
        dues = [e.due for e in self._names.values() if e.due is not None]
        return min(dues) if dues else None

    # -- inputs ----------------------------------------------------------------------------

    def register(self, name: NetBIOSName, now: float) -> None:
        """Start registering `name`; the first request goes out at the next expire().

        ValueError for a name already registered or being registered. A name being
        released is taken back: its remaining releases are not sent.
        """
        name = _bare(name)
        entry = self._names.get(name)
        if entry is not None and entry.state is not _State.RELEASING:
            raise ValueError(f"{name} is already {entry.state.value}")
        self._names[name] = _Name(
            _State.REGISTERING, self._trn_id(), due=now, sends_left=self.retry_count
        )

    def cancel(self, name: NetBIOSName) -> None:
        """Forget a registration under way, without a release: the name was never ours."""
        name = _bare(name)
        entry = self._names.get(name)
        if entry is not None and entry.state is _State.REGISTERING:
            del self._names[name]

    def release(self, name: NetBIOSName, now: float) -> None:
        """Give `name` up: release requests go out from the next expire() on.

        A registration still under way is dropped without a release; an unknown name is
        ignored.
        """
        name = _bare(name)
        entry = self._names.get(name)
        if entry is None or entry.state is _State.RELEASING:
            return
        if entry.state is _State.REGISTERING:
            del self._names[name]
            return
        self._names[name] = _Name(
            _State.RELEASING, self._trn_id(), due=now, sends_left=self.retry_count
        )

    def release_all(self, now: float) -> None:
        """Release every name we hold and drop every registration under way (shutting down)."""
        for name in list(self._names):
            self.release(name, now)

    def receive_answer(
        self, response: RegistrationResponse | WaitForAcknowledgement, source: str
    ) -> None:
        """A name registration response (or WACK) that came to us from `source`."""
        name = _bare(response.name)
        entry = self._names.get(name)
        kind = type(response).__name__
        if entry is None or entry.trn_id != response.trn_id:
            self._events.append(Dropped(f"{kind} for {name} from {source}: not ours"))
            return
        if isinstance(response, WaitForAcknowledgement) or response.positive:
            # Only a name server sends these, to P and M nodes (RFC 1002 §4.2.5, §4.2.16);
            # a B node keeps waiting for objections.
            self._events.append(Dropped(f"{kind} for {name} from {source}: we are a B node"))
            return
        if entry.state is not _State.REGISTERING:
            self._events.append(LateObjection(name, source, response.rcode))
            return
        del self._names[name]
        self._events.append(NameConflict(name, source, response.rcode))

    def next_event(self) -> Event | Sentinel:
        """The next broadcast to send or name settled, or NEED_DATA."""
        return self._events.popleft() if self._events else NEED_DATA

    def expire(self, now: float) -> None:
        """Everything due by `now`: broadcasts to send, names that became ours (as events)."""
        for name, entry in list(self._names.items()):
            if entry.due is None or entry.due > now:
                continue
            if entry.state is _State.REGISTERING:
                self._expire_registering(name, entry, now)
            elif entry.state is _State.REGISTERED:
                self._events.append(self._send(name, "refresh", entry.trn_id))
                entry.trn_id = self._trn_id()
                entry.due = self._refresh_due(now)
            else:
                self._events.append(self._send(name, "release", entry.trn_id))
                entry.sends_left -= 1
                if entry.sends_left:
                    entry.due = now + self.retry_timeout
                else:
                    del self._names[name]

    # -- helpers ---------------------------------------------------------------------------

    def _expire_registering(self, name: NetBIOSName, entry: _Name, now: float) -> None:
        if entry.sends_left:
            entry.sends_left -= 1
            # The pause after the last request is the time left for objections.
            entry.due = now + self.retry_timeout
            self._events.append(self._send(name, "registration", entry.trn_id))
            return
        entry.state = _State.REGISTERED
        entry.due = self._refresh_due(now)
        self._events.append(self._send(name, "overwrite demand", entry.trn_id))
        self._events.append(NameRegistered(name))

    def _refresh_due(self, now: float) -> float | None:
        return now + self.ttl * REFRESH_FRACTION if self.ttl else None

    def _trn_id(self) -> int:
        trn_id = self._next_trn_id
        self._next_trn_id = (trn_id + 1) % TRN_ID_MODULUS
        return trn_id

    def _send(self, name: NetBIOSName, what: str, trn_id: int) -> Broadcast:
        wire_name = NetBIOSName(name.name, name.suffix, self.scope)
        if what == "registration":
            data = build_name_registration_request(
                trn_id, wire_name, self.address, nb_flags=self.nb_flags, ttl=self.ttl
            )
        elif what == "overwrite demand":
            data = build_name_overwrite_demand(
                trn_id, wire_name, self.address, nb_flags=self.nb_flags, ttl=self.ttl
            )
        elif what == "refresh":
            data = build_name_refresh_request(
                trn_id, wire_name, self.address, nb_flags=self.nb_flags, ttl=self.ttl,
                broadcast=True,
            )  # fmt: skip
        else:
            data = build_name_release_request(
                trn_id, wire_name, self.address, nb_flags=self.nb_flags
            )
        return Broadcast(data, name, what)
