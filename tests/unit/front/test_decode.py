"""`messengerd decode`: messages and name service events out of captures, through the same
wire codecs and machines as the daemon (PROTOCOL.md §2-5)."""

from __future__ import annotations

import argparse
import json

import pytest

from messengerd.commands import decode as decode_command
from messengerd.commands.exits import EXIT_OK, UsageError
from messengerd.decode import CAPTURE_COPY_WINDOW, decode_capture, decode_segments
from messengerd.decode.capture import Segment
from messengerd.sender import prepare_message
from messengerd.wire import nbss, smb
from messengerd.wire.datagram import build_mailslot_datagrams, fragment_datagram
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import build_name_registration_request
from tests.conftest import CAPTURES

SAMBA = "samba-smbclient-nmbd-netns.pcap"
LOOPBACK = "smbclient-M-loopback.pcap"
BOB = NetBIOSName(b"BOB", 0x03)
CALLER = ("192.0.2.2", 40000)
RECEIVER = ("192.0.2.1", 139)


def from_caller(frame: int, payload: bytes, time: float) -> Segment:
    return Segment(frame, "tcp", *CALLER, *RECEIVER, payload, time)


def from_receiver(frame: int, payload: bytes, time: float) -> Segment:
    return Segment(frame, "tcp", *RECEIVER, *CALLER, payload, time)


def reply_to(request_frame: bytes, error: smb.SMBError | None = None) -> bytes:
    """The receiver's reply to a request frame, built as messengerd's receiver builds it."""
    request = smb.parse_header(request_frame[nbss.NBSS_HEADER_LENGTH :])
    reply = smb.build_error_reply(request, error) if error else smb.build_success_reply(request, 0)
    return nbss.session_message(reply)


def test_samba_capture_lists_the_d5_d7_d6_message(capture):
    events = list(decode_capture(capture(SAMBA)))
    sessions = [event for event in events if event.kind == "session"]
    first = sessions[0]
    assert first.line() == 'frame 98-107  session  alice -> RECVR  "netns test line1\\nline2\\n"'
    assert sorted(first.frames) == [98, 102, 104, 106, 107]
    assert first.details["reply"] == "success"
    assert [event.details["text"] for event in sessions] == [
        "netns test line1\nline2\n",
        "via bcast\n",
    ]


def test_samba_capture_lists_the_recvr_registrations_once_per_packet(capture):
    lines = [
        event.line()
        for event in decode_capture(capture(SAMBA))
        if event.kind == "name-registration" and event.details["name"] == "RECVR<03>"
    ]
    # Each packet was captured on both veth ends (3 and 4); nmbd's second round (17, then
    # 29 a few µs later) is two packets of its own.
    assert lines[:4] == [
        f"frame {frames}  name-registration  RECVR<03>  192.0.2.1"
        for frames in ("3-4", "17-18", "29-30", "41-42")
    ]


def test_samba_capture_name_queries_and_answers(capture):
    events = {event.frame_range(): event for event in decode_capture(capture(SAMBA))}
    assert events["85-86"].line() == (
        "frame 85-86  name-query  RECVR<03>  from 192.0.2.1 (broadcast)"
    )
    assert events["87"].line() == "frame 87  name-query-response  RECVR<03>  192.0.2.1"
    assert events["89"].summary == "*  to 192.0.2.1"
    assert "RECVR<03>" in events["90"].details["names"]


def test_copies_fold_only_within_the_window():
    registration = build_name_registration_request(0x5DF8, BOB, "192.0.2.1")
    where = ("192.0.2.1", 137, "192.0.2.255", 137)
    segments = [
        Segment(1, "udp", *where, registration, 10.0),
        Segment(2, "udp", *where, registration, 10.0 + CAPTURE_COPY_WINDOW / 2),
        Segment(3, "udp", *where, registration, 10.25),
    ]
    events = list(decode_segments(segments))
    assert [sorted(event.frames) for event in events] == [[1, 2], [3]]


def test_receiver_assigned_group_ids_are_followed(capture):
    """The loopback capture's listener gave MessageGroupId 0x1234; smbclient used it."""
    events = list(decode_capture(capture(LOOPBACK), session_ports=(139, 13939)))
    texts = {event.details["text"]: event for event in events if event.kind == "session"}
    assert "hello from smbclient\n" in texts
    assert "hello via 139\n" in texts
    assert texts["hello from smbclient\n"].details["reply"] is None
    assert texts["hello from smbclient\n"].line().endswith("(no reply in the capture)")


def test_d0_answered_with_an_error_shows_the_refusal():
    message = prepare_message("BOB", "disk full", fromname="ALICE")
    d0 = nbss.session_message(
        smb.build_send_message_request(message.sender, message.recipient.name, message.text)
    )
    segments = [
        from_caller(1, nbss.session_request(BOB, NetBIOSName(b"ALICE", 0x00)), 1.0),
        from_receiver(2, nbss.positive_response(), 1.1),
        from_caller(3, d0, 1.2),
        from_receiver(4, reply_to(d0, smb.ERROR_NO_ROOM), 1.3),
    ]
    (event,) = decode_segments(segments)
    assert event.line() == (
        'frame 1-4  session  ALICE -> BOB  "disk full"  '
        "(refused: ERRSRV/ERRnoroom (no room for the message))"
    )
    assert event.to_json() | {"time": None} == {
        "frames": [1, 3, 4],
        "time": None,
        "kind": "session",
        "src": "192.0.2.2:40000",
        "dst": "192.0.2.1:139",
        "path": "session",
        "from": "ALICE",
        "to": "BOB",
        "text": "disk full",
        "reply": "ERRSRV/ERRnoroom (no room for the message)",
    }


def test_negative_session_response_is_a_refused_session():
    segments = [
        from_caller(7, nbss.session_request(BOB, NetBIOSName(b"ALICE", 0x00)), 1.0),
        from_receiver(8, nbss.negative_response(nbss.CALLED_NAME_NOT_PRESENT), 1.1),
    ]
    (event,) = decode_segments(segments)
    assert event.line() == "frame 7-8  session-refused  BOB<03>  Called name not present"


def test_d5_answered_with_an_error_is_an_smb_error():
    d5 = nbss.session_message(smb.build_send_start_mb_message_request(b"ALICE", b"BOB"))
    segments = [
        from_caller(1, d5, 1.0),
        from_receiver(2, reply_to(d5, smb.ERROR_MESSAGING_OFF), 1.1),
    ]
    (event,) = decode_segments(segments)
    assert event.line() == (
        "frame 1-2  smb-error  SMB_COM_SEND_START_MB_MESSAGE  "
        "ERRSRV/ERRmsgoff (not receiving messages)"
    )


def mailslot_segments(datagrams: list[bytes], first_frame: int = 1) -> list[Segment]:
    return [
        Segment(first_frame + n, "udp", "192.0.2.9", 138, "192.0.2.1", 138, data, 5.0 + n)
        for n, data in enumerate(datagrams)
    ]


def datagrams(text: bytes) -> list[bytes]:
    return build_mailslot_datagrams(
        b"UPS",
        b"BOB",
        text,
        source_name=NetBIOSName(b"UPS", 0x03),
        destination_name=BOB,
        source_ip="192.0.2.9",
        datagram_id=0x4242,
    )


def test_mailslot_messages_each_datagram_one_message():
    text = b"0123456789" * 60
    events = list(decode_segments(mailslot_segments(datagrams(text))))
    assert len(events) > 1
    assert {event.kind for event in events} == {"mailslot"}
    assert "".join(event.details["text"] for event in events) == text.decode()
    assert events[0].line().startswith('frame 1  mailslot  UPS -> BOB  "0123456789')


def test_fragmented_datagram_is_one_message_over_its_frames():
    (whole,) = datagrams(b"Battery at 10 %")
    fragments = fragment_datagram(whole, 64)
    events = list(decode_segments(mailslot_segments(fragments, first_frame=20)))
    (event,) = events
    assert event.details["text"] == "Battery at 10 %"
    assert event.frame_range() == f"20-{19 + len(fragments)}"


def test_rpc_calls_to_135_are_messages_once_however_often_they_are_sent():
    from uuid import UUID

    from messengerd.wire import rpc
    from tests.unit.wire.test_rpc_wire import HAND_BUILT_REQUEST

    spam = ("198.51.100.66", 1028)
    receiver = ("192.0.2.1", 135)
    fragments = rpc.build_netr_send_message_call(
        b"SPAMMER", b"*", b"long " * 400, act_id=UUID(int=7), max_fragment_body=900
    )
    segments = [
        Segment(1, "udp", *spam, *receiver, HAND_BUILT_REQUEST, 1.0),
        Segment(2, "udp", *spam, *receiver, HAND_BUILT_REQUEST, 2.0),  # a retransmission
        *(
            Segment(3 + n, "udp", *spam, *receiver, fragment, 3.0)
            for n, fragment in enumerate(fragments)
        ),
    ]
    events = list(decode_segments(segments))
    assert [(event.kind, event.details["from"], event.details["to"]) for event in events] == [
        ("rpc", "ALICE", "BOB"),
        ("rpc", "SPAMMER", "*"),
    ]
    assert events[0].line() == 'frame 1  rpc  ALICE -> BOB  "Hello, world"'
    assert events[1].details["text"] == "long " * 400


@pytest.mark.parametrize(
    "name", sorted(path.name for path in CAPTURES.glob("*.pcap")) or ["(no captures)"]
)
def test_every_capture_decodes_without_an_exception(capture, name):
    for event in decode_capture(capture(name), session_ports=(139, 13939)):
        assert event.line().startswith("frame ")
        json.dumps(event.to_json())


# `messengerd decode`, parsed the way messengerd.cli builds its parser.


def run_decode(capsys, *argv: str) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser(prog="messengerd")
    decode_command.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["decode", *argv])
    code = args.handler(args)
    return code, capsys.readouterr().out.splitlines()


def test_cli_prints_one_line_per_event(capture, capsys):
    code, lines = run_decode(capsys, str(capture(SAMBA)))
    assert code == EXIT_OK
    assert 'frame 98-107  session  alice -> RECVR  "netns test line1\\nline2\\n"' in lines
    assert "frame 3-4  name-registration  RECVR<03>  192.0.2.1" in lines


def test_cli_json_is_one_object_per_line(capture, capsys):
    code, lines = run_decode(capsys, "--json", str(capture(SAMBA)))
    assert code == EXIT_OK
    objects = [json.loads(line) for line in lines]
    (message,) = [item for item in objects if item["kind"] == "session" and item["from"] == "alice"]
    assert message["text"] == "netns test line1\nline2\n"
    assert message["frames"] == [98, 102, 104, 106, 107]


def test_cli_extra_session_port(capture, capsys):
    _, lines = run_decode(capsys, "--session-port", "13939", str(capture(LOOPBACK)))
    assert any("hello from smbclient" in line for line in lines)
    _, lines = run_decode(capsys, str(capture(LOOPBACK)))
    assert not any("hello from smbclient" in line for line in lines)


def test_cli_missing_file_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(UsageError, match=r"cannot read .*absent\.pcap: No such file or directory"):
        run_decode(capsys, str(tmp_path / "absent.pcap"))


def test_cli_file_that_is_no_capture_is_a_usage_error(tmp_path, capsys):
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    with pytest.raises(UsageError, match="is not a readable pcap or pcapng capture"):
        run_decode(capsys, str(text))
