"""The name service machine: answers queries and node status for our names (RFC 1002 §4.2).

h11's shape (messengerd.protocol.events): `receive_data` takes one UDP 137 datagram with its
source and the local address it came in on; `next_event` hands back the reply to send
(SendData to the source), why a packet was ignored (Dropped), and answers to our own
registrations (RegistrationAnswer, for the registration machine). Which names are ours is
the Directory's business alone: aliases `NAME<03>`, and the machine's own `<00>`/`<20>`
names only when the directory lists them. It also defends those names: another node's
registration of one is answered with a NEGATIVE NAME REGISTRATION RESPONSE (RFC 1002
§5.1.1), and a NameDefended event says so.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from messengerd.core import limits
from messengerd.core.buckets import TokenBuckets
from messengerd.protocol.events import NEED_DATA, Directory, Dropped, SendData, Sentinel
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    DEFAULT_TTL,
    NAM_ERR,
    NAME_FLAG_ACT,
    NB_FLAG_G,
    ONT_B,
    UNIT_ID_LENGTH,
    NameQuery,
    NameRegistration,
    NodeName,
    NodeStatusQuery,
    RegistrationResponse,
    WaitForAcknowledgement,
    build_negative_name_query_response,
    build_negative_name_registration_response,
    build_node_status_response,
    build_positive_name_query_response,
    node_status_capacity,
    parse_nbns,
)

MAX_TTL = 0xFFFFFFFF
"""TTL is an unsigned 32-bit field (RFC 1002 §4.2.1.3)."""


@dataclass(frozen=True)
class RegistrationAnswer:
    """A NAME REGISTRATION RESPONSE or WACK that reached us (RFC 1002 §4.2.5-8, §4.2.16):
    an answer to one of our registrations, for the registration machine to judge."""

    response: RegistrationResponse | WaitForAcknowledgement
    source: str


@dataclass(frozen=True)
class NameDefended:
    """`address` tried to register `name`, which is ours; it was told so (RFC 1002 §5.1.1)."""

    name: NetBIOSName
    address: str


Event = SendData | Dropped | RegistrationAnswer | NameDefended


def _is_wildcard(name: NetBIOSName) -> bool:
    """`*` however padded; node status requests pad it with NULs (RFC 1002 §4.2.17)."""
    return name.name.rstrip(b"\x00 ") == b"*"


class NameService:
    """Answers NAME QUERY and NODE STATUS requests for a Directory's names (RFC 1002 §4.2.12-18).

    Options:
    - `mac`: the UNIT_ID in node status answers (RFC 1002 §4.2.18); zeros, as Samba sends,
      unless the transport knows the interface's address.
    - `ttl`: seconds a positive query answer may be cached (RFC 1002 §4.2.13).
    - `scope`: the NetBIOS scope we live in, dotted (RFC 1001 §14.1); questions in another
      scope are not for us. Empty, the scope everyone uses, by default.
    - `negative_answers`: answer a unicast query without RD for a name we do not own with
      NAM_ERR, as Samba's nmbd does (RFC 1002 §4.2.14), so `nmblookup -U host NAME` ends at
      once instead of timing out.
    """

    def __init__(
        self,
        directory: Directory,
        *,
        mac: bytes = bytes(UNIT_ID_LENGTH),
        ttl: int = DEFAULT_TTL,
        scope: bytes = b"",
        negative_answers: bool = True,
    ) -> None:
        if len(mac) != UNIT_ID_LENGTH:
            raise ValueError(f"mac has {UNIT_ID_LENGTH} bytes, not {len(mac)}")
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl {ttl} does not fit 32 bits")
        # Checks the scope's labels now rather than on the first packet.
        NetBIOSName(b"", scope=scope).encode()
        self.directory = directory
        self.mac = bytes(mac)
        self.ttl = ttl
        self.scope = scope
        self.negative_answers = negative_answers
        self._events: collections.deque[Event] = collections.deque()
        self._node_status_answers = TokenBuckets(
            limits.NODE_STATUS_RATE, limits.NODE_STATUS_BURST, limits.MAX_RATE_LIMITED_SOURCES
        )

    def receive_data(
        self,
        data: bytes,
        *,
        source: tuple[str, int],
        local_ip: str,
        now: float = 0.0,
        broadcast: bool = False,
    ) -> None:
        """Take one datagram from `source`; its reply and what else it brings follow as events.

        `local_ip` is our address on the interface the datagram came in on: it goes into
        positive answers, and a registration carrying it is our own come back. `now` is
        when it arrived (seconds, any monotonic clock), for the node status rate limit;
        `broadcast` says it came to a broadcast address (the transport knows when it
        listens on one; the B bit says so otherwise). Nothing in `data` makes this raise.
        """
        try:
            packet = parse_nbns(data)
        except WireError as exc:
            self._drop(f"malformed name service packet from {source[0]}: {exc}")
            return
        reply: bytes | None = None
        if isinstance(packet, NameQuery):
            reply = self._answer_query(packet, local_ip)
        elif isinstance(packet, NodeStatusQuery):
            reply = self._answer_node_status(packet, source[0], now, broadcast)
        elif isinstance(packet, NameRegistration):
            reply = self._defend(packet, local_ip)
        elif isinstance(packet, RegistrationResponse | WaitForAcknowledgement):
            if self._in_scope(packet.name):
                self._events.append(RegistrationAnswer(packet, source[0]))
        else:
            # Others' refreshes and releases change nothing for a B node, which keeps no
            # table of others' names; other responses answer questions we never ask here.
            self._drop(f"{type(packet).__name__} for {packet.name} needs no answer")
        if reply is not None:
            self._events.append(SendData(reply, source))

    def next_event(self) -> Event | Sentinel:
        """The next event, or NEED_DATA."""
        return self._events.popleft() if self._events else NEED_DATA

    def _drop(self, reason: str) -> None:
        self._events.append(Dropped(reason))

    def _in_scope(self, name: NetBIOSName) -> bool:
        # A scope is a domain name (RFC 1001 §14.1): case does not count (RFC 1035 §2.3.3).
        return name.scope.lower() == self.scope.lower()

    def _owned(self, name: NetBIOSName) -> tuple[bool, bool]:
        """Whether we hold `name`, and whether as a group name."""
        # The directory keeps names without scope; the scope is this service's.
        bare = NetBIOSName(name.name, name.suffix)
        for held, group in self.directory.name_table():
            if held == bare:
                return True, group
        return False, False

    def _answer_query(self, query: NameQuery, local_ip: str) -> bytes | None:
        if not self._in_scope(query.name):
            self._drop(f"query for {query.name}: scope is not {self.scope!r}")
            return None
        owned, group = self._owned(query.name)
        # `*` only ever addresses node status; no node answers a name query for it.
        if owned and not _is_wildcard(query.name):
            nb_flags = (NB_FLAG_G if group else 0) | ONT_B
            return build_positive_name_query_response(
                query.trn_id, query.name, local_ip, nb_flags=nb_flags, ttl=self.ttl
            )
        # A broadcast query for someone else's name is answered by its owner, never by us;
        # a unicast query with RD is meant for a name server, which we are not (Samba's
        # nmbd stays silent to both).
        if query.broadcast or query.recursion_desired or not self.negative_answers:
            self._drop(f"query for {query.name}: not ours")
            return None
        return build_negative_name_query_response(query.trn_id, query.name, rcode=NAM_ERR)

    def _defend(self, request: NameRegistration, local_ip: str) -> bytes | None:
        """NEGATIVE NAME REGISTRATION RESPONSE (ACT_ERR, 0xAD86) when `request` claims a
        unique name of ours (RFC 1002 §5.1.1, B node incoming REGISTRATION REQUEST).

        A group registration of it conflicts too: a unique name is held by one node only.
        Like nmbd, the answer carries the request's own NB_FLAGS and address, and goes to
        the registrant alone (the transport sends replies to the sender).
        """
        if not self._in_scope(request.name):
            return None
        if request.address == local_ip:
            # Our own registration, come back through the broadcast address.
            return None
        owned, group = self._owned(request.name)
        if not owned or group:
            return None
        self._events.append(NameDefended(request.name, request.address))
        return build_negative_name_registration_response(
            request.trn_id, request.name, request.address, nb_flags=request.nb_flags
        )

    def _answer_node_status(
        self, query: NodeStatusQuery, source: str, now: float, broadcast: bool
    ) -> bytes | None:
        if not self._in_scope(query.name):
            self._drop(f"node status for {query.name}: scope is not {self.scope!r}")
            return None
        if not query.wildcard and not self._owned(query.name)[0]:
            self._drop(f"node status for {query.name}: not ours")
            return None
        if broadcast or query.broadcast:
            # Every node on the segment would answer one broadcast: an amplifier.
            self._drop(f"node status for {query.name} from {source}: broadcast")
            return None
        if not self._node_status_answers.take(source, now):
            self._drop(f"node status for {query.name} from {source}: over the rate limit")
            return None
        # ACT on every name, G on group names: what Windows and nmbd list
        # (netbios.pcap frame 55, samba-smbclient-nmbd-netns.pcap frame 90). Like nmbd, leave
        # out `*`: a node listens on it but does not own it.
        table = [
            NodeName(name, NAME_FLAG_ACT | ONT_B | (NB_FLAG_G if group else 0))
            for name, group in self.directory.name_table()
            if not _is_wildcard(name)
        ]
        capacity = node_status_capacity(query.name)
        if len(table) > capacity:
            self._drop(f"node status lists {capacity} of {len(table)} names: datagram full")
            table = table[:capacity]
        return build_node_status_response(query.trn_id, query.name, table, unit_id=self.mac)
