"""`messengerd run` as a user runs it: a real process, loopback sockets, PROTOCOL.md bytes."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys

import pytest

from messengerd.wire.names import NetBIOSName
from tests.daemon_process import DaemonProcess


@pytest.fixture
def daemon(tmp_path):
    with DaemonProcess("--alias", "BOB", "--alias", "Jürgen", data_dir=tmp_path) as process:
        yield process


def session_request(called: bytes, calling: bytes = b"ALICE") -> bytes:
    """NBSS session request (RFC 1002 §4.3.2): type 0x81, called then calling name."""
    body = NetBIOSName(called, 0x03).encode() + NetBIOSName(calling, 0x00).encode()
    return struct.pack(">BBH", 0x81, 0, len(body)) + body


def smb(command: int, words: bytes, data: bytes) -> bytes:
    """An NBSS session message holding one SMB: all-zero header but the command (§4)."""
    header = b"\xffSMB" + bytes([command]) + bytes(27)
    body = header + bytes([len(words) // 2]) + words + struct.pack("<H", len(data)) + data
    return struct.pack(">I", len(body)) + body


def d0(sender: bytes, to: bytes, text: bytes) -> bytes:
    data = b"\x04" + sender + b"\x00\x04" + to + b"\x00\x01" + struct.pack("<H", len(text)) + text
    return smb(0xD0, b"", data)


def recv_frame(sock: socket.socket) -> bytes:
    header = recv_exact(sock, 4)
    length = int.from_bytes(header[1:], "big") & 0x1FFFF
    return header + recv_exact(sock, length)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def connect(daemon: DaemonProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", daemon.ports["session"]), timeout=10)
    return sock


def test_protocol_md_d0_example_arrives(daemon):
    example = bytes.fromhex(
        "00000034"
        "ff534d42d0" + "00" * 27 + "00"
        "1100"
        "04" + b"ALICE".hex() + "00"
        "04" + b"BOB".hex() + "00"
        "010200" + b"Hi".hex()
    )
    assert example == d0(b"ALICE", b"BOB", b"Hi")
    with connect(daemon) as sock:
        sock.sendall(session_request(b"BOB"))
        assert recv_frame(sock) == b"\x82\x00\x00\x00"
        sock.sendall(example)
        reply = recv_frame(sock)
    assert reply[4:9] == b"\xffSMB\xd0"
    assert reply[9:13] == b"\x00\x00\x00\x00", "status must be success"
    assert reply[13] & 0x80, "reply flag set"
    assert reply[36:] == b"\x00\x00\x00", "WCT 0, BCC 0"
    message = daemon.next_message()
    assert {k: message[k] for k in ("from", "to", "text", "path")} == {
        "from": "ALICE",
        "to": "BOB",
        "text": "Hi",
        "path": "session",
    }
    assert {"from", "to", "text", "received_at", "path", "peer", "id"} <= set(message)


def test_multi_block_d5_d7_d6_arrives_with_0x14_line_breaks(daemon):
    blocks = [b"UPS on battery\x14", b"Runtime 12 min\x14", b"Shut down now"]
    with connect(daemon) as sock:
        to = "jürgen".encode("cp850")
        sock.sendall(smb(0xD5, b"", b"\x04PowerChute\x00\x04" + to + b"\x00"))
        reply = recv_frame(sock)
        assert reply[36] == 1, "D5 reply has WordCount 1"
        group = reply[37:39]
        for block in blocks:
            sock.sendall(smb(0xD7, group, b"\x01" + struct.pack("<H", len(block)) + block))
            assert recv_frame(sock)[9:13] == bytes(4)
        sock.sendall(smb(0xD6, group, b""))
        assert recv_frame(sock)[9:13] == bytes(4)
    message = daemon.next_message()
    assert message["text"] == "UPS on battery\nRuntime 12 min\nShut down now"
    assert message["to"] == "jürgen"


def test_unknown_called_name_gets_negative_response_0x82(daemon):
    with connect(daemon) as sock:
        sock.sendall(session_request(b"CAROL"))
        assert recv_frame(sock) == b"\x83\x00\x00\x01\x82"


def test_keepalive_then_message_on_the_same_session(daemon):
    with connect(daemon) as sock:
        sock.sendall(session_request(b"BOB"))
        recv_frame(sock)
        sock.sendall(b"\x85\x00\x00\x00" + d0(b"A", b"BOB", b"after keepalive"))
        recv_frame(sock)
    assert daemon.next_message()["text"] == "after keepalive"


def test_unknown_smb_command_is_refused_and_the_session_stays_usable(daemon):
    with connect(daemon) as sock:
        sock.sendall(smb(0xD1, b"", b""))
        error = recv_frame(sock)
        assert error[9:13] != bytes(4), "an error status"
        sock.sendall(d0(b"A", b"BOB", b"still here"))
        assert recv_frame(sock)[9:13] == bytes(4)
    assert daemon.next_message()["text"] == "still here"


def test_garbage_closes_the_session_and_the_daemon_keeps_serving(daemon):
    with connect(daemon) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(100) == b""
    with connect(daemon) as sock:
        sock.sendall(d0(b"A", b"BOB", b"ok"))
        recv_frame(sock)
    assert daemon.next_message()["text"] == "ok"


def mailslot_datagram(sender: bytes, to: bytes, text: bytes, *, msg_type: int = 0x10) -> bytes:
    """A `\\MAILSLOT\\MESSNGR` write in a NetBIOS datagram, built by hand from PROTOCOL.md §5."""
    payload = sender + b"\x00" + to + b"\x00" + text
    name = b"\\MAILSLOT\\MESSNGR\x00"
    setup = struct.pack("<HHH", 1, 1, 2)
    words_before_setup = 14  # TotalParameterCount .. SetupCount/Reserved3
    data_offset = 32 + 1 + words_before_setup * 2 + len(setup) + 2 + len(name)
    assert data_offset == 87  # PROTOCOL.md §5: Win98 pads one more byte, 88
    words = struct.pack(
        "<HHHHBBHIHHHHHBB",
        0, len(payload), 0, 0, 0, 0, 0, 0, 0, 0, 0, len(payload), data_offset, 3, 0,
    ) + setup  # fmt: skip
    smb_bytes = (
        b"\xffSMB\x25" + bytes(27) + bytes([17]) + words
        + struct.pack("<H", len(name) + len(payload)) + name + payload
    )  # fmt: skip
    names = NetBIOSName(b"ALICE", 0).encode() + NetBIOSName(to.upper(), 0x03).encode()
    header = struct.pack(
        ">BBH4sHHH", msg_type, 0x02, 0x4242, socket.inet_aton("127.0.0.1"), 138,
        len(names) + len(smb_bytes), 0,
    )  # fmt: skip
    return header + names + smb_bytes


def test_mailslot_datagram_arrives(daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(
            mailslot_datagram(b"ALICE", b"BOB", b"by mailslot"),
            ("127.0.0.1", daemon.ports["datagram"]),
        )
    message = daemon.next_message()
    assert (message["text"], message["path"]) == ("by mailslot", "mailslot")


def test_broadcast_mailslot_to_star_arrives_via_the_broadcast_address(daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.sendto(
            mailslot_datagram(b"ALICE", b"*", b"to everyone", msg_type=0x12),
            ("127.255.255.255", daemon.ports["datagram"]),
        )
    assert daemon.next_message()["text"] == "to everyone"


def test_mailslot_to_someone_else_is_dropped(daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(
            mailslot_datagram(b"ALICE", b"CAROL", b"not ours"),
            ("127.0.0.1", daemon.ports["datagram"]),
        )
    assert daemon.no_message()


def run_messengerd(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "messengerd", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


LOOPBACK = ["run", "--bind", "127.0.0.1", "--broadcast", "127.255.255.255"]


def test_port_in_use_is_one_line_and_exit_2(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = run_messengerd(
            *LOOPBACK, "--name-port", str(port), "--datagram-port", "0", "--session-port", "0",
            "--rpc-port", "0", "--data-dir", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}/udp" in lines[0] and "in use" in lines[0]
    assert "--name-port" in lines[0]


def test_tcp_session_port_in_use_is_named_too(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_messengerd(
            *LOOPBACK, "--name-port", "0", "--datagram-port", "0", "--rpc-port", "0",
            "--session-port", str(port), "--data-dir", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 2
    assert f"port {port}/tcp" in result.stderr and "Traceback" not in result.stderr


def test_unknown_codepage_is_one_line_and_exit_2(tmp_path):
    result = run_messengerd(*LOOPBACK, "--codepage", "cp9999", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "messengerd: unknown code page 'cp9999' (try cp850, cp437 or cp866)"
    )


def test_over_long_alias_is_one_line_and_exit_2(tmp_path):
    result = run_messengerd(*LOOPBACK, "--alias", "A" * 16, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "ERROR_INVALID_PARAMETER" in result.stderr and "Traceback" not in result.stderr


def test_ctrl_c_stops_cleanly(tmp_path):
    process = DaemonProcess("--alias", "BOB", data_dir=tmp_path)
    assert process.stop() == 0
    assert not any("Traceback" in line for line in process.log)


def test_the_same_message_by_session_and_mailslot_is_stored_and_shown_once(daemon):
    with connect(daemon) as sock:
        sock.sendall(d0(b"UPS", b"BOB", b"On battery"))
        assert recv_frame(sock)[9:13] == bytes(4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(
            mailslot_datagram(b"UPS", b"BOB", b"On battery"),
            ("127.0.0.1", daemon.ports["datagram"]),
        )
    assert daemon.next_message()["path"] == "session"
    assert daemon.no_message(1.0), "the mailslot copy is not shown again"
    assert any("is a copy of #" in line for line in daemon.log), "the copy did arrive"
    history = run_messengerd("history", "--json", "--data-dir", str(daemon.data_dir))
    assert [json.loads(line)["text"] for line in history.stdout.splitlines()] == ["On battery"]
