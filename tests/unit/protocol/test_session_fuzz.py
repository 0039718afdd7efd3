"""Hostile input to the session path: nothing escapes, output stays bounded, every run ends."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw

from messengerd.core import limits
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    SendData,
)
from messengerd.protocol.session import SessionMachine
from messengerd.wire import nbss, smb
from messengerd.wire.errors import WireError
from messengerd.wire.layers import nbss as nbss_layers
from messengerd.wire.names import NetBIOSName
from tests.unit.protocol.test_session_machine import (
    Aliases,
    d0,
    d5,
    d6,
    d7,
    other_command,
    session_request,
)

FUZZ = settings(max_examples=300, deadline=None)

ALIASES = Aliases(NetBIOSName(b"BOB", 0x03))

MAX_REPLY_BYTES = nbss.NBSS_HEADER_LENGTH + smb.SMB_HEADER_LENGTH + 5
"""The longest thing the machine sends: a D5 reply, WordCount 1, MessageGroupId, ByteCount."""

SESSIONS = [
    d0(b"Hi"),
    session_request() + d0(b"hello", to=b"anyone"),
    session_request() + d5() + d7(0, b"block one ") + d7(0, b"block two") + d6(0),
    d5() + d7(0, b"x" * 127) + d6(0) + d0(b"after"),
    nbss.keepalive() + d7(3, b"orphan") + other_command(smb.SMB_COM_NEGOTIATE) + d0(b"ok"),
]
"""Sessions that run to the end without being closed."""

SEEDS = [
    *SESSIONS,
    nbss.session_request(NetBIOSName(b"BOB", 0x03, b"scope.example"), NetBIOSName(b"A", 0)),
]
"""Streams the mutations start from; a scope, too, to mutate the name decoder with."""


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed stream after a few byte flips, overwrites, insertions, deletions, truncations."""
    stream = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 5))):
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if operation == "insert":
            at = draw(st.integers(0, len(stream)))
            stream[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif not stream:
            continue
        elif operation == "flip":
            at = draw(st.integers(0, len(stream) - 1))
            stream[at] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set":
            stream[draw(st.integers(0, len(stream) - 1))] = draw(st.integers(0, 255))
        elif operation == "delete":
            at = draw(st.integers(0, len(stream) - 1))
            del stream[at : at + draw(st.integers(1, 16))]
        else:
            del stream[draw(st.integers(0, len(stream))) :]
    return bytes(stream)


@st.composite
def split(draw: st.DrawFn, stream: st.SearchStrategy[bytes]) -> list[bytes]:
    """`stream` cut at random points, as TCP may deliver it."""
    data = draw(stream)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds)]


def smb_with(command: int, body: bytes) -> bytes:
    """An SMB1 request with `command` and arbitrary bytes after the header, in a frame."""
    header = b"\xffSMB" + bytes([command]) + bytes(smb.SMB_HEADER_LENGTH - 5)
    return nbss.session_message(header + body)


def drive(chunks: list[bytes], **options) -> list:
    """Every event for `chunks`, answering messages alternately accepted and refused."""
    machine = SessionMachine(ALIASES, **options)
    out: list = []
    for chunk in chunks:
        if not chunk:
            continue  # TCP never delivers nothing; b"" would say the peer closed
        machine.receive_data(chunk)
        while True:
            event = machine.next_event()
            if event is NEED_DATA:
                break
            if event is PAUSED:
                answer = MessageAccepted() if len(out) % 2 else MessageRefused()
                out.append(SendData(machine.send(answer)))
                continue
            out.append(event)
    return out


def assert_well_behaved(chunks: list[bytes], events: list) -> None:
    volume = sum(len(chunk) for chunk in chunks)
    frames = volume // nbss.NBSS_HEADER_LENGTH + 1
    # At most a Dropped and a reply per frame, or a message and its acknowledgement.
    assert len(events) <= 2 * frames + 1
    for event in events:
        if isinstance(event, SendData):
            assert len(event.data) <= MAX_REPLY_BYTES
        if isinstance(event, MessageReceived):
            assert len(event.text) <= limits.MAX_TEXT_BYTES
            assert len(event.sender) <= limits.MAX_FIELD_BYTES
    closes = [i for i, event in enumerate(events) if isinstance(event, CloseConnection)]
    assert closes in ([], [len(events) - 1])


@FUZZ
@given(st.lists(st.binary(max_size=256), max_size=8))
def test_random_bytes_never_escape_the_machine(chunks):
    assert_well_behaved(chunks, drive(chunks))


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_after_a_session_request_never_escape(data):
    chunks = [session_request(), data]
    assert_well_behaved(chunks, drive(chunks))


@FUZZ
@given(
    st.sampled_from([0xD0, 0xD5, 0xD6, 0xD7, 0xD1, 0x72, 0x25, 0xFF]),
    st.binary(max_size=300),
)
def test_random_bodies_of_message_commands_never_escape(command, body):
    chunks = [smb_with(command, body), d0(b"then a good one")]
    events = drive(chunks)
    assert_well_behaved(chunks, events)
    if len(body) < limits.MAX_SESSION_FRAME:
        # The session survives whatever the body was: the good D0 after it arrives.
        assert any(isinstance(e, MessageReceived) and e.text == b"then a good one" for e in events)


@FUZZ
@given(split(mutated()))
def test_mutated_valid_streams_split_anywhere_never_escape(chunks):
    assert_well_behaved(chunks, drive(chunks))


@FUZZ
@given(split(mutated()))
def test_mutated_streams_behave_the_same_with_a_required_session_request(chunks):
    assert_well_behaved(chunks, drive(chunks, require_session_request=True))


@FUZZ
@given(split(st.sampled_from(SESSIONS)))
def test_valid_streams_give_the_same_events_however_they_are_split(chunks):
    whole = drive([b"".join(chunks)])
    assert drive(chunks) == whole
    assert not any(isinstance(event, CloseConnection) for event in whole)


@FUZZ
@given(st.one_of(mutated(), st.binary(max_size=300)))
def test_scapy_layers_raise_only_wire_error_and_rebuild_what_they_read(data):
    try:
        packet = nbss_layers.parse_frame(data)
    except WireError:
        return
    assert raw(packet) == data
    packet.show(dump=True)
    packet.summary()
