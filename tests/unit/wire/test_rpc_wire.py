"""The connectionless DCE/RPC codec: header, bodies, NetrSendMessage and ept_map stubs, towers
(C706 ch. 12, 14, Appendix L and O; [MS-MSRP] §3.2.4.1; PROTOCOL.md §6)."""

from __future__ import annotations

from dataclasses import replace
from uuid import UUID

import pytest

from messengerd.core.limits import MAX_FIELD_BYTES, MAX_TEXT_BYTES
from messengerd.wire import rpc
from messengerd.wire.errors import WireError

ACTIVITY = UUID("12345678-1234-5678-9abc-def012345678")

# A NetrSendMessage request written byte by byte from C706 §12.5.1 (header) and [MS-MSRP]
# §3.2.4.1 (three [string] LPSTR, NDR conformant varying strings, no referent ids), with the
# flags 2003's messenger spam used: NOFACK | IDEMPOTENT.
HAND_BUILT_STUB = (
    b"\x06\x00\x00\x00"
    b"\x00\x00\x00\x00"
    b"\x06\x00\x00\x00"
    b"ALICE\x00"
    b"\x00\x00"
    b"\x04\x00\x00\x00"
    b"\x00\x00\x00\x00"
    b"\x04\x00\x00\x00"
    b"BOB\x00"
    b"\x0d\x00\x00\x00"
    b"\x00\x00\x00\x00"
    b"\x0d\x00\x00\x00"
    b"Hello, world\x00"
)
HAND_BUILT_REQUEST = (
    b"\x04"  # rpc_vers 4
    b"\x00"  # ptype request
    b"\x28"  # flags1: NOFACK 0x08 | IDEMPOTENT 0x20
    b"\x00"  # flags2
    b"\x10\x00\x00"  # drep: little-endian integers, ASCII, IEEE
    b"\x00"  # serial_hi
    + bytes(16)  # object: nil
    + bytes.fromhex("f8917b5a00ffd011a9b200c04fb6e6fc")  # if_id msgsvcsend, little-endian
    + bytes.fromhex("78563412341278569abcdef012345678")  # act_id
    + b"\x00\x00\x00\x00"  # server_boot: not known yet
    b"\x01\x00\x00\x00"  # if_vers 1.0
    b"\x07\x00\x00\x00"  # seqnum 7
    b"\x00\x00"  # opnum 0, NetrSendMessage
    b"\xff\xff"  # ihint: none
    b"\xff\xff"  # ahint: none
    b"\x3d\x00"  # len 61
    b"\x00\x00"  # fragnum 0
    b"\x00"  # auth_proto none
    b"\x00"  # serial_lo
     + HAND_BUILT_STUB
)


def test_hand_built_request_is_read_field_by_field():
    pdu = rpc.parse_pdu(HAND_BUILT_REQUEST)
    header = pdu.header
    assert header.ptype == rpc.PacketType.REQUEST
    assert header.has(rpc.PF_NOFACK) and header.has(rpc.PF_IDEMPOTENT)
    assert not header.has(rpc.PF_FRAG) and not header.has(rpc.PF_MAYBE)
    assert header.little_endian
    assert header.if_id == rpc.MSGSVCSEND_UUID
    assert header.act_id == ACTIVITY
    assert (header.if_vers, header.seqnum, header.opnum) == (1, 7, 0)
    assert (header.ihint, header.ahint, header.length) == (0xFFFF, 0xFFFF, 61)
    request = rpc.parse_netr_send_message_request(pdu.body)
    assert request == rpc.NetrSendMessageRequest(b"ALICE", b"BOB", b"Hello, world")


def test_our_builders_write_the_hand_built_request():
    (datagram,) = rpc.build_netr_send_message_call(
        b"ALICE",
        b"BOB",
        b"Hello, world",
        act_id=ACTIVITY,
        seqnum=7,
        flags1=rpc.PF_NOFACK | rpc.PF_IDEMPOTENT,
    )
    assert datagram == HAND_BUILT_REQUEST


def test_big_endian_request_reads_the_same():
    header = rpc.parse_pdu(HAND_BUILT_REQUEST).header
    stub = rpc.build_netr_send_message_request(b"ALICE", b"BOB", b"Hi", little_endian=False)
    datagram = rpc.build_pdu(replace(header, little_endian=False), stub)
    assert datagram[4] == 0x00  # drep: big-endian, ASCII
    assert datagram[24:28] == bytes.fromhex("5a7b91f8")  # UUIDs in the sender's order too
    pdu = rpc.parse_pdu(datagram)
    assert pdu.header == replace(header, little_endian=False, length=len(stub))
    request = rpc.parse_netr_send_message_request(pdu.body, little_endian=False)
    assert request == rpc.NetrSendMessageRequest(b"ALICE", b"BOB", b"Hi")


@pytest.mark.parametrize(
    ("drep", "complaint"),
    [
        (b"\x11\x00\x00", "EBCDIC"),
        (b"\x10\x01\x00", "VAX"),
        (b"\x10\x03\x00", "IBM"),
        (b"\x20\x00\x00", "neither byte order"),
    ],
)
def test_unsupported_data_representations_are_refused_by_name(drep, complaint):
    datagram = HAND_BUILT_REQUEST[:4] + drep + HAND_BUILT_REQUEST[7:]
    with pytest.raises(WireError, match=complaint):
        rpc.parse_pdu(datagram)


@pytest.mark.parametrize(
    ("datagram", "complaint"),
    [
        (HAND_BUILT_REQUEST[:79], "shorter than the 80-byte header"),
        (b"\x05" + HAND_BUILT_REQUEST[1:], "rpc_vers 5"),
        (HAND_BUILT_REQUEST[:1] + b"\x0b" + HAND_BUILT_REQUEST[2:], "ptype 11"),
        (HAND_BUILT_REQUEST[:-1], "runs past"),
    ],
)
def test_malformed_headers_say_what_is_wrong(datagram, complaint):
    with pytest.raises(WireError, match=complaint):
        rpc.parse_pdu(datagram)


def test_bytes_after_the_body_are_ignored():
    assert rpc.parse_pdu(HAND_BUILT_REQUEST + b"\x00" * 3).body == HAND_BUILT_STUB


def test_serial_is_split_into_its_high_and_low_bytes():
    header = rpc.Header(ptype=rpc.PacketType.REQUEST, serial=0x1234)
    encoded = header.encode()
    assert (encoded[7], encoded[79]) == (0x12, 0x34)
    assert rpc.parse_pdu(encoded).header.serial == 0x1234


def string(count_max: int, offset: int, count: int, data: bytes) -> bytes:
    return (
        count_max.to_bytes(4, "little")
        + offset.to_bytes(4, "little")
        + count.to_bytes(4, "little")
        + data
    )


GOOD = string(4, 0, 4, b"BOB\x00")


@pytest.mark.parametrize(
    ("stub", "complaint"),
    [
        (string(3, 0, 4, b"BOB\x00") + GOOD + GOOD, "ActualCount 4 is over MaximumCount 3"),
        (string(4, 1, 4, b"BOB\x00") + GOOD + GOOD, "Offset is 1"),
        (string(4, 0, 4, b"BOBS") + GOOD + GOOD, "does not end in a NUL"),
        (string(4, 0, 4, b"B\x00B\x00") + GOOD + GOOD, "a NUL inside"),
        (string(0, 0, 0, b"") + GOOD + GOOD, "ActualCount 0"),
        (string(100, 0, 100, b"BOB\x00"), "run past the stub"),
        (string(0xFFFFFFFF, 0, 4, b"BOB\x00") + GOOD + GOOD, "MaximumCount 4294967295"),
        (GOOD + GOOD, "Text: stub ends"),
        (GOOD + GOOD[:8], "To: stub ends"),
    ],
)
def test_malformed_strings_are_refused_ms03_043_style(stub, complaint):
    with pytest.raises(WireError, match=complaint):
        rpc.parse_netr_send_message_request(stub)


def test_each_string_starts_on_a_four_byte_boundary():
    # From "AB\0" is 15 bytes with its header: To's header starts after one byte of padding.
    stub = rpc.build_netr_send_message_request(b"AB", b"BOB", b"x")
    assert stub[15:16] == b"\x00" and stub[16:20] == (4).to_bytes(4, "little")
    misaligned = stub[:15] + stub[16:]
    with pytest.raises(WireError):
        rpc.parse_netr_send_message_request(misaligned)


def test_no_padding_follows_the_last_string():
    stub = rpc.build_netr_send_message_request(b"ALICE", b"BOB", b"Hi")
    assert stub.endswith(b"Hi\x00")


@pytest.mark.parametrize(
    ("sender", "recipient", "text", "complaint"),
    [
        (b"A" * (MAX_FIELD_BYTES + 1), b"BOB", b"x", "From is"),
        (b"ALICE", b"B" * (MAX_FIELD_BYTES + 1), b"x", "To is"),
        (b"ALICE", b"BOB", b"x" * (MAX_TEXT_BYTES + 1), "Text is"),
    ],
)
def test_fields_over_our_limits_are_told_apart_from_malformed_ones(
    sender, recipient, text, complaint
):
    stub = rpc.build_netr_send_message_request(sender, recipient, text)
    with pytest.raises(rpc.FieldTooLong, match=complaint):
        rpc.parse_netr_send_message_request(stub)


def test_fields_at_our_limits_are_taken():
    text = b"x" * MAX_TEXT_BYTES
    stub = rpc.build_netr_send_message_request(b"A" * MAX_FIELD_BYTES, b"BOB", text)
    assert rpc.parse_netr_send_message_request(stub).text == text


def test_a_string_with_a_nul_cannot_be_written():
    with pytest.raises(WireError):
        rpc.build_netr_send_message_request(b"AL\x00ICE", b"BOB", b"x")


def test_response_stub_is_the_status():
    assert rpc.build_netr_send_message_response(2273) == b"\xe1\x08\x00\x00"
    assert rpc.parse_netr_send_message_response(b"\xe1\x08\x00\x00") == 2273
    with pytest.raises(WireError):
        rpc.parse_netr_send_message_response(b"\x00")


REQUEST_HEADER = rpc.parse_pdu(HAND_BUILT_REQUEST).header


def test_replies_keep_the_call_and_use_our_drep_and_boot_time():
    big_request = replace(REQUEST_HEADER, little_endian=False, server_boot=0, fragnum=3)
    reply = rpc.parse_pdu(
        rpc.build_error(big_request, rpc.PacketType.REJECT, rpc.nca_unk_if, server_boot=99)
    )
    header = reply.header
    assert header.ptype == rpc.PacketType.REJECT and header.little_endian
    assert (header.act_id, header.seqnum, header.if_id) == (ACTIVITY, 7, rpc.MSGSVCSEND_UUID)
    assert (header.flags1, header.server_boot, header.fragnum) == (0, 99, 3)
    assert rpc.parse_status_body(reply.body) == 0x1C010003


def test_response_is_fragment_zero_with_no_flags():
    response = rpc.parse_pdu(rpc.build_response(REQUEST_HEADER, b"\0\0\0\0", server_boot=5))
    assert response.header.ptype == rpc.PacketType.RESPONSE
    assert (response.header.flags1, response.header.fragnum, response.header.length) == (0, 0, 4)


def test_only_faults_and_rejects_carry_a_status():
    with pytest.raises(ValueError):
        rpc.build_error(REQUEST_HEADER, rpc.PacketType.RESPONSE, 0, server_boot=1)


def test_header_only_replies_have_no_body():
    for ptype in (rpc.PacketType.WORKING, rpc.PacketType.NOCALL, rpc.PacketType.CANCEL_ACK):
        datagram = rpc.build_header_only(REQUEST_HEADER, ptype, server_boot=1)
        assert len(datagram) == rpc.HEADER_LENGTH
        assert rpc.parse_pdu(datagram).header.ptype == ptype


def test_fack_body_round_trips_and_keeps_one_word_when_empty():
    body = rpc.FackBody(window_size=7, max_tsdu=8272, max_frag_size=1464, serial_num=2)
    encoded = body.encode()
    assert len(encoded) == 20 and encoded[:2] == b"\x01\x00"
    assert rpc.parse_fack_body(encoded) == body
    with_selack = replace(body, selack=(0b1010, 1))
    assert rpc.parse_fack_body(with_selack.encode(little_endian=False), little_endian=False) == (
        with_selack
    )


@pytest.mark.parametrize(
    "body",
    [b"\x01" * 15, rpc.FackBody(1, 2, 3, 4).encode()[:14] + b"\x02\x00" + bytes(4)],
)
def test_short_fack_bodies_are_refused(body):
    with pytest.raises(WireError):
        rpc.parse_fack_body(body)


def test_fack_carries_the_last_fragment_received_in_order():
    body = rpc.FackBody(1, 2, 3, 4)
    datagram = rpc.build_fack(REQUEST_HEADER, rpc.PacketType.FACK, body, fragnum=-1, server_boot=1)
    assert rpc.parse_pdu(datagram).header.fragnum == 0xFFFF


def test_quit_and_quack_bodies():
    assert rpc.parse_quit_body(b"") is None
    assert rpc.parse_quit_body(b"\0\0\0\0\x05\0\0\0") == 5
    with pytest.raises(WireError):
        rpc.parse_quit_body(b"\0\0\0")
    assert rpc.build_quack_body(5, accepting=False) == b"\0\0\0\0\x05\0\0\0\0"


# Protocol towers and ept_map (C706 Appendix L, Appendix O).

# msgsvcsend over ncadg_ip_udp at port 1026, address 0.0.0.0, written from C706 Appendix L.
HAND_BUILT_TOWER = b"".join(
    [
        b"\x05\x00",  # floor_count 5
        # floor 1, msgsvcsend v1.0: lhs_length 19, 0x0d, the UUID, major 1; rhs_length 2, minor 0
        b"\x13\x00\x0d" + bytes.fromhex("f8917b5a00ffd011a9b200c04fb6e6fc") + b"\x01\x00",
        b"\x02\x00\x00\x00",
        # floor 2, NDR v2.0
        b"\x13\x00\x0d" + bytes.fromhex("045d888aeb1cc9119fe808002b104860") + b"\x02\x00",
        b"\x02\x00\x00\x00",
        b"\x01\x00\x0a\x02\x00\x00\x00",  # floor 3, RPC connectionless, minor 0
        b"\x01\x00\x08\x02\x00\x04\x02",  # floor 4, UDP port 1026, big-endian
        b"\x01\x00\x09\x04\x00\x00\x00\x00\x00",  # floor 5, IP 0.0.0.0
    ]
)


def test_msgsvcsend_udp_tower_matches_appendix_l():
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), 1026, "0.0.0.0")
    assert tower == HAND_BUILT_TOWER
    floors = rpc.parse_tower(tower)
    assert [floor.protocol for floor in floors] == [0x0D, 0x0D, 0x0A, 0x08, 0x09]
    assert rpc.parse_uuid_floor(floors[0]) == (rpc.MSGSVCSEND_UUID, (1, 0))
    assert rpc.parse_uuid_floor(floors[2]) is None
    assert rpc.build_tower(floors) == tower


@pytest.mark.parametrize(
    "octets",
    [
        b"\x01",  # no floor count
        b"\x01\x00\x05\x00\x0d",  # lhs runs past the tower
        b"\x01\x00\x01\x00\x0a\x02\x00\x00",  # rhs runs past the tower
        b"\x01\x00\x00\x00\x00\x00",  # a floor with no protocol identifier
        b"\xff\x00",  # 255 floors
    ],
)
def test_malformed_towers_are_refused(octets):
    with pytest.raises(WireError):
        rpc.parse_tower(octets)


def test_ept_map_request_round_trips():
    stub = rpc.build_ept_map_request(HAND_BUILT_TOWER, max_towers=4)
    # object pointer 1 + nil UUID, tower pointer 2, MaximumCount and tower_length 75.
    assert stub[:24] == b"\x01\0\0\0" + bytes(16) + b"\x02\0\0\0"
    assert stub[24:32] == b"\x4b\0\0\0\x4b\0\0\0"
    assert len(stub) == 132
    request = rpc.parse_ept_map_request(stub)
    assert request == rpc.EptMapRequest(rpc.NIL_UUID, HAND_BUILT_TOWER, bytes(20), 4)
    no_object = rpc.parse_ept_map_request(rpc.build_ept_map_request(b"\0\0", object=None))
    assert no_object.object is None and no_object.map_tower == b"\0\0"


def test_ept_map_request_with_a_huge_tower_is_refused():
    stub = rpc.build_ept_map_request(b"\0" * 600)
    with pytest.raises(WireError, match="tower_length 600"):
        rpc.parse_ept_map_request(stub)


def test_ept_map_response_round_trips():
    stub = rpc.build_ept_map_response([HAND_BUILT_TOWER], max_towers=4)
    # handle, num_towers 1, MaximumCount 4, Offset 0, ActualCount 1, one referent id.
    assert stub[20:40] == (b"\x01\0\0\0\x04\0\0\0\0\0\0\0\x01\0\0\0\x03\0\0\0")
    assert len(stub) == 128
    response = rpc.parse_ept_map_response(stub)
    assert response == rpc.EptMapResponse(bytes(20), (HAND_BUILT_TOWER,), 0)
    empty = rpc.build_ept_map_response([], max_towers=0, status=rpc.EPT_S_NOT_REGISTERED)
    assert rpc.parse_ept_map_response(empty).status == 0x16C9A0D6


def test_client_splits_long_requests_into_fragments():
    text = b"x" * 3000
    datagrams = rpc.build_netr_send_message_call(
        b"ALICE", b"BOB", text, act_id=ACTIVITY, max_fragment_body=1000
    )
    assert len(datagrams) == 4
    pdus = [rpc.parse_pdu(datagram) for datagram in datagrams]
    assert [pdu.header.fragnum for pdu in pdus] == [0, 1, 2, 3]
    assert all(pdu.header.has(rpc.PF_FRAG) for pdu in pdus)
    assert [pdu.header.has(rpc.PF_NOFACK) for pdu in pdus] == [True, True, True, False]
    assert [pdu.header.has(rpc.PF_LASTFRAG) for pdu in pdus] == [False, False, False, True]
    stub = b"".join(pdu.body for pdu in pdus)
    assert rpc.parse_netr_send_message_request(stub).text == text


def test_client_reads_what_the_server_answered():
    response = rpc.build_response(
        REQUEST_HEADER, rpc.build_netr_send_message_response(0), server_boot=42
    )
    reply = rpc.parse_call_reply(response, act_id=ACTIVITY, seqnum=7)
    assert reply == rpc.CallReply(rpc.PacketType.RESPONSE, 0, 42)
    fault = rpc.build_error(
        REQUEST_HEADER, rpc.PacketType.FAULT, rpc.nca_s_fault_ndr, server_boot=1
    )
    assert rpc.parse_call_reply(fault, act_id=ACTIVITY, seqnum=7).status == 0x6F7
    working = rpc.build_header_only(REQUEST_HEADER, rpc.PacketType.WORKING, server_boot=1)
    assert rpc.parse_call_reply(working, act_id=ACTIVITY, seqnum=7).status is None
    with pytest.raises(WireError, match="not ours"):
        rpc.parse_call_reply(response, act_id=ACTIVITY, seqnum=8)
    with pytest.raises(WireError, match="from a client"):
        rpc.parse_call_reply(HAND_BUILT_REQUEST, act_id=ACTIVITY, seqnum=7)


def test_sender_finds_msgsvcsends_port_with_ept_map():
    datagram = rpc.build_ept_map_call(rpc.MSGSVCSEND_UUID, (1, 0), act_id=ACTIVITY, seqnum=3)
    pdu = rpc.parse_pdu(datagram)
    assert (pdu.header.if_id, pdu.header.if_vers, pdu.header.opnum) == (rpc.EPT_UUID, 3, 3)
    request = rpc.parse_ept_map_request(pdu.body)
    assert rpc.udp_port_of(request.map_tower) == 0
    answer = rpc.build_ept_map_response([HAND_BUILT_TOWER], max_towers=request.max_towers)
    (tower,) = rpc.parse_ept_map_response(answer).towers
    assert rpc.udp_port_of(tower) == 1026
    assert rpc.udp_port_of(rpc.build_tower([rpc.uuid_floor(rpc.NDR_UUID, (2, 0))])) is None
