"""NBSS packets (RFC 1002 §4.3): scapy bodies under NBTSession, builders, frame headers."""

from __future__ import annotations

import pytest
from scapy.compat import raw
from scapy.layers.netbios import NBTSession
from scapy.layers.smb import SMB_Header

from messengerd.decode.capture import read_segments
from messengerd.wire import layers, nbss
from messengerd.wire.errors import WireError
from messengerd.wire.layers.smb import SMBSendStartMBMessageRequest
from messengerd.wire.names import NetBIOSName


def payload_of(path, frame: int) -> bytes:
    """The TCP payload of one numbered frame of a capture."""
    return next(s.payload for s in read_segments(path) if s.frame == frame)


def test_session_request_in_samba_capture_round_trips(capture):
    frame = payload_of(capture("samba-smbclient-nmbd-netns.pcap"), 98)
    packet = NBTSession(frame)
    assert packet.TYPE == nbss.SESSION_REQUEST
    request = packet[layers.nbss.NBTSessionRequest]
    called, calling = request.CALLED_NAME, request.CALLING_NAME
    assert called == NetBIOSName(b"RECVR", 0x03)
    assert calling == NetBIOSName(b"SENDER", 0x00)
    assert raw(packet) == frame


def test_session_request_in_smbclient_loopback_capture_round_trips(capture):
    frame = payload_of(capture("smbclient-M-loopback.pcap"), 18)
    packet = layers.nbss.parse_frame(frame)
    request = packet[layers.nbss.NBTSessionRequest]
    called, calling = request.CALLED_NAME, request.CALLING_NAME
    assert called == NetBIOSName(b"ALICE", 0x03)
    assert calling == NetBIOSName(b"VM", 0x00)
    assert raw(packet) == frame


def test_session_request_built_from_names_is_smbclients(capture):
    frame = payload_of(capture("samba-smbclient-nmbd-netns.pcap"), 98)
    built = nbss.session_request(NetBIOSName(b"RECVR", 0x03), NetBIOSName(b"SENDER", 0x00))
    assert built == frame


def test_session_request_with_scope_round_trips():
    called = NetBIOSName(b"BOB", 0x03, b"corp.example")
    frame = nbss.session_request(called, NetBIOSName(b"ALICE", 0x00))
    packet = layers.nbss.parse_frame(frame)
    assert packet[layers.nbss.NBTSessionRequest].getfieldval("CALLED_NAME") == called
    assert raw(packet) == frame
    assert "BOB<03>.corp.example" in packet[layers.nbss.NBTSessionRequest].sprintf("%CALLED_NAME%")


def test_positive_response_is_smbds(capture):
    assert nbss.positive_response() == b"\x82\x00\x00\x00"
    assert nbss.positive_response() == payload_of(capture("samba-smbclient-nmbd-netns.pcap"), 100)


def test_negative_response_carries_called_name_not_present_by_default():
    frame = nbss.negative_response()
    assert frame == b"\x83\x00\x00\x01\x82"
    packet = NBTSession(frame)
    assert packet[layers.nbss.NBTNegativeSessionResponse].ERROR_CODE == nbss.CALLED_NAME_NOT_PRESENT
    assert raw(packet) == frame


@pytest.mark.parametrize(
    "code",
    [
        nbss.NOT_LISTENING_ON_CALLED_NAME,
        nbss.NOT_LISTENING_FOR_CALLING_NAME,
        nbss.CALLED_NAME_NOT_PRESENT,
        nbss.CALLED_NAME_PRESENT_INSUFFICIENT_RESOURCES,
        nbss.UNSPECIFIED_ERROR,
    ],
)
def test_negative_response_round_trips_every_rfc_error_code(code):
    frame = nbss.negative_response(code)
    assert frame == bytes([0x83, 0, 0, 1, code])
    assert (
        NBTSession(frame)[layers.nbss.NBTNegativeSessionResponse].getfieldval("ERROR_CODE") == code
    )


def test_negative_response_refuses_a_code_the_rfc_lacks():
    with pytest.raises(ValueError):
        nbss.negative_response(0x84)


def test_retarget_response_carries_address_and_port():
    frame = nbss.retarget_response("10.0.0.1", 1139)
    assert frame == bytes.fromhex("84000006 0a000001 0473")
    packet = NBTSession(frame)
    assert packet[layers.nbss.NBTRetargetSessionResponse].RETARGET_IP_ADDRESS == "10.0.0.1"
    assert packet[layers.nbss.NBTRetargetSessionResponse].PORT == 1139
    assert raw(packet) == frame


def test_keepalive_is_85_00_00_00():
    assert nbss.keepalive() == b"\x85\x00\x00\x00"


def test_session_message_frames_an_smb(capture):
    frame = payload_of(capture("samba-smbclient-nmbd-netns.pcap"), 102)
    smb = NBTSession(frame)[SMB_Header]
    assert nbss.session_message(smb) == frame
    assert nbss.session_message(raw(smb)) == frame


def test_session_message_still_dissects_to_smb_after_rebinding(capture):
    frame = payload_of(capture("samba-smbclient-nmbd-netns.pcap"), 102)
    packet = layers.nbss.parse_frame(frame)
    assert isinstance(packet.payload, SMB_Header)
    assert isinstance(packet[SMB_Header].payload, SMBSendStartMBMessageRequest)


def test_frame_header_reads_the_17_bit_length():
    assert nbss.frame_header(b"\x00\x01\xff\xff") == (nbss.SESSION_MESSAGE, 0x1FFFF)
    assert nbss.frame_header(b"\x81\x00\x00\x44") == (nbss.SESSION_REQUEST, 0x44)


@pytest.mark.parametrize(
    "header",
    [b"GET ", b"\x16\x03\x01\x00", b"\xfeSMB", b"\x00\x02\x00\x00", b"\x85\x80\x00\x00", b"\x00"],
)
def test_frame_header_rejects_what_is_not_a_session_packet(header):
    with pytest.raises(WireError):
        nbss.frame_header(header)


def test_parse_frame_rejects_a_frame_of_the_wrong_length():
    with pytest.raises(WireError):
        layers.nbss.parse_frame(b"\x82\x00\x00\x01")
    with pytest.raises(WireError):
        layers.nbss.parse_frame(b"\x83\x00\x00\x01\x82\x00")


def test_session_request_with_an_undecodable_name_is_kept_raw():
    # 'Z' is outside A-P: not a first-level encoded name.
    body = b"\x20" + b"Z" * 32 + b"\x00" + NetBIOSName(b"X").encode()
    frame = bytes([nbss.SESSION_REQUEST, 0, 0, len(body)]) + body
    packet = layers.nbss.parse_frame(frame)
    assert packet.getlayer(layers.nbss.NBTSessionRequest) is None
    assert raw(packet) == frame
