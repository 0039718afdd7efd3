"""`messengerd names ...` against a real `messengerd run` on loopback high ports.

What the network sees is checked with real sockets: name queries and session requests built
from messengerd.wire, and the daemon's broadcasts on 127.255.255.255 (heard by a socket
sharing the broadcast address with SO_REUSEADDR, as the daemon's own socket allows).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from messengerd.control.protocol import CONTROL_SOCKET
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import (
    NAM_ERR,
    NameRegistration,
    NameRelease,
    QueryResponse,
    build_name_query_request,
    build_name_registration_request,
    build_negative_name_registration_response,
    parse_nbns,
)
from messengerd.wire.nbss import negative_response, positive_response, session_request
from tests.conftest import need
from tests.daemon_process import DaemonProcess, request_as_other_user
from tests.daemon_process import names_command as names

LOOPBACK_BROADCAST = "127.255.255.255"
SECOND_HOST = "127.0.0.2"
"""A second loopback address (Linux routes all of 127/8 to lo): another node on the segment."""
ALICE = NetBIOSName(b"ALICE", 0x00)
BOB = NetBIOSName(b"BOB", 0x03)
RECVR = NetBIOSName(b"RECVR", 0x03)
SUCCESS = "The command completed successfully.\n"
_trn_ids = itertools.count(0x100)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    """One daemon for the tests that each use names of their own (starting one takes a
    second: the registration of RECVR<03> alone waits 750 ms for objections)."""
    data_dir = tmp_path_factory.mktemp("shared")
    with DaemonProcess("--alias", "RECVR", data_dir=data_dir) as process:
        yield process


@pytest.fixture
def data_dir(daemon):
    return daemon.data_dir


class Listener:
    """A UDP socket on the daemon's name port at the broadcast address: hears its broadcasts."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((LOOPBACK_BROADCAST, port))
        self.sock.settimeout(10)

    def wait_for(self, kind: type, name: NetBIOSName):
        """The next packet of `kind` for `name` (others are skipped)."""
        while True:
            data, _ = self.sock.recvfrom(2048)
            packet = parse_nbns(data)
            if isinstance(packet, kind) and packet.name == name:
                return packet

    def close(self) -> None:
        self.sock.close()


def ask(port: int, name: NetBIOSName, *, recursion_desired: bool = True) -> QueryResponse | None:
    """A name query to the daemon, then one for RECVR<03>, which it always answers.

    Datagrams are answered in order, so the first reply tells whether the first query was
    answered, without waiting for a timeout.
    """
    first, second = next(_trn_ids), next(_trn_ids)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(10)
        address = ("127.0.0.1", port)
        sock.sendto(
            build_name_query_request(
                first, name, broadcast=False, recursion_desired=recursion_desired
            ),
            address,
        )
        sock.sendto(build_name_query_request(second, RECVR, broadcast=False), address)
        reply = parse_nbns(sock.recvfrom(2048)[0])
    assert isinstance(reply, QueryResponse)
    return reply if reply.trn_id == first else None


def session_answer(port: int, called: NetBIOSName) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(session_request(called, ALICE))
        answer = sock.recv(5)
    return answer


# --- add, delete, list, info ------------------------------------------------------------------


def test_add_bob_registers_it_and_the_daemon_answers_for_it(daemon, data_dir):
    listener = Listener(daemon.ports["name"])
    try:
        assert ask(daemon.ports["name"], BOB) is None
        result = names(data_dir, "add", "bob")
        assert (result.returncode, result.stdout, result.stderr) == (0, SUCCESS, "")
        registration = listener.wait_for(NameRegistration, BOB)
        assert (registration.flags, registration.address) == (0x2910, "127.0.0.1")
    finally:
        listener.close()
    answer = ask(daemon.ports["name"], BOB)
    assert answer is not None and answer.entries[0].address == "127.0.0.1"
    assert session_answer(daemon.ports["session"], BOB) == positive_response()


def test_del_releases_the_name_and_the_daemon_stops_answering(daemon, data_dir):
    dan = NetBIOSName(b"DAN", 0x03)
    assert names(data_dir, "add", "DAN").returncode == 0
    assert session_answer(daemon.ports["session"], dan) == positive_response()
    listener = Listener(daemon.ports["name"])
    try:
        result = names(data_dir, "del", "Dan")
        assert (result.returncode, result.stdout) == (0, SUCCESS)
        release = listener.wait_for(NameRelease, dan)
        assert (release.flags, release.address) == (0x3010, "127.0.0.1")
    finally:
        listener.close()
    assert ask(daemon.ports["name"], dan) is None, "a broadcast-style query goes unanswered"
    unicast = ask(daemon.ports["name"], dan, recursion_desired=False)
    assert unicast is not None and unicast.rcode == NAM_ERR
    assert session_answer(daemon.ports["session"], dan) == negative_response(0x82)


def test_list_and_info_show_the_table(data_dir):
    assert names(data_dir, "add", "jürgen").returncode == 0
    as_json = json.loads(names(data_dir, "list", "--json").stdout)
    assert {"name": "JÜRGEN", "forward_flag": 0, "forward": None} in as_json
    assert {"name": "RECVR", "forward_flag": 0, "forward": None} in as_json
    listed = [entry["name"] for entry in as_json]
    assert listed == sorted(listed)
    listing = names(data_dir, "list")
    assert listing.returncode == 0
    rows = "".join(f"{name}\n" for name in listed)
    assert listing.stdout == "Name\n\n" + "-" * 79 + "\n" + rows + SUCCESS
    info = names(data_dir, "info", "jürgen")
    assert info.returncode == 0
    assert info.stdout.splitlines()[0].split() == ["Message", "alias", "JÜRGEN"]
    assert info.stdout.endswith(SUCCESS)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("add", "RECVR"), "NERR_AlreadyExists (2276): This message alias already exists locally."),
        (("del", "CAROL"), "NERR_NotLocalName (2285): The name is not on the local computer."),
        (("info", "CAROL"), "NERR_NotLocalName (2285): The name is not on the local computer."),
        (("add", "A" * 16), "ERROR_INVALID_PARAMETER (87): The parameter is incorrect."),
    ],
)
def test_refusals_print_the_lmerr_name_and_exit_1(data_dir, args, line):
    result = names(data_dir, *args)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"messengerd: {line}\n")


def test_without_a_daemon_it_says_so_in_one_line_and_exits_2(tmp_path):
    result = names(tmp_path, "list")
    assert result.returncode == 2
    assert result.stderr == (
        f"messengerd: no messengerd is running for {tmp_path} (no control socket); "
        "start it with `messengerd run`\n"
    )


# --- conflicts --------------------------------------------------------------------------------


class Owner(threading.Thread):
    """A second name-service responder holding `name`: it objects to every registration of it
    with a NEGATIVE NAME REGISTRATION RESPONSE (0xAD86), sent to the registrant alone."""

    def __init__(self, port: int, name: NetBIOSName) -> None:
        super().__init__(daemon=True)
        self.held = name
        self.heard = Listener(port)
        self.heard.sock.settimeout(0.2)
        self.objections = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as reply:
            reply.bind((SECOND_HOST, 0))
            while not self.stopping.is_set():
                try:
                    data, sender = self.heard.sock.recvfrom(2048)
                except TimeoutError:
                    continue
                packet = parse_nbns(data)
                if isinstance(packet, NameRegistration) and packet.name == self.held:
                    answer = build_negative_name_registration_response(
                        packet.trn_id, packet.name, packet.address
                    )
                    reply.sendto(answer, sender)
                    self.objections += 1

    def __enter__(self) -> Owner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join(5)
        self.heard.close()


def test_add_of_a_name_another_node_holds_fails_with_nerr_duplicate_name(daemon, data_dir):
    held = NetBIOSName(b"HELD", 0x03)
    with Owner(daemon.ports["name"], held) as owner:
        result = names(data_dir, "add", "held")
    assert owner.objections >= 1
    assert result.returncode == 1
    assert result.stderr == (
        "messengerd: NERR_DuplicateName (2297): "
        "The name is in use as a message alias on another computer.\n"
    )
    listed = [entry["name"] for entry in json.loads(names(data_dir, "list", "--json").stdout)]
    assert "HELD" not in listed, "the table is unchanged"
    assert ask(daemon.ports["name"], held) is None


def test_the_daemon_defends_its_names_against_another_node(daemon):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((SECOND_HOST, 0))
        sock.settimeout(10)
        claim = build_name_registration_request(0x4242, RECVR, SECOND_HOST)
        sock.sendto(claim, (LOOPBACK_BROADCAST, daemon.ports["name"]))
        data, sender = sock.recvfrom(2048)
    assert sender == ("127.0.0.1", daemon.ports["name"]), "answered from its unicast address"
    assert data == build_negative_name_registration_response(0x4242, RECVR, SECOND_HOST)
    assert data[2:4] == b"\xad\x86"


def test_a_second_messengerd_cannot_take_the_names_the_first_holds(daemon, tmp_path):
    """The module's daemon holds RECVR<03>; another on 127.0.0.2 shares its ports."""
    ports = (daemon.ports["name"], daemon.ports["datagram"], daemon.ports["session"])
    second_dir = tmp_path / "second"
    with DaemonProcess(
        "--alias", "RECVR", "--alias", "CAROL", data_dir=second_dir, bind=SECOND_HOST, ports=ports
    ) as second:  # fmt: skip
        listing = json.loads(names(second_dir, "list", "--json").stdout)
        assert [entry["name"] for entry in listing] == ["CAROL"], "RECVR dropped at start"
        assert any("RECVR<03> dropped" in line for line in second.log)
        result = names(second_dir, "add", "RECVR")
        assert result.returncode == 1 and "NERR_DuplicateName (2297)" in result.stderr
        assert names(second_dir, "add", "DAVE").returncode == 0, "other names are free"
    assert any("registration defended from 127.0.0.2: RECVR<03>" in line for line in daemon.log)


# --- restart, stop, and who may ask ---------------------------------------------------------


def test_restart_keeps_added_aliases_and_stop_releases_them(tmp_path):
    with DaemonProcess("--alias", "RECVR", data_dir=tmp_path) as first:
        assert names(tmp_path, "add", "BOB").returncode == 0
        listener = Listener(first.ports["name"])
        try:
            assert first.stop() == 0
            released = {listener.wait_for(NameRelease, name).name for name in (BOB, RECVR)}
        finally:
            listener.close()
    assert released == {BOB, RECVR}
    assert not (tmp_path / CONTROL_SOCKET).exists()
    with DaemonProcess("--alias", "RECVR", data_dir=tmp_path) as again:
        listing = json.loads(names(tmp_path, "list", "--json").stdout)
        assert [entry["name"] for entry in listing] == ["BOB", "RECVR"]
        assert ask(again.ports["name"], BOB) is not None


def test_another_users_request_is_refused():
    need(os.geteuid() == 0, "switching to another user needs root")
    with tempfile.TemporaryDirectory(dir="/tmp") as parent:
        # Let uid 65534 reach the socket, as a careless chmod would: the daemon's peer
        # credential check must still refuse it.
        data_dir = Path(parent) / "data"
        with DaemonProcess("--alias", "RECVR", data_dir=data_dir):
            for path, mode in (
                (parent, 0o711),
                (data_dir, 0o711),
                (data_dir / CONTROL_SOCKET, 0o666),
            ):
                os.chmod(path, mode)
            request = b'{"op": "names.add", "name": "EVIL"}\n'
            reply = request_as_other_user(str(data_dir / CONTROL_SOCKET), request)
            assert json.loads(reply)["error"] == "ERROR_ACCESS_DENIED"
            listing = json.loads(names(data_dir, "list", "--json").stdout)
            assert [entry["name"] for entry in listing] == ["RECVR"]
