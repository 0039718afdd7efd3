"""NetBIOS names: first-level encoding (RFC 1001 §14.1) and alias normalisation."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messengerd.wire.errors import WireError
from messengerd.wire.names import (
    NetBIOSName,
    alias_name,
    decode_first_level,
    encode_first_level,
    recipient_name,
)


def test_bob_03_encodes_as_in_protocol_md():
    encoded = NetBIOSName(b"BOB", 0x03).encode()
    assert encoded == b"\x20ECEPECCACACACACACACACACACACACAAD\x00"
    assert len(encoded) == 34


def test_decoding_returns_the_name_and_the_offset_after_it():
    data = b"junk" + NetBIOSName(b"RECVR", 0x03).encode() + b"tail"
    name, end = decode_first_level(data, 4)
    assert name == NetBIOSName(b"RECVR", 0x03)
    assert data[end:] == b"tail"
    assert str(name) == "RECVR<03>"


def test_scope_labels_round_trip():
    name = NetBIOSName(b"BOB", 0x03, b"corp.example")
    decoded, end = decode_first_level(name.encode())
    assert decoded == name
    assert end == len(name.encode())


def test_wildcard_node_status_name_keeps_its_nuls():
    raw = b"*" + b"\x00" * 15
    assert encode_first_level(raw)[:5] == b"\x20CKAA"
    name, _ = decode_first_level(encode_first_level(raw))
    assert name.to_bytes16() == raw


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x1f" + b"A" * 32 + b"\x00",
        b"\x20" + b"A" * 31,
        b"\x20" + b"Z" * 32 + b"\x00",
        b"\x20" + b"A" * 32,
        b"\x20" + b"A" * 32 + b"\x05abc",
        b"\x20" + b"A" * 32 + b"\xc0\x0c",
    ],
)
def test_malformed_encoded_names_raise_wire_error(data):
    with pytest.raises(WireError):
        decode_first_level(data)


def test_alias_is_upper_cased_in_the_oem_code_page():
    # Python upper-cases ß to SS, as Windows' OEM upper-casing table does not; both fit.
    assert alias_name("jürgen") == NetBIOSName("JÜRGEN".encode("cp850"), 0x03)
    assert alias_name("bob").to_bytes16() == b"BOB" + b" " * 12 + b"\x03"


def test_alias_longer_than_15_bytes_is_refused():
    with pytest.raises(WireError):
        alias_name("A" * 16)
    assert alias_name("A" * 15).name == b"A" * 15


def test_recipient_name_matches_any_case_and_rejects_what_cannot_be_a_name():
    assert recipient_name(b"bob") == NetBIOSName(b"BOB", 0x03)
    assert recipient_name(b"x" * 40) is None
    assert recipient_name(b"") is None


@given(st.binary(min_size=16, max_size=16), st.sampled_from([b"", b"a", b"x.y.z"]))
def test_every_16_byte_name_round_trips(raw, scope):
    name = NetBIOSName.from_bytes16(raw, scope)
    decoded, _ = decode_first_level(name.encode())
    assert decoded.to_bytes16() == name.to_bytes16()
    assert decoded.scope == scope


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=10))
def test_decoding_arbitrary_bytes_raises_only_wire_error(data, offset):
    with contextlib.suppress(WireError):
        decode_first_level(data, offset)


def test_scope_label_with_a_dot_is_refused():
    data = b"\x20" + b"A" * 32 + b"\x03a.b\x00"
    with pytest.raises(WireError, match="dot"):
        decode_first_level(data)


def test_wildcard_name_prints_without_its_nul_padding():
    assert str(NetBIOSName.from_bytes16(b"*" + b"\x00" * 15)) == "*<00>"


def test_recipient_name_with_an_unknown_code_page_is_none():
    assert recipient_name(b"BOB", "cp9999") is None
