"""The name service machine: answers queries and node status for our names (RFC 1002 §4.2).

Sans-I/O: `NameService.receive` takes one UDP 137 datagram and returns the reply to send back
to its sender, or None. Which names are ours is the Directory's business alone: aliases
`NAME<03>`, and the machine's own `<00>`/`<20>` names only when the directory lists them.
It also defends those names: another node's registration of one is answered with a
NEGATIVE NAME REGISTRATION RESPONSE (RFC 1002 §5.1.1). Answers to our own registrations
are handed on to whoever registers (messengerd.transport.registration).
"""

from __future__ import annotations

import logging
from typing import Protocol

from messengerd.protocol.events import Directory
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

logger = logging.getLogger(__name__)

MAX_TTL = 0xFFFFFFFF
"""TTL is an unsigned 32-bit field (RFC 1002 §4.2.1.3)."""


class RegistrationListener(Protocol):
    """Who registers our names: told of every registration response that reaches us."""

    def response_received(
        self, response: RegistrationResponse | WaitForAcknowledgement, source: str
    ) -> None:
        """A NAME REGISTRATION RESPONSE or WACK from `source` (RFC 1002 §4.2.5-8, §4.2.16)."""
        ...


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
    - `registrations`: told of the registration responses and WACKs that come to us.
    """

    def __init__(
        self,
        directory: Directory,
        *,
        mac: bytes = bytes(UNIT_ID_LENGTH),
        ttl: int = DEFAULT_TTL,
        scope: bytes = b"",
        negative_answers: bool = True,
        registrations: RegistrationListener | None = None,
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
        self.registrations = registrations

    def receive(self, data: bytes, *, local_ip: str, source: str = "") -> bytes | None:
        """The reply to `data`, to send unicast to its sender, or None to stay silent.

        `local_ip` is our address on the interface the datagram came in on: it goes into
        positive answers, and a registration carrying it is our own come back. `source` is
        the sender's address, for the registration listener. Never raises for anything in
        `data`.
        """
        try:
            packet = parse_nbns(data)
        except WireError as exc:
            logger.debug("ignored malformed name service packet: %s", exc)
            return None
        if isinstance(packet, NameQuery):
            return self._answer_query(packet, local_ip)
        if isinstance(packet, NodeStatusQuery):
            return self._answer_node_status(packet)
        if isinstance(packet, NameRegistration):
            return self._defend(packet, local_ip)
        if isinstance(packet, RegistrationResponse | WaitForAcknowledgement):
            if self.registrations is not None and self._in_scope(packet.name):
                self.registrations.response_received(packet, source)
            return None
        # Others' refreshes and releases change nothing for a B node, which keeps no
        # table of others' names; other responses answer questions we never ask here.
        logger.debug("ignored %s for %s", type(packet).__name__, packet.name)
        return None

    def _in_scope(self, name: NetBIOSName) -> bool:
        # A scope is a domain name (RFC 1001 §14.1): case does not count (RFC 1035 §2.3.3).
        return name.scope.lower() == self.scope.lower()

    def _owned(self, name: NetBIOSName) -> tuple[bool, bool]:
        """Whether we hold `name`, and whether as a group name."""
        # The directory keeps names without scope; the scope is this service's.
        bare = NetBIOSName(name.name, name.suffix)
        if self.directory.is_local(bare):
            return True, False
        if self.directory.is_group(bare):
            return True, True
        return False, False

    def _answer_query(self, query: NameQuery, local_ip: str) -> bytes | None:
        if not self._in_scope(query.name):
            logger.debug("ignored query for %s: scope is not %r", query.name, self.scope)
            return None
        owned, group = self._owned(query.name)
        # `*` only ever addresses node status; no node answers a name query for it.
        if owned and not _is_wildcard(query.name):
            nb_flags = (NB_FLAG_G if group else 0) | ONT_B
            logger.debug("answering query for %s with %s", query.name, local_ip)
            return build_positive_name_query_response(
                query.trn_id, query.name, local_ip, nb_flags=nb_flags, ttl=self.ttl
            )
        # A broadcast query for someone else's name is answered by its owner, never by us;
        # a unicast query with RD is meant for a name server, which we are not (Samba's
        # nmbd stays silent to both).
        if query.broadcast or query.recursion_desired or not self.negative_answers:
            logger.debug("ignored query for %s: not ours", query.name)
            return None
        logger.debug("answering unicast query for %s: NAM_ERR", query.name)
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
            logger.debug("ignored registration of %s by %s", request.name, request.address)
            return None
        logger.info("defending %s against a registration by %s", request.name, request.address)
        return build_negative_name_registration_response(
            request.trn_id, request.name, request.address, nb_flags=request.nb_flags
        )

    def _answer_node_status(self, query: NodeStatusQuery) -> bytes | None:
        if not self._in_scope(query.name):
            logger.debug("ignored node status for %s: scope is not %r", query.name, self.scope)
            return None
        if not query.wildcard and not self._owned(query.name)[0]:
            logger.debug("ignored node status for %s: not ours", query.name)
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
            logger.debug("node status lists %d of %d names: datagram full", capacity, len(table))
            table = table[:capacity]
        logger.debug("answering node status for %s with %d names", query.name, len(table))
        return build_node_status_response(query.trn_id, query.name, table, unit_id=self.mac)
