"""The NBSS struct codec against the scapy layers it mirrors: the frames messengerd builds are
the layers' bytes, and the headers it reads are what NBTSession dissects (RFC 1002 §4.3)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.netbios import NBTSession

from messengerd.wire import layers, nbss
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from tests.unit.wire.strategies import EQUIVALENCE, ipv4_addresses, netbios_names, uint16
from tests.unit.wire.test_smb_wire import SAMBA, payload_of

LOOPBACK = "smbclient-M-loopback.pcap"


def session_request_layer(called: NetBIOSName, calling: NetBIOSName) -> bytes:
    """The SESSION REQUEST the layers build (RFC 1002 §4.3.2)."""
    return raw(
        NBTSession() / layers.nbss.NBTSessionRequest(CALLED_NAME=called, CALLING_NAME=calling)
    )


def retarget_layer(address: str, port: int) -> bytes:
    """The RETARGET SESSION RESPONSE the layers build (RFC 1002 §4.3.5)."""
    body = layers.nbss.NBTRetargetSessionResponse(RETARGET_IP_ADDRESS=address, PORT=port)
    return raw(NBTSession() / body)


@pytest.mark.parametrize(("name", "frame"), [(SAMBA, 98), (LOOPBACK, 18)])
def test_session_requests_in_captures_are_built_byte_for_byte(capture, name, frame):
    """smbclient's own session requests: to RECVR<03> (netns) and to ALICE<03> (loopback)."""
    payload = payload_of(capture(name), frame)
    called, calling = nbss.parse_session_request(payload)
    assert nbss.session_request(called, calling) == payload
    assert session_request_layer(called, calling) == payload


def test_scoped_session_request_is_the_layers():
    called = NetBIOSName(b"BOB", 0x03, b"corp.example")
    calling = NetBIOSName(b"ALICE", 0x00)
    assert nbss.session_request(called, calling) == session_request_layer(called, calling)


@settings(**EQUIVALENCE)
@given(netbios_names, netbios_names)
def test_session_request_is_the_layers_for_any_names(called, calling):
    frame = nbss.session_request(called, calling)
    assert frame == session_request_layer(called, calling)
    assert nbss.parse_session_request(frame) == (called, calling)


def test_retarget_response_is_the_rfc_layout():
    assert nbss.retarget_response("10.0.0.1", 1139) == bytes.fromhex("84000006 0a000001 0473")
    assert nbss.retarget_response("10.0.0.1") == retarget_layer("10.0.0.1", nbss.NBSS_PORT)


@settings(**EQUIVALENCE)
@given(ipv4_addresses, uint16)
def test_retarget_response_is_the_layers_for_any_address_and_port(address, port):
    assert nbss.retarget_response(address, port) == retarget_layer(address, port)


@pytest.mark.parametrize(
    ("address", "port"),
    [("localhost", 139), ("10.0.0.256", 139), ("::1", 139), ("10.0.0.1", 0x10000), ("0.0.0.0", -1)],
)
def test_retarget_response_refuses_what_does_not_fit(address, port):
    with pytest.raises(WireError):
        nbss.retarget_response(address, port)


def test_fixed_responses_are_the_layers():
    assert nbss.positive_response() == raw(NBTSession(TYPE=nbss.POSITIVE_SESSION_RESPONSE))
    assert nbss.keepalive() == raw(NBTSession(TYPE=nbss.SESSION_KEEP_ALIVE))
    for code in nbss.NEGATIVE_RESPONSE_ERRORS:
        body = layers.nbss.NBTNegativeSessionResponse(ERROR_CODE=code)
        assert nbss.negative_response(code) == raw(NBTSession() / body)


def test_session_message_frames_a_layer_as_its_bytes(capture):
    frame = payload_of(capture(SAMBA), 102)
    smb_layer = layers.nbss.parse_frame(frame).payload
    assert nbss.session_message(smb_layer) == nbss.session_message(raw(smb_layer)) == frame


@settings(**EQUIVALENCE)
@given(st.binary(min_size=4, max_size=4))
def test_frame_header_reads_type_and_length_as_nbtsession_does(header):
    try:
        packet_type, length = nbss.frame_header(header)
    except WireError:
        # Refused: a TYPE RFC 1002 lacks, or reserved FLAGS bits set.
        packet_type, flags = header[0], header[1]
        assert packet_type not in nbss.SESSION_PACKET_TYPES or flags & nbss.RESERVED_FLAGS
        return
    layer = NBTSession(header)
    assert (packet_type, length) == (layer.TYPE, layer.LENGTH)
    # scapy's LENGTH is the 17-bit one: bit E of FLAGS, then the 16-bit field.
    assert length == ((header[1] & 1) << 16) | struct.unpack("!H", header[2:])[0]
