"""The RPC path's machine: NetrSendMessage and ept_map over connectionless DCE/RPC, without I/O
([MS-MSRP] §3.2, C706 ch. 10 and 12, PROTOCOL.md §6). The directory is the real AliasTable."""

from __future__ import annotations

from uuid import UUID

import pytest

from messengerd.core import lmerr
from messengerd.core.aliases import AliasTable
from messengerd.core.limits import (
    MAX_FIELD_BYTES,
    MAX_RPC_DATAGRAM_BYTES,
    MAX_RPC_FRAGMENTS,
    MAX_RPC_PENDING_CALLS,
    MAX_RPC_REASSEMBLIES,
    MAX_RPC_REPLY_CACHE,
    RPC_REASSEMBLY_TIMEOUT,
    RPC_REPLY_CACHE_TIMEOUT,
)
from messengerd.protocol.events import (
    NEED_DATA,
    Dropped,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    SendData,
)
from messengerd.protocol.rpc import (
    Call,
    CallReceived,
    NERR_NoRoom,
    RpcServer,
    RpcStateError,
)
from messengerd.wire import rpc
from messengerd.wire.rpc import PacketType
from tests.unit.wire.test_rpc_wire import ACTIVITY, HAND_BUILT_REQUEST

BOOT = 0x5F5E1000
PORT = 1026
PEER = ("127.0.0.1", 40000)
OTHER = UUID("0f0e0d0c-0b0a-0908-0706-050403020100")


@pytest.fixture
def server() -> RpcServer:
    return RpcServer(AliasTable(["BOB"], workgroups=["WORKGROUP"]), port=PORT, server_boot=BOOT)


def drain(server: RpcServer) -> list:
    events = []
    while (event := server.next_event()) is not NEED_DATA:
        events.append(event)
    return events


def feed(server: RpcServer, datagram: bytes, now: float = 0.0, peer=PEER) -> list:
    server.receive_data(datagram, peer, now)
    return drain(server)


def sent(events) -> list[SendData]:
    return [event for event in events if isinstance(event, SendData)]


def calls(events) -> list[CallReceived]:
    return [event for event in events if isinstance(event, CallReceived)]


def reasons(events) -> str:
    return " | ".join(event.reason for event in events if isinstance(event, Dropped))


def netr(
    text: bytes = b"The UPS is on battery.",
    to: bytes = b"BOB",
    *,
    act_id: UUID = ACTIVITY,
    seqnum: int = 0,
    flags1: int = rpc.PF_IDEMPOTENT,
    **options,
) -> list[bytes]:
    return rpc.build_netr_send_message_call(
        b"ALICE", to, text, act_id=act_id, seqnum=seqnum, flags1=flags1, **options
    )


def one(datagrams: list[bytes]) -> bytes:
    (datagram,) = datagrams
    return datagram


def answer(data: bytes, act_id: UUID = ACTIVITY, seqnum: int = 0) -> rpc.CallReply:
    return rpc.parse_call_reply(data, act_id=act_id, seqnum=seqnum)


def client_pdu(ptype: PacketType, *, act_id=ACTIVITY, seqnum=0, body=b"", **fields) -> bytes:
    fields = {"if_id": rpc.MSGSVCSEND_UUID, "if_vers": 1, **fields}
    header = rpc.Header(ptype=ptype, act_id=act_id, seqnum=seqnum, **fields)
    return rpc.build_pdu(header, body)


def deliver(server: RpcServer, datagrams: list[bytes], now: float = 0.0) -> CallReceived:
    events = []
    for datagram in datagrams:
        events += feed(server, datagram, now)
    (received,) = calls(events)
    return received


# A whole call.


def test_hand_built_request_is_delivered_then_answered_once_stored(server):
    events = feed(server, HAND_BUILT_REQUEST, now=1.0)
    assert events == [
        CallReceived(
            Call(ACTIVITY, 7),
            MessageReceived(b"ALICE", b"BOB", b"Hello, world", "rpc"),
            PEER,
        )
    ]
    assert server.waiting_calls == 1
    reply = server.send(Call(ACTIVITY, 7), MessageAccepted())
    assert reply is not None and reply.address == PEER
    assert answer(reply.data, seqnum=7) == rpc.CallReply(PacketType.RESPONSE, 0, BOOT)
    assert server.waiting_calls == 0


def test_big_endian_request_is_delivered_and_answered_in_our_byte_order(server):
    header = rpc.parse_pdu(one(netr(b"Hi"))).header
    stub = rpc.build_netr_send_message_request(b"ALICE", b"BOB", b"Hi", little_endian=False)
    header = rpc.Header(**{**header.__dict__, "little_endian": False})
    received = deliver(server, [rpc.build_pdu(header, stub)])
    assert received.message.text == b"Hi"
    reply = server.send(received.call, MessageAccepted())
    assert rpc.parse_pdu(reply.data).header.little_endian
    assert answer(reply.data).status == 0


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        ("not_an_alias", lmerr.NERR_NameNotFound),
        ("no_room", NERR_NoRoom),
        ("denied", lmerr.ERROR_ACCESS_DENIED),
    ],
)
def test_refusals_are_answered_with_their_status(server, reason, status):
    received = deliver(server, netr())
    reply = server.send(received.call, MessageRefused(reason))
    assert answer(reply.data) == rpc.CallReply(PacketType.RESPONSE, status, BOOT)
    assert NERR_NoRoom == 2119


def test_unknown_recipient_gets_name_not_found_without_delivery(server):
    events = feed(server, one(netr(to=b"CAROL")))
    assert calls(events) == []
    (reply,) = sent(events)
    assert answer(reply.data).status == 2273
    assert "b'CAROL' is not one of our names" in reasons(events)


def test_recipient_is_compared_as_windows_does_in_upper_case(server):
    assert deliver(server, netr(to=b"bob")).message.recipient == b"bob"


def test_workgroup_recipient_is_delivered(server):
    assert deliver(server, netr(to=b"WORKGROUP")).message.recipient == b"WORKGROUP"


def test_control_characters_in_a_recipient_reach_reasons_escaped(server):
    events = feed(server, one(netr(to=b"\x1b[2J")))
    assert "\\x1b[2J" in reasons(events) and "\x1b" not in reasons(events)


@pytest.mark.parametrize(
    ("sender", "text"),
    [(b"A" * (MAX_FIELD_BYTES + 1), b"x"), (b"ALICE", b"x" * 5000)],
)
def test_fields_over_our_limits_get_invalid_parameter(server, sender, text):
    datagrams = rpc.build_netr_send_message_call(
        sender, b"BOB", text, act_id=ACTIVITY, max_fragment_body=8000
    )
    events = feed(server, one(datagrams))
    assert calls(events) == []
    (reply,) = sent(events)
    assert answer(reply.data).status == lmerr.ERROR_INVALID_PARAMETER


def test_malformed_ndr_gets_a_fault_and_its_retransmission_the_same(server):
    datagram = client_pdu(PacketType.REQUEST, body=b"\x04\0\0\0\x01\0\0\0\x04\0\0\0BOB\0")
    events = feed(server, datagram)
    (fault,) = sent(events)
    assert answer(fault.data) == rpc.CallReply(PacketType.FAULT, rpc.nca_s_fault_ndr, BOOT)
    assert "Offset is 1" in reasons(events)
    assert sent(feed(server, datagram)) == [fault]


# Retransmissions, pings, acks (C706 ch. 10).


def test_retransmission_while_storing_is_dropped_and_a_ping_gets_working(server):
    datagram = one(netr())
    received = deliver(server, [datagram])
    events = feed(server, datagram)
    assert calls(events) == [] and sent(events) == []
    assert "while its message is being stored" in reasons(events)
    (working,) = sent(feed(server, client_pdu(PacketType.PING)))
    assert answer(working.data).ptype is PacketType.WORKING
    server.send(received.call, MessageAccepted())


def test_retransmission_after_the_answer_gets_the_same_reply_and_no_second_delivery(server):
    datagram = one(netr())
    received = deliver(server, [datagram])
    reply = server.send(received.call, MessageAccepted())
    events = feed(server, datagram, now=3.0)
    assert calls(events) == []
    assert sent(events) == [reply]


def test_ping_gets_the_reply_once_answered(server):
    received = deliver(server, netr())
    reply = server.send(received.call, MessageRefused("not_an_alias"))
    assert sent(feed(server, client_pdu(PacketType.PING))) == [reply]


@pytest.mark.parametrize("seqnum", [0, 5])
def test_ping_for_a_call_we_do_not_know_gets_nocall(server, seqnum):
    if seqnum:
        server.send(deliver(server, netr(seqnum=4)).call, MessageAccepted())
    (nocall,) = sent(feed(server, client_pdu(PacketType.PING, seqnum=seqnum)))
    reply = answer(nocall.data, seqnum=seqnum)
    assert reply.ptype is PacketType.NOCALL and len(nocall.data) == rpc.HEADER_LENGTH


def test_ping_for_an_older_call_is_dropped(server):
    server.send(deliver(server, netr(seqnum=4)).call, MessageAccepted())
    events = feed(server, client_pdu(PacketType.PING, seqnum=3))
    assert sent(events) == [] and "older than call 4" in reasons(events)


def test_old_request_is_dropped(server):
    server.send(deliver(server, netr(seqnum=4)).call, MessageAccepted())
    events = feed(server, one(netr(seqnum=3)))
    assert calls(events) == [] and sent(events) == []


def test_sequence_numbers_wrap(server):
    server.send(deliver(server, netr(seqnum=0xFFFFFFFF)).call, MessageAccepted())
    assert deliver(server, netr(seqnum=0)).call == Call(ACTIVITY, 0)


def test_ack_frees_the_reply(server):
    server.send(deliver(server, netr()).call, MessageAccepted())
    assert server.held_calls == 1
    assert feed(server, client_pdu(PacketType.ACK)) == []
    assert server.held_calls == 0
    (nocall,) = sent(feed(server, client_pdu(PacketType.PING)))
    assert answer(nocall.data).ptype is PacketType.NOCALL


def test_ack_for_another_call_is_dropped(server):
    events = feed(server, client_pdu(PacketType.ACK, seqnum=9))
    assert "not answered" in reasons(events)


def test_next_call_of_an_activity_frees_the_previous_reply(server):
    server.send(deliver(server, netr(seqnum=1)).call, MessageAccepted())
    received = deliver(server, netr(b"second", seqnum=2))
    assert received.message.text == b"second"
    assert server.held_calls == 1


def test_old_reply_outlives_a_next_call_abandoned_in_fragments(server):
    first = one(netr(seqnum=1))
    reply = server.send(deliver(server, [first]).call, MessageAccepted())
    feed(server, fragments(seqnum=2)[0])
    feed(server, client_pdu(PacketType.CL_CANCEL, seqnum=2))
    events = feed(server, first)
    assert calls(events) == [] and sent(events) == [reply]


def test_next_call_while_the_previous_is_stored_waits_for_a_retransmission(server):
    first = deliver(server, netr(seqnum=1))
    events = feed(server, one(netr(seqnum=2)))
    assert calls(events) == [] and "call 1 still waits" in reasons(events)
    server.send(first.call, MessageAccepted())
    assert deliver(server, netr(seqnum=2)).call == Call(ACTIVITY, 2)


def test_reply_is_forgotten_after_the_cache_timeout(server):
    datagram = one(netr())
    server.send(deliver(server, [datagram], now=0.0).call, MessageAccepted())
    assert server.next_deadline() == RPC_REPLY_CACHE_TIMEOUT
    server.expire(RPC_REPLY_CACHE_TIMEOUT)
    assert server.held_calls == 0 and server.next_deadline() is None
    assert calls(feed(server, datagram, now=RPC_REPLY_CACHE_TIMEOUT))


def test_reply_cache_is_bounded(server):
    for number in range(MAX_RPC_REPLY_CACHE + 10):
        received = deliver(server, netr(act_id=UUID(int=number + 1)))
        server.send(received.call, MessageAccepted())
    assert server.held_calls == MAX_RPC_REPLY_CACHE


def test_waiting_calls_are_bounded(server):
    for number in range(MAX_RPC_PENDING_CALLS):
        deliver(server, netr(act_id=UUID(int=number + 1)))
    events = feed(server, one(netr(act_id=UUID(int=0xFFFF))))
    assert calls(events) == [] and sent(events) == []
    assert f"{MAX_RPC_PENDING_CALLS} calls already wait" in reasons(events)


# What this server does not serve.


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"if_id": OTHER}, rpc.nca_unk_if),
        ({"if_vers": 2}, rpc.nca_unk_if),
        ({"if_vers": 1 | 1 << 16}, rpc.nca_unk_if),
        ({"opnum": 1}, rpc.nca_op_rng_error),
        ({"auth_proto": 1}, rpc.nca_unspec_reject),
        ({"server_boot": BOOT - 1}, rpc.nca_wrong_boot_time),
    ],
)
def test_calls_we_do_not_serve_are_rejected(server, fields, status):
    events = feed(server, client_pdu(PacketType.REQUEST, body=b"x" * 40, **fields))
    (reject,) = sent(events)
    assert answer(reject.data).ptype is PacketType.REJECT
    assert answer(reject.data).status == status
    assert server.held_calls == 0


def test_wrong_boot_time_reject_carries_the_clients_boot_time(server):
    (reject,) = sent(feed(server, client_pdu(PacketType.REQUEST, server_boot=77)))
    assert answer(reject.data).server_boot == 77


def test_our_own_boot_time_is_accepted(server):
    assert deliver(server, netr(server_boot=BOOT)).message.sender == b"ALICE"


@pytest.mark.parametrize(
    "ptype",
    [
        PacketType.RESPONSE,
        PacketType.FAULT,
        PacketType.WORKING,
        PacketType.NOCALL,
        PacketType.REJECT,
        PacketType.FACK,
        PacketType.CANCEL_ACK,
    ],
)
def test_pdus_a_server_sends_are_dropped(server, ptype):
    events = feed(server, client_pdu(ptype))
    assert sent(events) == [] and len(events) == 1 and isinstance(events[0], Dropped)


@pytest.mark.parametrize(
    "datagram",
    [b"", b"\x04" * 79, b"\x05" + HAND_BUILT_REQUEST[1:], b"\0" * (MAX_RPC_DATAGRAM_BYTES + 1)],
)
def test_garbage_is_dropped_unanswered(server, datagram):
    events = feed(server, datagram)
    assert len(events) == 1 and isinstance(events[0], Dropped)


def test_ebcdic_requests_are_dropped_with_the_reason(server):
    datagram = HAND_BUILT_REQUEST[:4] + b"\x11\x00\x00" + HAND_BUILT_REQUEST[7:]
    assert "EBCDIC" in reasons(feed(server, datagram))


# MAYBE and BROADCAST: no amplification.


def test_maybe_call_is_delivered_and_never_answered(server):
    datagram = one(netr(flags1=rpc.PF_MAYBE | rpc.PF_IDEMPOTENT))
    received = deliver(server, [datagram])
    assert server.send(received.call, MessageAccepted()) is None
    events = feed(server, datagram)
    assert calls(events) == [] and sent(events) == []


def test_maybe_call_gets_no_reject_either(server):
    events = feed(server, client_pdu(PacketType.REQUEST, flags1=rpc.PF_MAYBE, opnum=7))
    assert sent(events) == [] and "opnum 7" in reasons(events)


def test_broadcast_for_us_is_answered(server):
    received = deliver(server, netr(flags1=rpc.PF_BROADCAST | rpc.PF_IDEMPOTENT))
    reply = server.send(received.call, MessageAccepted())
    assert answer(reply.data).status == 0


def test_broadcast_refusal_is_silent(server):
    received = deliver(server, netr(flags1=rpc.PF_BROADCAST | rpc.PF_IDEMPOTENT))
    assert server.send(received.call, MessageRefused("no_room")) is None


@pytest.mark.parametrize(
    "datagram",
    [
        one(netr(to=b"CAROL", flags1=rpc.PF_BROADCAST)),
        one(netr(b"x" * 5000, flags1=rpc.PF_BROADCAST, max_fragment_body=8000)),
        client_pdu(PacketType.REQUEST, flags1=rpc.PF_BROADCAST, if_id=OTHER),
        client_pdu(PacketType.REQUEST, flags1=rpc.PF_BROADCAST, body=b"\xff" * 12),
    ],
    ids=["not ours", "too long", "unknown interface", "malformed"],
)
def test_broadcasts_get_no_negative_answer(server, datagram):
    events = feed(server, datagram)
    assert sent(events) == [] and calls(events) == [] and reasons(events)


# Fragments.


def fragments(text: bytes = b"x" * 3000, size: int = 1000, **options) -> list[bytes]:
    return netr(text, max_fragment_body=size, **options)


def with_flags(datagram: bytes, set_: int = 0, clear: int = 0, **fields) -> bytes:
    pdu = rpc.parse_pdu(datagram)
    header = pdu.header
    flags = (header.flags1 | set_) & ~clear
    return rpc.build_pdu(rpc.Header(**{**header.__dict__, "flags1": flags, **fields}), pdu.body)


def test_fragments_in_order_are_reassembled_without_facks(server):
    pieces = fragments()
    assert len(pieces) == 4
    events = []
    for piece in pieces:
        events += feed(server, piece)
    assert sent(events) == []
    (received,) = calls(events)
    assert received.message.text == b"x" * 3000


def test_fragments_out_of_order_with_duplicates_are_reassembled_once(server):
    pieces = fragments()
    events = []
    for index in (3, 1, 1, 0, 3, 2):
        events += feed(server, pieces[index])
    (received,) = calls(events)
    assert received.message.text == b"x" * 3000


def test_a_fragment_asking_for_a_fack_gets_one_with_selective_acks(server):
    pieces = fragments()
    feed(server, pieces[0])
    feed(server, pieces[2])
    (fack,) = sent(feed(server, with_flags(pieces[3], clear=rpc.PF_NOFACK, set_=0)))
    pdu = rpc.parse_pdu(fack.data)
    assert pdu.header.ptype == PacketType.FACK and pdu.header.fragnum == 0
    body = rpc.parse_fack_body(pdu.body)
    # Fragment 1 is missing: bit 0 stands for it, bits 1 and 2 for fragments 2 and 3.
    assert body.selack == (0b110,)
    assert body.serial_num == 3 and body.max_frag_size == rpc.MUST_RECV_FRAG_SIZE
    assert len(fack.data) <= len(pieces[3]) + 20


def test_fack_before_fragment_zero_names_fragment_0xffff(server):
    piece = with_flags(fragments()[1], clear=rpc.PF_NOFACK)
    (fack,) = sent(feed(server, piece))
    assert rpc.parse_pdu(fack.data).header.fragnum == 0xFFFF


def test_ping_while_fragments_are_missing_gets_nocall_with_a_fack_body(server):
    feed(server, fragments()[0])
    (nocall,) = sent(feed(server, client_pdu(PacketType.PING, serial=9)))
    pdu = rpc.parse_pdu(nocall.data)
    assert pdu.header.ptype == PacketType.NOCALL and pdu.header.fragnum == 0
    assert rpc.parse_fack_body(pdu.body).serial_num == 9


def test_fragment_past_the_limit_gets_a_fault(server):
    piece = with_flags(fragments()[1], fragnum=MAX_RPC_FRAGMENTS)
    (fault,) = sent(feed(server, piece))
    assert answer(fault.data).status == rpc.nca_s_fault_remote_no_memory
    assert server.held_calls == 1  # the fault, kept for retransmissions


def test_fragments_over_the_byte_limit_get_a_fault_and_are_freed(server):
    pieces = fragments(b"x" * 4000, size=500, act_id=OTHER)
    big = [with_flags(piece, fragnum=index) for index, piece in enumerate(pieces)]
    padded = [
        rpc.build_pdu(rpc.parse_pdu(piece).header, rpc.parse_pdu(piece).body * 3)
        for piece in big[:-1]
    ]
    events = []
    for piece in padded:
        events += feed(server, piece)
    (fault,) = sent(events)
    assert answer(fault.data, act_id=OTHER).status == rpc.nca_s_fault_remote_no_memory
    assert "more than 8192 bytes" in reasons(events)


def test_two_last_fragments_abandon_the_request(server):
    pieces = fragments()
    feed(server, with_flags(pieces[1], set_=rpc.PF_LASTFRAG))
    events = feed(server, pieces[3])
    assert "two last fragments" in reasons(events) and sent(events) == []
    assert server.held_calls == 0


def test_fragment_after_the_last_abandons_the_request(server):
    pieces = fragments()
    feed(server, with_flags(pieces[1], set_=rpc.PF_LASTFRAG))
    assert "after the last one" in reasons(feed(server, pieces[2]))


def test_a_fragment_of_another_kind_of_call_is_dropped(server):
    pieces = fragments()
    feed(server, pieces[0])
    events = feed(server, with_flags(pieces[1], set_=rpc.PF_MAYBE))
    assert "call flags" in reasons(events)
    events = feed(server, with_flags(pieces[1], opnum=5))
    assert "opnum 5" in reasons(events)


def test_unfragmented_copy_of_a_call_being_reassembled_is_dropped(server):
    feed(server, fragments()[0])
    events = feed(server, one(netr()))
    assert "unfragmented copy" in reasons(events)


def test_reassembly_times_out_and_a_late_fragment_does_not_complete_it(server):
    pieces = fragments()
    for piece in pieces[:3]:
        feed(server, piece, now=1.0)
    assert server.next_deadline() == 1.0 + RPC_REASSEMBLY_TIMEOUT
    server.expire(1.0 + RPC_REASSEMBLY_TIMEOUT)
    assert "timed out with 3 fragments of 3000 bytes" in reasons(drain(server))
    events = feed(server, pieces[3], now=1.0 + RPC_REASSEMBLY_TIMEOUT)
    assert calls(events) == []
    assert server.held_calls == 1


def test_reassemblies_are_bounded_and_the_oldest_goes(server):
    for number in range(MAX_RPC_REASSEMBLIES):
        feed(server, fragments(act_id=UUID(int=number + 1))[0])
    events = feed(server, fragments(act_id=OTHER)[0])
    assert "evicted" in reasons(events) and str(UUID(int=1)) in reasons(events)
    assert server.held_calls == MAX_RPC_REASSEMBLIES


def test_orphan_quit_abandons_a_reassembly_with_a_quack(server):
    feed(server, fragments()[0])
    events = feed(server, client_pdu(PacketType.CL_CANCEL))
    (quack,) = sent(events)
    assert answer(quack.data).ptype is PacketType.CANCEL_ACK
    assert server.held_calls == 0


def test_cancel_is_acknowledged_as_not_accepted(server):
    received = deliver(server, netr())
    body = b"\0\0\0\0\x2a\0\0\0"
    (quack,) = sent(feed(server, client_pdu(PacketType.CL_CANCEL, body=body)))
    pdu = rpc.parse_pdu(quack.data)
    assert pdu.body == rpc.build_quack_body(42, accepting=False)
    server.send(received.call, MessageAccepted())


def test_quit_for_a_call_we_do_not_know_is_dropped(server):
    assert "not in progress" in reasons(feed(server, client_pdu(PacketType.CL_CANCEL)))


# ept_map (C706 Appendix O): where msgsvcsend is.


def ept_map(tower: bytes, *, flags1: int = rpc.PF_IDEMPOTENT, max_towers: int = 4) -> bytes:
    header = rpc.Header(
        ptype=PacketType.REQUEST,
        flags1=flags1,
        if_id=rpc.EPT_UUID,
        if_vers=3,
        act_id=OTHER,
        opnum=rpc.OPNUM_EPT_MAP,
    )
    return rpc.build_pdu(header, rpc.build_ept_map_request(tower, max_towers=max_towers))


def ept_answer(reply: SendData) -> rpc.EptMapResponse:
    pdu = rpc.parse_pdu(reply.data)
    assert pdu.header.ptype == PacketType.RESPONSE and pdu.header.if_id == rpc.EPT_UUID
    return rpc.parse_ept_map_response(pdu.body)


def test_ept_map_for_msgsvcsend_names_our_port(server):
    request = ept_map(rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 0, "0.0.0.0"))
    (reply,) = sent(feed(server, request))
    response = ept_answer(reply)
    assert response.status == 0
    (tower,) = response.towers
    floors = rpc.parse_tower(tower)
    assert rpc.parse_uuid_floor(floors[0]) == (rpc.MSGSVCSEND_UUID, (1, 0))
    assert int.from_bytes(floors[3].rhs, "big") == PORT
    assert len(reply.data) <= len(request) + 20
    assert server.held_calls == 0


@pytest.mark.parametrize(
    "tower",
    [
        rpc.udp_tower(OTHER, (1, 0), 0, "0.0.0.0"),
        rpc.udp_tower(rpc.MSGSVCSEND_UUID, (2, 0), 0, "0.0.0.0"),
        rpc.build_tower(
            [
                rpc.uuid_floor(rpc.MSGSVCSEND_UUID, (1, 0)),
                rpc.uuid_floor(rpc.NDR_UUID, (2, 0)),
                rpc.TowerFloor(b"\x0b", b"\0\0"),
                rpc.TowerFloor(b"\x07", b"\0\0"),
                rpc.TowerFloor(b"\x09", b"\0\0\0\0"),
            ]
        ),
        b"\x01\x00",
    ],
    ids=["other interface", "other version", "over tcp", "no floors"],
)
def test_ept_map_for_anything_else_is_not_registered(server, tower):
    (reply,) = sent(feed(server, ept_map(tower)))
    assert ept_answer(reply) == rpc.EptMapResponse(bytes(20), (), rpc.EPT_S_NOT_REGISTERED)


def test_ept_map_with_no_room_for_a_tower_gets_none(server):
    request = ept_map(rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 0, "0.0.0.0"), max_towers=0)
    (reply,) = sent(feed(server, request))
    assert ept_answer(reply).towers == ()


def test_broadcast_ept_map_is_not_answered(server):
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 0, "0.0.0.0")
    events = feed(server, ept_map(tower, flags1=rpc.PF_BROADCAST | rpc.PF_IDEMPOTENT))
    assert sent(events) == [] and "broadcast ept_map" in reasons(events)


def test_malformed_ept_map_gets_a_fault(server):
    header = rpc.parse_pdu(ept_map(b"\0\0")).header
    (fault,) = sent(feed(server, rpc.build_pdu(header, b"\x01\0\0\0")))
    assert answer(fault.data, act_id=OTHER).status == rpc.nca_s_fault_ndr


def test_other_ept_operations_are_out_of_range(server):
    header = rpc.parse_pdu(ept_map(b"\0\0")).header
    lookup = rpc.Header(**{**header.__dict__, "opnum": 2})
    (reject,) = sent(feed(server, rpc.build_pdu(lookup, bytes(40))))
    assert answer(reject.data, act_id=OTHER).status == rpc.nca_op_rng_error


# The caller's side of the contract.


def test_answering_a_call_that_is_not_waiting_raises(server):
    with pytest.raises(RpcStateError):
        server.send(Call(ACTIVITY, 0), MessageAccepted())
    received = deliver(server, netr())
    server.send(received.call, MessageAccepted())
    with pytest.raises(RpcStateError):
        server.send(received.call, MessageAccepted())


def test_feeding_without_reading_events_raises(server):
    with pytest.raises(RpcStateError):
        for number in range(1000):
            server.receive_data(b"junk", PEER, float(number))


@pytest.mark.parametrize(
    "options", [{"port": 0}, {"port": 70000}, {"server_boot": 0}, {"server_boot": 1 << 32}]
)
def test_bad_settings_raise(options):
    settings = {"port": PORT, "server_boot": BOOT, **options}
    with pytest.raises(ValueError):
        RpcServer(AliasTable(), **settings)


def test_a_sender_finds_our_port_with_its_own_ept_map_call(server):
    request = rpc.build_ept_map_call(rpc.MSGSVCSEND_UUID, (1, 0), act_id=OTHER)
    (reply,) = sent(feed(server, request))
    (tower,) = ept_answer(reply).towers
    assert rpc.udp_port_of(tower) == PORT
