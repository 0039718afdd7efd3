"""A real `messengerd run` starting and stopping: nothing refused while its names are being
registered, the releases at stop sent together, and the files it leaves behind private and
their WAL empty (issue 12, items 1, 4, 12, 13)."""

from __future__ import annotations

import os
import pwd
import socket
import stat
import time
from pathlib import Path

from messengerd.core.store.schema import DATABASE_NAME
from messengerd.wire import nbss, smb
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import NameRelease, parse_nbns
from tests.conftest import need
from tests.daemon_process import NOBODY, DaemonProcess
from tests.e2e.test_run import recv_frame
from tests.helpers import free_port

LOOPBACK = "127.0.0.1"
LOOPBACK_BROADCAST = "127.255.255.255"
ALICE = NetBIOSName(b"ALICE", 0x00)
WAIT = 10.0


def send_d0(
    port: int, to: bytes, text: bytes, *, session_request: bool, sender: bytes = b"ALICE"
) -> tuple[bytes, int]:
    """A D0 to `to` on a new session, with a SESSION REQUEST first (as `net send` and
    smbclient on 139 do) or without (smbclient on a high port): the session answer (b""
    without a request) and the D0 reply's status."""
    with socket.create_connection((LOOPBACK, port), timeout=WAIT) as sock:
        answer = b""
        if session_request:
            sock.sendall(nbss.session_request(NetBIOSName(to, 0x03), ALICE))
            answer = recv_frame(sock)
            if answer != nbss.positive_response():
                return answer, -1
        sock.sendall(nbss.session_message(smb.build_send_message_request(sender, to, text)))
        reply = recv_frame(sock)[nbss.NBSS_HEADER_LENGTH :]
    return answer, int.from_bytes(reply[5:9], "little")


def test_no_message_is_refused_while_the_aliases_are_being_registered(tmp_path):
    ports = (free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port())
    daemon = DaemonProcess("--alias", "BOB", data_dir=tmp_path, ports=ports, wait=False)
    answers: list[tuple[bool, bytes, int]] = []
    try:
        # Send from the moment the session port opens until the daemon says it is ready
        # (its registration of BOB<03> waits 750 ms for objections), and once more after.
        deadline = time.monotonic() + WAIT
        ready_seen = 0
        while ready_seen < 2 and time.monotonic() < deadline:
            ready = bool(daemon.ports)
            ready_seen += ready
            text = b"message %d" % len(answers)
            try:
                answer, status = send_d0(
                    ports[2], b"BOB", text, session_request=len(answers) % 2 == 0
                )
            except ConnectionRefusedError:
                time.sleep(0.005)
                continue
            answers.append((ready, answer, status))
            time.sleep(0.02)  # some 40 messages in the window are plenty
        daemon.wait_ready()
        early = [entry for entry in answers if not entry[0]]
        assert early, "no message went out before the names were registered: nothing tested"
        refused = [entry for entry in answers if entry[2] != 0]
        assert not refused, f"{len(refused)} of {len(answers)} refused, e.g. {refused[:2]}"
        stored = [daemon.next_message()["text"] for _ in answers]
        assert sorted(stored) == sorted(f"message {n}" for n in range(len(answers)))
    finally:
        daemon.stop()


class BroadcastListener:
    """A socket on the daemon's name port at the broadcast address: hears its broadcasts
    (the daemon's own socket there shares the address with SO_REUSEADDR)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK_BROADCAST, port))
        self.sock.settimeout(WAIT)

    def releases(self, count: int) -> list[NameRelease]:
        found: list[NameRelease] = []
        while len(found) < count:
            packet = parse_nbns(self.sock.recvfrom(2048)[0])
            if isinstance(packet, NameRelease):
                found.append(packet)
        return found

    def close(self) -> None:
        self.sock.close()


def test_a_clean_stop_releases_every_alias_at_once(tmp_path):
    aliases = ["ALPHA", "BRAVO", "CHARLIE"]
    daemon = DaemonProcess(*(f"--alias={name}" for name in aliases), data_dir=tmp_path)
    listener = BroadcastListener(daemon.ports["name"])
    try:
        assert daemon.stop() == 0
        releases = listener.releases(3 * len(aliases))
    finally:
        listener.close()
        daemon.stop()
    names = [release.name.name.decode() for release in releases]
    # Three rounds of one release per name (RFC 1002: BCAST_REQ_RETRY_COUNT), not three
    # releases of one name before the next name's first.
    rounds = [sorted(names[start : start + len(aliases)]) for start in range(0, len(names), 3)]
    assert rounds == [aliases] * 3, names
    # Each name keeps one NAME_TRN_ID over its three requests (RFC 1002 §4.2.1.1).
    assert len({release.trn_id for release in releases}) == len(aliases)


def umask_022() -> None:
    os.umask(0o022)


def modes(directory: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()}


def test_the_store_is_private_and_its_wal_empty_after_a_clean_stop(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    daemon = DaemonProcess("--alias", "BOB", data_dir=data_dir, preexec_fn=umask_022)
    try:
        for number in range(20):
            assert (
                send_d0(daemon.ports["session"], b"BOB", b"m%d" % number, session_request=True)[1]
                == 0
            )
        while_running = modes(data_dir)
        wal = data_dir / (DATABASE_NAME + "-wal")
        assert wal.stat().st_size > 0, "the messages are in the WAL while it runs"
    finally:
        assert daemon.stop() == 0
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert any("made it private" in line for line in daemon.log)
    for name in (DATABASE_NAME, DATABASE_NAME + "-wal", DATABASE_NAME + "-shm", "aliases.json"):
        assert while_running.get(name) == 0o600, (name, while_running)
    assert not wal.exists() or wal.stat().st_size == 0, "a clean stop truncates the WAL"


def test_a_data_directory_of_another_user_is_warned_about_once(tmp_path):
    need(os.geteuid() == 0, "needs root to give the data directory to another user")
    data_dir = tmp_path / "theirs"
    data_dir.mkdir()
    data_dir.chmod(0o755)
    os.chown(data_dir, NOBODY, NOBODY)
    with DaemonProcess("--alias", "BOB", data_dir=data_dir, preexec_fn=umask_022) as daemon:
        assert send_d0(daemon.ports["session"], b"BOB", b"hello", session_request=True)[1] == 0
    warnings = [line for line in daemon.log if "other users can enter" in line]
    owner = pwd.getpwuid(NOBODY).pw_name
    assert warnings == [
        f"messengerd: other users can enter the data directory {data_dir} (mode 0755, owner "
        f"{owner}): run `chmod go-rwx {data_dir}` as its owner"
    ]
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o755, "not ours to change"
    assert stat.S_IMODE((data_dir / DATABASE_NAME).stat().st_mode) == 0o600
