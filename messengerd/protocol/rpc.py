"""The RPC path without I/O: msgsvcsend's NetrSendMessage and the endpoint mapper's ept_map over
connectionless DCE/RPC on UDP ([MS-MSRP] §3.2, C706 ch. 10 and 12, PROTOCOL.md §6).

One `RpcServer` serves one UDP socket, every client and call through it at once, so the single
PAUSED of a stream machine becomes one waiting call per `CallReceived`: the caller stores the
message and answers that call with `send(call, MessageAccepted() | MessageRefused(reason))`,
while the machine goes on serving other datagrams. A transport drives it like this:

    server = RpcServer(directory, port=1026, server_boot=int(time.time()))
    server.receive_data(datagram, address, now)          # one datagram, its source, its time
    while (event := server.next_event()) is not NEED_DATA:
        if isinstance(event, SendData):                   # fack, working, nocall, reject,
            sock.sendto(event.data, event.address)        #   fault, retransmitted replies
        elif isinstance(event, CallReceived):             # a message for one of our names
            outcome = await daemon.accept(...)            # (in its own task)
            reply = server.send(event.call, MessageAccepted())   # or MessageRefused(reason)
            if reply is not None:
                sock.sendto(reply.data, reply.address)
        # Dropped: log event.reason
    server.expire(now)                                    # at server.next_deadline()

What it answers, and why (C706 ch. 10 as the DCE reference's dgslsn.c/dgexec.c implement it):
- NetrSendMessage: a response whose status is 0 once the message is stored, NERR_NameNotFound
  when To is none of our names, NERR_NoRoom when the store failed (retry later),
  ERROR_ACCESS_DENIED when policy refuses, ERROR_INVALID_PARAMETER for a From, To or Text over
  our limits; a fault nca_s_fault_ndr for malformed NDR; a reject nca_unk_if, nca_op_rng_error,
  nca_wrong_boot_time for calls we do not serve.
- Every answered call's reply is kept (by activity, with its seqnum) for MAX_RPC_REPLY_CACHE
  calls and RPC_REPLY_CACHE_TIMEOUT seconds, so a retransmitted request or a ping gets the same
  reply and a message is never delivered twice; an ack or the activity's next call frees it.
- Fragmented requests are reassembled by fragnum within MAX_RPC_FRAGMENTS, MAX_RPC_REQUEST_BYTES
  and RPC_REASSEMBLY_TIMEOUT; a fragment without NOFACK that does not complete its request gets
  a fack. Over a bound: a fault nca_s_fault_remote_no_memory.
- ping: working while the message is being stored, the reply once answered, a nocall with a fack
  body while fragments are missing, a nocall for a call we do not know.
- No amplification: MAYBE calls get no reply at all; BROADCAST calls get no reject, fault or
  refusal (the DCE reference sends none either), only the response of a call for one of our
  names; a broadcast ept_map is not answered. No reply is more than MAX_REPLY_GROWTH (20)
  bytes longer than the datagram it answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar
from uuid import UUID

from messengerd.core import lmerr
from messengerd.core.limits import (
    MAX_RPC_DATAGRAM_BYTES,
    MAX_RPC_FRAGMENTS,
    MAX_RPC_PENDING_CALLS,
    MAX_RPC_REASSEMBLIES,
    MAX_RPC_REPLY_CACHE,
    MAX_RPC_REQUEST_BYTES,
    RPC_REASSEMBLY_TIMEOUT,
    RPC_REPLY_CACHE_TIMEOUT,
)
from messengerd.protocol.events import (
    NEED_DATA,
    Directory,
    Dropped,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    RefusalReason,
    SendData,
    Sentinel,
)
from messengerd.wire import rpc
from messengerd.wire.errors import WireError
from messengerd.wire.names import recipient_name
from messengerd.wire.rpc import PDU, FackBody, Header, PacketType
from messengerd.wire.text import DEFAULT_CODEPAGE, check_codepage

Address = tuple[str, int]

NERR_NoRoom = lmerr.NERR_BASE + 19
"""lmerr.h: "The server is currently out of the requested resource." The answer to a message the
store could not take; the sender may send it again."""

REFUSAL_STATUS: dict[RefusalReason, int] = {
    "not_an_alias": lmerr.NERR_NameNotFound,
    "no_room": NERR_NoRoom,
    "denied": lmerr.ERROR_ACCESS_DENIED,
}
"""NetrSendMessage's status for each MessageRefused reason. NERR_NameNotFound is what
NetMessageBufferSend reports for an alias no one holds; ERROR_ACCESS_DENIED is what [MS-MSRP]'s
methods return to a caller policy refuses (§3.2.4.3 lets a server impose such policy)."""

MAX_UNREAD_EVENTS = 2 * MAX_RPC_REASSEMBLIES + 16
"""Events waiting for next_event(). One datagram makes at most three and an expiry one per
reassembly; more means the caller feeds datagrams without reading events, a bug."""

MAX_REPLY_GROWTH = rpc.FACK_FIXED_LENGTH + 4
"""Bytes by which a reply may exceed the datagram it answers: a 20-byte fack body, sent for a
fragment or a ping of as little as a header; the ept_map answer exceeds the smallest request it
names our port to by as much. Every other reply is a header and at most a 4-byte status, so
never more than 4 bytes longer: nothing worth reflecting off this server."""

FACK_WINDOW_UNIT = 1024
"""A fack's window_size counts kilobytes (the DCE reference's rpc__dg_call_xmit_fack)."""

_CALL_FLAGS = rpc.PF_MAYBE | rpc.PF_IDEMPOTENT | rpc.PF_BROADCAST
"""The flags that say what kind of call it is; every fragment of one call carries the same."""


@dataclass(frozen=True)
class Call:
    """One RPC call: the client's activity and the call's sequence number in it (C706 ch. 10)."""

    act_id: UUID
    seqnum: int

    def __str__(self) -> str:
        return f"call {self.seqnum} of activity {self.act_id}"


@dataclass(frozen=True)
class CallReceived:
    """A NetrSendMessage for one of our names. `call` waits for `send(call, answer)`; the other
    calls go on meanwhile."""

    call: Call
    message: MessageReceived
    address: Address


Event = CallReceived | SendData | Dropped


class RpcStateError(RuntimeError):
    """The caller drove the machine wrong: answered a call that is not waiting, or fed
    datagrams without reading events."""


@dataclass
class _Reassembly:
    """The fragments of one request so far, by fragnum (C706 ch. 10)."""

    header: Header
    """The first fragment's header: every later fragment must be the same call."""
    address: Address
    started: float
    fragments: dict[int, bytes] = field(default_factory=dict)
    last: int | None = None
    """The fragnum of the fragment that carried LASTFRAG, once it came."""
    stored: int = 0

    def add(self, header: Header, body: bytes) -> None:
        """Take one fragment; raises _Refusal when the request cannot be completed."""
        fragnum = header.fragnum
        if fragnum >= MAX_RPC_FRAGMENTS:
            raise _Refusal(
                rpc.nca_s_fault_remote_no_memory,
                f"fragment {fragnum}: more than {MAX_RPC_FRAGMENTS} fragments",
            )
        if fragnum in self.fragments:
            return  # a retransmission; the first copy stands
        if header.has(rpc.PF_LASTFRAG):
            if self.last is not None and self.last != fragnum:
                raise _Refusal(None, f"two last fragments, {self.last} and {fragnum}")
            self.last = fragnum
        if self.last is not None and max(fragnum, *self.fragments, 0) > self.last:
            raise _Refusal(None, f"a fragment after the last one, {self.last}")
        if self.stored + len(body) > MAX_RPC_REQUEST_BYTES:
            raise _Refusal(
                rpc.nca_s_fault_remote_no_memory,
                f"fragments hold more than {MAX_RPC_REQUEST_BYTES} bytes",
            )
        self.fragments[fragnum] = body
        self.stored += len(body)

    @property
    def next_fragnum(self) -> int:
        """The first fragment not yet received."""
        fragnum = 0
        while fragnum in self.fragments:
            fragnum += 1
        return fragnum

    def assemble(self) -> bytes | None:
        """The whole body once fragments 0 through the last are all here."""
        if self.last is None or self.next_fragnum <= self.last:
            return None
        return b"".join(self.fragments[fragnum] for fragnum in range(self.last + 1))

    def selack(self) -> tuple[int, ...]:
        """Which fragments past the first missing one arrived, as fack selack words."""
        first_missing = self.next_fragnum
        later = [fragnum - first_missing for fragnum in self.fragments if fragnum > first_missing]
        if not later:
            return ()
        words = [0] * (max(later) // 32 + 1)
        for bit in later:
            words[bit // 32] |= 1 << (bit % 32)
        return tuple(words)


@dataclass(frozen=True)
class _Pending:
    """A delivered call waiting for the caller's answer."""

    header: Header
    address: Address


@dataclass(frozen=True)
class _Answered:
    """An answered call and the reply a retransmission or ping gets (None: none is sent)."""

    seqnum: int
    reply: bytes | None
    finished: float


class _Refusal(Exception):
    """A request this server will not carry out: answered with `status` in a reject or fault
    (None: dropped unanswered)."""

    def __init__(self, status: int | None, reason: str, ptype: PacketType = PacketType.FAULT):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.ptype = ptype


def _reject(status: int, reason: str) -> _Refusal:
    return _Refusal(status, reason, PacketType.REJECT)


def _seq_before(a: int, b: int) -> bool:
    """a < b for sequence numbers that wrap at 2**32 (the DCE reference's RPC_DG_SEQ_IS_LT)."""
    return (a - b) & 0xFFFFFFFF >= 0x80000000


class RpcServer:
    """The server side of connectionless DCE/RPC for msgsvcsend and ept_map, without I/O."""

    def __init__(
        self,
        directory: Directory,
        *,
        port: int,
        server_boot: int,
        tower_address: str = "0.0.0.0",
        codepage: str = DEFAULT_CODEPAGE,
    ) -> None:
        """`port`: the UDP port msgsvcsend is served on, which ept_map names. `server_boot`:
        this server's boot time, non-zero and new at every start (C706 §12.5.1), so a client
        retrying a call across a restart, whose reply we no longer hold, is rejected rather
        than delivered twice. `tower_address`: the IPv4 address ept_map names (clients use the
        port only). `codepage`: the OEM code page To is compared in against our aliases."""
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port {port} is not a UDP port")
        if not 0 < server_boot <= 0xFFFFFFFF:
            raise ValueError("server_boot must be a non-zero 32-bit time")
        self._directory = directory
        self.port = port
        self.server_boot = server_boot
        self._tower = rpc.udp_tower(
            rpc.MSGSVCSEND_UUID, rpc.MSGSVCSEND_VERSION, port, tower_address
        )
        self._codepage = check_codepage(codepage)
        self._events: deque[Event] = deque()
        self._now = 0.0
        # An activity's latest call is in one of these. An answered earlier call stays in
        # _answered until the later one is delivered (see _on_request). Insertion order is
        # time order, so the first entry of _receiving and _answered is the first to expire.
        self._receiving: dict[UUID, _Reassembly] = {}
        self._pending: dict[UUID, _Pending] = {}
        self._answered: dict[UUID, _Answered] = {}

    # The caller's side.

    def receive_data(self, data: bytes, address: Address, now: float) -> None:
        """Take one UDP datagram from `address` that arrived at `now`.

        Expiry runs first, so a late fragment never completes a request `expire` gave up on.
        A peer's fault becomes a Dropped or a reply; a bug in here raises.
        """
        if len(self._events) > MAX_UNREAD_EVENTS:
            raise RpcStateError(f"{len(self._events)} events unread; read them with next_event()")
        self.expire(now)
        if len(data) > MAX_RPC_DATAGRAM_BYTES:
            self._drop(address, f"a {len(data)}-byte datagram, over {MAX_RPC_DATAGRAM_BYTES}")
            return
        try:
            pdu = rpc.parse_pdu(data)
        except WireError as exc:
            self._drop(address, f"malformed PDU: {exc}")
            return
        handler = self._HANDLERS.get(pdu.header.ptype)
        if handler is None:
            name = PacketType(pdu.header.ptype).name.lower()
            self._drop(address, f"a {name} PDU, which only a server sends or we never ask for")
            return
        handler(self, pdu, address, now)

    def next_event(self) -> Event | Sentinel:
        """The next event, or NEED_DATA when there is none until more input or time."""
        return self._events.popleft() if self._events else NEED_DATA

    def send(self, call: Call, answer: MessageAccepted | MessageRefused) -> SendData | None:
        """The caller's answer to `call`'s CallReceived; the response to send, or None when the
        call wants none (MAYBE) or is a broadcast we do not refuse aloud.

        Raises RpcStateError when `call` is not waiting for an answer.
        """
        pending = self._pending.get(call.act_id)
        if pending is None or pending.header.seqnum != call.seqnum:
            raise RpcStateError(f"{call} is not waiting for an answer")
        del self._pending[call.act_id]
        header = pending.header
        status = 0 if isinstance(answer, MessageAccepted) else REFUSAL_STATUS[answer.reason]
        if status and header.has(rpc.PF_BROADCAST):
            self._remember(header, None)
            return None
        reply = self._respond(header, rpc.build_netr_send_message_response(status))
        return None if reply is None else SendData(reply, pending.address)

    def expire(self, now: float) -> None:
        """Give up on reassemblies older than RPC_REASSEMBLY_TIMEOUT (a Dropped each) and forget
        replies older than RPC_REPLY_CACHE_TIMEOUT."""
        self._now = max(self._now, now)
        while self._receiving:
            act_id, entry = next(iter(self._receiving.items()))
            if now - entry.started < RPC_REASSEMBLY_TIMEOUT:
                break
            del self._receiving[act_id]
            self._drop(
                entry.address,
                f"{Call(act_id, entry.header.seqnum)} timed out with "
                f"{len(entry.fragments)} fragments of {entry.stored} bytes",
            )
        while self._answered:
            act_id, answered = next(iter(self._answered.items()))
            if now - answered.finished < RPC_REPLY_CACHE_TIMEOUT:
                break
            del self._answered[act_id]

    def next_deadline(self) -> float | None:
        """When `expire` next has something to do, or None."""
        deadlines = []
        if self._receiving:
            deadlines.append(next(iter(self._receiving.values())).started + RPC_REASSEMBLY_TIMEOUT)
        if self._answered:
            finished = next(iter(self._answered.values())).finished
            deadlines.append(finished + RPC_REPLY_CACHE_TIMEOUT)
        return min(deadlines, default=None)

    @property
    def waiting_calls(self) -> int:
        """Calls delivered and not yet answered."""
        return len(self._pending)

    @property
    def held_calls(self) -> int:
        """Calls the machine holds anything for: reassemblies, waiting calls, kept replies."""
        return len(self._receiving) + len(self._pending) + len(self._answered)

    # Requests.

    def _on_request(self, pdu: PDU, address: Address, now: float) -> None:
        header = pdu.header
        call = Call(header.act_id, header.seqnum)
        quiet = header.has(rpc.PF_MAYBE) or header.has(rpc.PF_BROADCAST)
        try:
            self._check_boot_time(header)
            current = self._seqnum_of(header.act_id)
            if current is not None:
                if _seq_before(header.seqnum, current):
                    self._drop(address, f"{call}: older than call {current}, already served")
                    return
                if header.seqnum == current:
                    self._on_current_call(pdu, address, now)
                    return
                if header.act_id in self._pending:
                    self._drop(address, f"{call}: call {current} still waits for the store")
                    return
                # A new call orphans a request still in fragments (as the DCE reference does)
                # and acknowledges an answered one (C706 ch. 10); that reply is dropped once
                # the new call is delivered, so until then the old call's retransmissions are
                # still known for what they are.
                self._receiving.pop(header.act_id, None)
            self._check_call(header)
            if header.has(rpc.PF_FRAG):
                self._on_fragment(pdu, address, now)
            elif len(pdu.body) > MAX_RPC_REQUEST_BYTES:
                raise _Refusal(
                    rpc.nca_s_fault_remote_no_memory,
                    f"a {len(pdu.body)}-byte request body, over {MAX_RPC_REQUEST_BYTES}",
                )
            else:
                self._execute(header, pdu.body, address)
        except _Refusal as refusal:
            self._refuse(header, address, refusal, quiet=quiet)

    def _check_boot_time(self, header: Header) -> None:
        """A client that met an earlier run of this server: its calls may already be served."""
        if header.server_boot not in (0, self.server_boot):
            raise _reject(
                rpc.nca_wrong_boot_time,
                f"server_boot {header.server_boot} is not ours ({self.server_boot})",
            )

    def _check_call(self, header: Header) -> None:
        """Reject what this server does not serve: other interfaces and opnums, authentication."""
        major, minor = header.if_vers & 0xFFFF, header.if_vers >> 16
        if header.if_id == rpc.MSGSVCSEND_UUID:
            served, opnum = rpc.MSGSVCSEND_VERSION, rpc.OPNUM_NETR_SEND_MESSAGE
        elif header.if_id == rpc.EPT_UUID:
            served, opnum = rpc.EPT_VERSION, rpc.OPNUM_EPT_MAP
        else:
            raise _reject(rpc.nca_unk_if, f"interface {header.if_id} is not served here")
        # The DCE version rule: the same major version, and a minor no higher than ours.
        if major != served[0] or minor > served[1]:
            raise _reject(rpc.nca_unk_if, f"interface {header.if_id} v{major}.{minor}")
        if header.opnum != opnum:
            raise _reject(rpc.nca_op_rng_error, f"opnum {header.opnum} of {header.if_id}")
        if header.auth_proto:
            raise _reject(rpc.nca_unspec_reject, f"auth_proto {header.auth_proto}")

    def _on_current_call(self, pdu: PDU, address: Address, now: float) -> None:
        """Another datagram of a call we know: a fragment, or a retransmission."""
        header = pdu.header
        call = Call(header.act_id, header.seqnum)
        if header.act_id in self._receiving:
            if not header.has(rpc.PF_FRAG):
                self._drop(address, f"{call}: an unfragmented copy of a fragmented request")
                return
            self._on_fragment(pdu, address, now)
        elif header.act_id in self._pending:
            # The DCE reference drops it too: the reply will come when the call ends.
            self._drop(address, f"{call}: retransmitted while its message is being stored")
        else:
            answered = self._answered[header.act_id]
            wants_reply = (
                not header.has(rpc.PF_FRAG)
                or header.has(rpc.PF_LASTFRAG)
                or not header.has(rpc.PF_NOFACK)
            )
            if answered.reply is None or not wants_reply:
                self._drop(address, f"{call}: retransmitted after it was answered")
                return
            self._events.append(SendData(answered.reply, address))

    def _on_fragment(self, pdu: PDU, address: Address, now: float) -> None:
        header = pdu.header
        call = Call(header.act_id, header.seqnum)
        entry = self._receiving.get(header.act_id)
        if entry is None:
            # Checked before a reassembly is opened, so bad fragments cannot evict good ones.
            _Reassembly(header, address, now).add(header, pdu.body)
            if len(self._receiving) >= MAX_RPC_REASSEMBLIES:
                oldest_id, oldest = next(iter(self._receiving.items()))
                del self._receiving[oldest_id]
                self._drop(
                    oldest.address,
                    f"{Call(oldest_id, oldest.header.seqnum)} evicted: "
                    f"{MAX_RPC_REASSEMBLIES} requests already being reassembled",
                )
            entry = self._receiving[header.act_id] = _Reassembly(header, address, now)
        else:
            mismatch = _mismatch(entry.header, header)
            if mismatch:
                self._drop(address, f"{call}: fragment {header.fragnum} {mismatch}")
                return
        try:
            entry.add(header, pdu.body)
        except _Refusal:
            del self._receiving[header.act_id]
            raise
        whole = entry.assemble()
        if whole is not None:
            del self._receiving[header.act_id]
            self._execute(entry.header, whole, address)
        elif not header.has(rpc.PF_NOFACK):
            self._events.append(SendData(self._fack(entry, header, PacketType.FACK), address))

    def _fack(self, entry: _Reassembly, header: Header, ptype: PacketType) -> bytes:
        """A fack, or a nocall with a fack body, for `entry` as `header` induced it."""
        body = FackBody(
            window_size=(MAX_RPC_REQUEST_BYTES - entry.stored) // FACK_WINDOW_UNIT,
            max_tsdu=MAX_RPC_DATAGRAM_BYTES,
            max_frag_size=rpc.MUST_RECV_FRAG_SIZE,
            serial_num=header.serial,
            selack=entry.selack(),
        )
        return rpc.build_fack(
            header, ptype, body, fragnum=entry.next_fragnum - 1, server_boot=self.server_boot
        )

    def _execute(self, header: Header, stub: bytes, address: Address) -> None:
        """Carry out a whole request: answer ept_map, or deliver NetrSendMessage's message."""
        if header.if_id == rpc.EPT_UUID:
            self._answer_ept_map(header, stub, address)
        else:
            self._deliver(header, stub, address)

    def _answer_ept_map(self, header: Header, stub: bytes, address: Address) -> None:
        """Name our port for msgsvcsend over ncadg_ip_udp; no endpoint for anything else."""
        if header.has(rpc.PF_BROADCAST):
            # Finding msgsvcsend on every host at once serves no sender; answering would.
            self._drop(address, "a broadcast ept_map, not answered")
            return
        try:
            request = rpc.parse_ept_map_request(stub, little_endian=header.little_endian)
        except WireError as exc:
            raise _Refusal(rpc.nca_s_fault_ndr, f"malformed ept_map: {exc}") from exc
        towers = [self._tower] if request.max_towers and _asks_for_us(request) else []
        status = 0 if towers else rpc.EPT_S_NOT_REGISTERED
        answer = rpc.build_ept_map_response(towers, max_towers=request.max_towers, status=status)
        if not header.has(rpc.PF_MAYBE):
            # ept_map is idempotent: its answer is not kept, a retransmission is answered anew.
            self._events.append(SendData(self._build_response(header, answer), address))

    def _deliver(self, header: Header, stub: bytes, address: Address) -> None:
        call = Call(header.act_id, header.seqnum)
        try:
            request = rpc.parse_netr_send_message_request(stub, little_endian=header.little_endian)
        except rpc.FieldTooLong as exc:
            self._answer(header, address, lmerr.ERROR_INVALID_PARAMETER, f"{call}: {exc}")
            return
        except WireError as exc:
            raise _Refusal(rpc.nca_s_fault_ndr, f"malformed NetrSendMessage: {exc}") from exc
        alias = recipient_name(request.recipient, self._codepage)
        directory = self._directory
        if alias is None or not (directory.is_local(alias) or directory.is_group(alias)):
            reason = f"{call}: To {request.recipient!r} is not one of our names"
            self._answer(header, address, lmerr.NERR_NameNotFound, reason)
            return
        if len(self._pending) >= MAX_RPC_PENDING_CALLS:
            self._drop(address, f"{call}: {MAX_RPC_PENDING_CALLS} calls already wait; not taken")
            return
        self._answered.pop(header.act_id, None)
        self._pending[header.act_id] = _Pending(header, address)
        message = MessageReceived(request.sender, request.recipient, request.text, path="rpc")
        self._events.append(CallReceived(call, message, address))

    # Replies.

    def _answer(self, header: Header, address: Address, status: int, reason: str) -> None:
        """Answer NetrSendMessage with `status` without delivering it, and say why; a broadcast
        gets no refusal."""
        if header.has(rpc.PF_BROADCAST):
            self._remember(header, None)
            self._drop(address, reason)
            return
        self._drop(address, f"{reason}: answered status {status}")
        reply = self._respond(header, rpc.build_netr_send_message_response(status))
        if reply is not None:
            self._events.append(SendData(reply, address))

    def _respond(self, header: Header, stub: bytes) -> bytes | None:
        """The response to a NetrSendMessage call, kept for its retransmissions; None (kept as
        such) for a MAYBE call, which gets no response."""
        reply = None if header.has(rpc.PF_MAYBE) else self._build_response(header, stub)
        self._remember(header, reply)
        return reply

    def _build_response(self, header: Header, stub: bytes) -> bytes:
        return rpc.build_response(header, stub, server_boot=self.server_boot)

    def _remember(self, header: Header, reply: bytes | None) -> None:
        self._answered.pop(header.act_id, None)
        if len(self._answered) >= MAX_RPC_REPLY_CACHE:
            del self._answered[next(iter(self._answered))]
        self._answered[header.act_id] = _Answered(header.seqnum, reply, self._now)

    def _refuse(self, header: Header, address: Address, refusal: _Refusal, *, quiet: bool) -> None:
        """Drop a call we will not carry out, with a reject or fault unless it is MAYBE or
        BROADCAST (the DCE reference sends neither to a broadcast) or has no status."""
        call = Call(header.act_id, header.seqnum)
        if refusal.status is None or quiet:
            self._drop(address, f"{call}: {refusal.reason}")
            return
        name = rpc.STATUS_NAMES.get(refusal.status, f"0x{refusal.status:08X}")
        self._drop(address, f"{call}: {refusal.reason}: answered {refusal.ptype.name} {name}")
        # The wrong-boot-time reject carries the client's boot time, which it will recognise.
        wrong_boot = refusal.status == rpc.nca_wrong_boot_time
        server_boot = header.server_boot if wrong_boot else self.server_boot
        reply = rpc.build_error(header, refusal.ptype, refusal.status, server_boot=server_boot)
        if refusal.ptype is PacketType.FAULT and header.if_id == rpc.MSGSVCSEND_UUID:
            self._remember(header, reply)
        self._events.append(SendData(reply, address))

    def _drop(self, address: Address, reason: str) -> None:
        self._events.append(Dropped(f"RPC from {address[0]}:{address[1]}: {reason}"))

    # The other client PDUs.

    def _on_ping(self, pdu: PDU, address: Address, now: float) -> None:
        """working, the reply, or nocall: what became of the pinged call (C706 ch. 10)."""
        header = pdu.header
        call = Call(header.act_id, header.seqnum)
        current = self._seqnum_of(header.act_id)
        if current is not None and header.seqnum != current:
            if _seq_before(header.seqnum, current):
                self._drop(address, f"ping for {call}, older than call {current}")
                return
            current = None
        reply = None
        if current is None:
            reply = rpc.build_header_only(header, PacketType.NOCALL, server_boot=self.server_boot)
        elif header.act_id in self._receiving:
            entry = self._receiving[header.act_id]
            reply = self._fack(entry, header, PacketType.NOCALL)
        elif header.act_id in self._pending:
            reply = rpc.build_header_only(header, PacketType.WORKING, server_boot=self.server_boot)
        else:
            reply = self._answered[header.act_id].reply
            if reply is None:
                reply = rpc.build_header_only(
                    header, PacketType.NOCALL, server_boot=self.server_boot
                )
        self._events.append(SendData(reply, address))

    def _on_ack(self, pdu: PDU, address: Address, now: float) -> None:
        """The client has the reply: it need not be kept any longer."""
        header = pdu.header
        answered = self._answered.get(header.act_id)
        if answered is None or answered.seqnum != header.seqnum:
            self._drop(address, f"ack for {Call(header.act_id, header.seqnum)}, not answered")
            return
        del self._answered[header.act_id]

    def _on_quit(self, pdu: PDU, address: Address, now: float) -> None:
        """A client gives up on a call (orphan quit) or cancels it; either way a quack.

        A NetrSendMessage has nothing to cancel once delivered, so cancels are not accepted; an
        orphan quit abandons a reassembly in progress.
        """
        header = pdu.header
        call = Call(header.act_id, header.seqnum)
        current = self._seqnum_of(header.act_id)
        if current is None or _seq_before(header.seqnum, current):
            self._drop(address, f"quit for {call}, which is not in progress")
            return
        try:
            cancel_id = rpc.parse_quit_body(pdu.body, little_endian=header.little_endian)
        except WireError as exc:
            self._drop(address, f"malformed quit: {exc}")
            return
        if cancel_id is None:
            if header.seqnum == current and header.act_id in self._receiving:
                del self._receiving[header.act_id]
                self._drop(address, f"{call}: the client orphaned it before its last fragment")
            reply = rpc.build_header_only(
                header, PacketType.CANCEL_ACK, server_boot=self.server_boot
            )
        else:
            quack = rpc.reply_header(header, PacketType.CANCEL_ACK, server_boot=self.server_boot)
            reply = rpc.build_pdu(quack, rpc.build_quack_body(cancel_id, accepting=False))
        self._events.append(SendData(reply, address))

    def _seqnum_of(self, act_id: UUID) -> int | None:
        """The seqnum of the activity's latest call we hold anything for, or None. A call in
        fragments or waiting is always later than an answered one of the same activity."""
        for table in (self._receiving, self._pending, self._answered):
            entry = table.get(act_id)
            if entry is not None:
                return entry.seqnum if isinstance(entry, _Answered) else entry.header.seqnum
        return None

    _HANDLERS: ClassVar[dict[int, Callable[[RpcServer, PDU, Address, float], None]]] = {
        PacketType.REQUEST: _on_request,
        PacketType.PING: _on_ping,
        PacketType.ACK: _on_ack,
        PacketType.CL_CANCEL: _on_quit,
    }
    """The PDUs a client sends a server. The rest (response, fault, working, nocall, reject,
    cancel_ack) come from servers; a fack from a client acknowledges response fragments, and
    our responses are never fragmented."""


def _mismatch(first: Header, fragment: Header) -> str:
    """How a later fragment differs from the first one of its call, or ""."""
    for label, ours, theirs in (
        ("interface", first.if_id, fragment.if_id),
        ("interface version", first.if_vers, fragment.if_vers),
        ("opnum", first.opnum, fragment.opnum),
        ("byte order", first.little_endian, fragment.little_endian),
        ("call flags", first.flags1 & _CALL_FLAGS, fragment.flags1 & _CALL_FLAGS),
    ):
        if ours != theirs:
            return f"has {label} {theirs}, the first fragment {ours}"
    return ""


def _asks_for_us(request: rpc.EptMapRequest) -> bool:
    """True when ept_map's tower asks for msgsvcsend v1.x over NDR, RPC connectionless, UDP."""
    if request.map_tower is None:
        return False
    try:
        floors = rpc.parse_tower(request.map_tower)
    except WireError:
        return False
    if len(floors) < 4:
        return False
    interface = rpc.parse_uuid_floor(floors[0])
    syntax = rpc.parse_uuid_floor(floors[1])
    return (
        interface is not None
        and interface[0] == rpc.MSGSVCSEND_UUID
        and interface[1][0] == rpc.MSGSVCSEND_VERSION[0]
        and syntax is not None
        and syntax[0] == rpc.NDR_UUID
        and floors[2].protocol == rpc.PROTOCOL_RPC_CL
        and len(floors[2].rhs) == 2
        and floors[3].protocol == rpc.PROTOCOL_UDP
        and len(floors[3].rhs) == 2
    )
