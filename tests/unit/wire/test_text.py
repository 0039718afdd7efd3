"""Message text: OEM code pages and Messenger line breaks (PROTOCOL.md §8)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from messengerd.wire.text import (
    check_codepage,
    decode_text,
    encode_text,
    normalize_line_breaks,
)


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"one\x14two", "one\ntwo"),
        (b"one\r\ntwo", "one\ntwo"),
        (b"one\n\rtwo", "one\ntwo"),
        (b"one\rtwo", "one\ntwo"),
        (b"one\ntwo", "one\ntwo"),
        (b"one\x14\x14two", "one\n\ntwo"),
        (b"one\r\n\r\ntwo", "one\n\ntwo"),
    ],
)
def test_every_sender_line_break_becomes_lf(raw, text):
    assert decode_text(raw) == text


def test_cp850_umlauts_decode():
    assert decode_text("Grüße".encode("cp850")) == "Grüße"
    assert decode_text(b"Gr\x81\xe1e") == "Grüße"


def test_cp866_cyrillic_decodes_when_configured():
    assert decode_text("Привет".encode("cp866"), "cp866") == "Привет"


def test_trailing_nuls_are_dropped():
    assert decode_text(b"Hi\x00\x00") == "Hi"


def test_undecodable_bytes_are_replaced_not_fatal():
    assert decode_text(b"\xff\xfe", "ascii") == "\ufffd\ufffd"


def test_encode_uses_0x14_by_default_and_crlf_on_request():
    assert encode_text("a\nb\r\nc") == b"a\x14b\x14c"
    assert encode_text("a\nb", line_break=b"\r\n") == b"a\r\nb"


def test_unknown_codepage_is_a_clear_value_error():
    with pytest.raises(ValueError, match="unknown code page 'cp9999'"):
        check_codepage("cp9999")
    assert check_codepage("CP850") == "cp850"


@given(st.text(alphabet=st.characters(codec="cp850", exclude_characters="\r\x14")))
def test_text_survives_encode_then_decode(text):
    assert decode_text(encode_text(text)) == text.rstrip("\x00")


@given(st.binary(max_size=2000))
def test_normalised_bytes_hold_no_cr_or_0x14(raw):
    out = normalize_line_breaks(raw)
    assert b"\r" not in out and b"\x14" not in out
    assert len(out) <= len(raw)
