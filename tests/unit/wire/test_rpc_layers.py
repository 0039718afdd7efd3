"""The struct codec of messengerd.wire.rpc is byte for byte the scapy layers of
messengerd.wire.layers.rpc (on scapy's DceRpc4 and NDR): built both ways, read both ways."""

from __future__ import annotations

from uuid import UUID

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.dcerpc import DceRpc4, NDRConformantArray, NDRContextHandle, NDRPointer
from scapy.layers.dcerpc import NDRVaryingArray as Varying
from scapy.layers.msrpce.ept import prot_and_addr_t, protocol_tower_t
from scapy.layers.msrpce.raw.ept import UUID as NDRUUID
from scapy.layers.msrpce.raw.ept import twr_p_t

from messengerd.wire import rpc
from messengerd.wire.layers.rpc import (
    DceRpc4Fack,
    DceRpc4Quack,
    DceRpc4Quit,
    DceRpc4Status,
    EptMap_Request,
    EptMap_Response,
    NetrSendMessage_Request,
    NetrSendMessage_Response,
)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
oem = st.binary(max_size=300).map(lambda raw: raw.replace(b"\x00", b"\x01"))

headers = st.builds(
    rpc.Header,
    ptype=st.sampled_from(list(rpc.PacketType)),
    flags1=u8,
    flags2=u8,
    little_endian=st.booleans(),
    serial=u16,
    object=st.uuids(),
    if_id=st.uuids(),
    act_id=st.uuids(),
    server_boot=u32,
    if_vers=u32,
    seqnum=u32,
    opnum=u16,
    ihint=u16,
    ahint=u16,
    fragnum=u16,
    auth_proto=u8,
)


def scapy_header(header: rpc.Header) -> DceRpc4:
    """The same header as a scapy DceRpc4 (len left for scapy to count)."""
    return DceRpc4(
        ptype=header.ptype,
        flags1=header.flags1,
        flags2=header.flags2,
        endian=int(header.little_endian),
        serial_hi=header.serial >> 8,
        object=header.object,
        if_id=header.if_id,
        act_id=header.act_id,
        server_boot=header.server_boot,
        if_vers=header.if_vers,
        seqnum=header.seqnum,
        opnum=header.opnum,
        ihint=header.ihint,
        ahint=header.ahint,
        fragnum=header.fragnum,
        auth_proto=header.auth_proto,
        serial_lo=header.serial & 0xFF,
    )


def assert_same_header(ours: rpc.Header, theirs: DceRpc4) -> None:
    assert (theirs.ptype, theirs.flags1, theirs.flags2) == (ours.ptype, ours.flags1, ours.flags2)
    assert theirs.endian == int(ours.little_endian)
    assert (theirs.encoding, theirs.float) == (0, 0)
    assert theirs.serial_hi << 8 | theirs.serial_lo == ours.serial
    assert (theirs.object, theirs.if_id, theirs.act_id) == (ours.object, ours.if_id, ours.act_id)
    assert (theirs.server_boot, theirs.if_vers, theirs.seqnum) == (
        ours.server_boot,
        ours.if_vers,
        ours.seqnum,
    )
    assert (theirs.opnum, theirs.ihint, theirs.ahint, theirs.len) == (
        ours.opnum,
        ours.ihint,
        ours.ahint,
        ours.length,
    )
    assert (theirs.fragnum, theirs.auth_proto) == (ours.fragnum, ours.auth_proto)


@settings(max_examples=200)
@given(headers)
def test_header_is_dceRpc4_both_ways(header):
    ours = rpc.build_pdu(header)
    assert bytes(scapy_header(header)) == ours
    assert_same_header(rpc.parse_pdu(ours).header, DceRpc4(ours))


def request_header(little_endian: bool, **fields) -> rpc.Header:
    return rpc.Header(
        ptype=rpc.PacketType.REQUEST,
        little_endian=little_endian,
        if_id=rpc.MSGSVCSEND_UUID,
        if_vers=1,
        opnum=rpc.OPNUM_NETR_SEND_MESSAGE,
        **fields,
    )


@settings(max_examples=200)
@given(oem, oem, oem, st.booleans(), st.uuids(), u32, u8)
def test_netr_send_message_request_both_ways(
    sender, recipient, text, little, act_id, seqnum, flags
):
    header = request_header(little, act_id=act_id, seqnum=seqnum, flags1=flags)
    ours = rpc.build_pdu(
        header,
        rpc.build_netr_send_message_request(sender, recipient, text, little_endian=little),
    )
    theirs = scapy_header(header) / NetrSendMessage_Request(From=sender, To=recipient, Text=text)
    assert bytes(theirs) == ours
    dissected = DceRpc4(ours)
    stub = dissected[NetrSendMessage_Request]
    assert (stub.valueof("From"), stub.valueof("To"), stub.valueof("Text")) == (
        sender,
        recipient,
        text,
    )
    pdu = rpc.parse_pdu(bytes(theirs))
    assert_same_header(pdu.header, dissected)
    parsed = rpc.parse_netr_send_message_request(pdu.body, little_endian=little)
    assert parsed == rpc.NetrSendMessageRequest(sender, recipient, text)


@given(u32, st.booleans())
def test_netr_send_message_response_both_ways(status, little):
    header = rpc.reply_header(request_header(little), rpc.PacketType.RESPONSE, server_boot=1)
    header = rpc.Header(**{**header.__dict__, "little_endian": little})
    ours = rpc.build_pdu(header, rpc.build_netr_send_message_response(status, little_endian=little))
    assert bytes(scapy_header(header) / NetrSendMessage_Response(status=status)) == ours
    assert DceRpc4(ours)[NetrSendMessage_Response].status == status


@given(st.sampled_from([rpc.PacketType.FAULT, rpc.PacketType.REJECT]), u32, st.booleans())
def test_fault_and_reject_bodies_both_ways(ptype, status, little):
    header = rpc.Header(ptype=ptype, little_endian=little)
    ours = rpc.build_pdu(header, rpc.build_status_body(status, little_endian=little))
    assert bytes(scapy_header(header) / DceRpc4Status(status=status)) == ours
    assert DceRpc4(ours)[DceRpc4Status].status == status


@given(
    st.sampled_from([rpc.PacketType.FACK, rpc.PacketType.NOCALL]),
    u16,
    u32,
    u32,
    u16,
    st.lists(u32, max_size=rpc.MAX_SELACK_WORDS).map(tuple),
    st.booleans(),
)
def test_fack_body_both_ways(ptype, window, tsdu, frag, serial, selack, little):
    header = rpc.Header(ptype=ptype, little_endian=little)
    body = rpc.FackBody(window, tsdu, frag, serial, selack)
    ours = rpc.build_pdu(header, body.encode(little_endian=little))
    theirs = scapy_header(header) / DceRpc4Fack(
        window_size=window,
        max_tsdu=tsdu,
        max_frag_size=frag,
        serial_num=serial,
        selack_len=len(selack),
        selack=list(selack or (0,)),
    )
    assert bytes(theirs) == ours
    dissected = DceRpc4(ours)[DceRpc4Fack]
    assert (dissected.window_size, dissected.max_tsdu, dissected.max_frag_size) == (
        window,
        tsdu,
        frag,
    )
    assert (dissected.serial_num, dissected.selack_len) == (serial, len(selack))
    assert rpc.parse_fack_body(bytes(theirs.payload), little_endian=little) == body


@given(u32, st.booleans())
def test_quit_and_quack_bodies_both_ways(cancel_id, little):
    quit_header = rpc.Header(ptype=rpc.PacketType.CL_CANCEL, little_endian=little)
    quit_body = (0).to_bytes(4, "little" if little else "big") + cancel_id.to_bytes(
        4, "little" if little else "big"
    )
    quit_datagram = rpc.build_pdu(quit_header, quit_body)
    assert bytes(scapy_header(quit_header) / DceRpc4Quit(cancel_id=cancel_id)) == quit_datagram
    assert rpc.parse_quit_body(quit_body, little_endian=little) == cancel_id
    quack_header = rpc.Header(ptype=rpc.PacketType.CANCEL_ACK, little_endian=little)
    quack = rpc.build_pdu(
        quack_header, rpc.build_quack_body(cancel_id, accepting=False, little_endian=little)
    )
    assert bytes(scapy_header(quack_header) / DceRpc4Quack(cancel_id=cancel_id)) == quack
    assert DceRpc4(quack)[DceRpc4Quack].server_is_accepting == 0


def scapy_tower(port: int, address: str) -> bytes:
    """msgsvcsend over ncadg_ip_udp with scapy's tower floors (C706 Appendix L)."""
    return bytes(
        protocol_tower_t(
            floors=[
                prot_and_addr_t(
                    lhs_length=19,
                    protocol_identifier=0x0D,
                    uuid=rpc.MSGSVCSEND_UUID,
                    version=1,
                    rhs_length=2,
                    rhs=0,
                ),
                prot_and_addr_t(
                    lhs_length=19,
                    protocol_identifier=0x0D,
                    uuid=rpc.NDR_UUID,
                    version=2,
                    rhs_length=2,
                    rhs=0,
                ),
                prot_and_addr_t(lhs_length=1, protocol_identifier=0x0A, rhs_length=2, rhs=0),
                prot_and_addr_t(lhs_length=1, protocol_identifier=0x08, rhs_length=2, rhs=port),
                prot_and_addr_t(lhs_length=1, protocol_identifier=0x09, rhs_length=4, rhs=address),
            ]
        )
    )


addresses = st.ip_addresses(v=4).map(str)


@given(u16, addresses)
def test_tower_is_scapy_protocol_tower(port, address):
    ours = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), port, address)
    assert scapy_tower(port, address) == ours
    floors = protocol_tower_t(ours).floors
    assert (floors[3].rhs, floors[4].rhs) == (port, address)


def ept_header(ptype: rpc.PacketType, little: bool) -> rpc.Header:
    return rpc.Header(
        ptype=ptype,
        little_endian=little,
        if_id=rpc.EPT_UUID,
        if_vers=3,
        opnum=rpc.OPNUM_EPT_MAP,
    )


@given(u16, addresses, st.one_of(st.none(), st.uuids()), u32, st.booleans())
def test_ept_map_request_both_ways(port, address, obj, max_towers, little):
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), port, address)
    header = ept_header(rpc.PacketType.REQUEST, little)
    ours = rpc.build_pdu(
        header,
        rpc.build_ept_map_request(tower, object=obj, max_towers=max_towers, little_endian=little),
    )
    order = "little" if little else "big"
    scapy_object = None
    if obj is not None:
        scapy_object = NDRPointer(
            referent_id=1,
            value=NDRUUID(
                Data1=obj.time_low,
                Data2=obj.time_mid,
                Data3=obj.time_hi_version,
                Data4=obj.bytes[8:],
            ),
        )
    theirs = scapy_header(header) / EptMap_Request(
        obj=scapy_object,
        map_tower=NDRPointer(referent_id=2, value=twr_p_t(tower_octet_string=tower)),
        entry_handle=NDRContextHandle(uuid=bytes(16)),
        max_towers=max_towers,
        ndrendian=order,
    )
    assert bytes(theirs) == ours
    dissected = DceRpc4(ours)[EptMap_Request]
    assert dissected.max_towers == max_towers
    assert dissected.valueof("map_tower.tower_octet_string") == tower
    parsed = rpc.parse_ept_map_request(rpc.parse_pdu(bytes(theirs)).body, little_endian=little)
    assert parsed == rpc.EptMapRequest(obj, tower, bytes(20), max_towers)


@given(u16, addresses, st.integers(1, 8), u32, st.booleans())
def test_ept_map_response_both_ways(port, address, max_towers, status, little):
    tower = rpc.udp_tower(rpc.MSGSVCSEND_UUID, (1, 0), port, address)
    header = ept_header(rpc.PacketType.RESPONSE, little)
    ours = rpc.build_pdu(
        header,
        rpc.build_ept_map_response(
            [tower], max_towers=max_towers, status=status, little_endian=little
        ),
    )
    towers = NDRConformantArray(
        max_count=max_towers,
        value=[
            Varying(
                actual_count=1,
                value=[NDRPointer(referent_id=3, value=twr_p_t(tower_octet_string=tower))],
            )
        ],
    )
    theirs = scapy_header(header) / EptMap_Response(
        entry_handle=NDRContextHandle(uuid=bytes(16)),
        num_towers=1,
        ITowers=towers,
        status=status,
        ndrendian="little" if little else "big",
    )
    assert bytes(theirs) == ours
    dissected = DceRpc4(ours)[EptMap_Response]
    assert (dissected.num_towers, dissected.status) == (1, status)
    parsed = rpc.parse_ept_map_response(rpc.parse_pdu(ours).body, little_endian=little)
    assert parsed == rpc.EptMapResponse(bytes(20), (tower,), status)


def test_uuid_of_the_interface_is_where_dceRpc4_reads_it():
    (datagram,) = rpc.build_netr_send_message_call(b"A", b"B", b"C", act_id=UUID(int=1))
    assert DceRpc4(datagram).if_id == rpc.MSGSVCSEND_UUID
