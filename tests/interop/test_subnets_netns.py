"""A host on two subnets: the daemon (default bind 0.0.0.0) registers, answers and loses
its names per subnet, seen from a peer on each by tshark, nmblookup and Samba's nmbd.

198.51.100.0/25 (the host mda0 .1, peer A .2) and 198.51.100.128/25 (mdb0 .129, peer B .130),
in network namespaces with no route anywhere else (tests/netns.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import samba
from tests.conftest import need_tool
from tests.daemon_process import DaemonProcess, names_command
from tests.netns import (
    SUBNET_A,
    SUBNET_B,
    TwoSubnets,
    create_two_subnets,
    destroy_two_subnets,
)

pytestmark = [pytest.mark.interop, pytest.mark.netns]

HOST_A, PEER_A, BROADCAST_A = SUBNET_A
HOST_B, PEER_B, BROADCAST_B = SUBNET_B
READY_TIMEOUT = 30.0
"""Seconds nmbd may take to hold its names, and the daemon to follow an interface change
(its INTERFACE_POLL_INTERVAL is 10 s, and a registration takes 0.75 s)."""
POLL = 0.5
REGISTRATION_REQUESTS = (
    "nbns.flags.opcode == 5 && nbns.flags.response == 0 && nbns.flags.recdesired == 1"
)
"""Wireshark's filter for NAME REGISTRATION REQUESTs (an overwrite demand has RD clear)."""


def daemon_command(hosts: TwoSubnets, data_dir: Path, *args: str) -> list[str]:
    """`messengerd run` in the host's namespace with the default bind: every interface."""
    return [
        "ip", "netns", "exec", hosts.host,
        sys.executable, "-m", "messengerd", "-v", "run", "--json",
        "--name-port", "137", "--datagram-port", "138", "--session-port", "139",
        "--rpc-port", "0", "--data-dir", str(data_dir), *args,
    ]  # fmt: skip


def lookup(hosts: TwoSubnets, peer: str, broadcast: str, name: str) -> list[str]:
    """The addresses a broadcast `nmblookup -B` from `peer` finds for `name`<03>."""
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in(peer, nmblookup, "-B", broadcast, f"{name}#03")
    return [line.split()[0] for line in result.stdout.splitlines() if f"{name}<03>" in line]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(POLL)


class Capture:
    """tshark on a peer's veth, capturing the name service while the block runs."""

    def __init__(self, hosts: TwoSubnets, peer: str, device: str, path: Path) -> None:
        tshark = need_tool("tshark", "tshark")
        self.path = path
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", peer, tshark, "-i", device, "-f", "udp port 137",
             "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.process.stderr is not None
        for line in self.process.stderr:  # "Capturing on 'pa0'" once it listens
            if "Capturing on" in line:
                break

    def registrations(self) -> list[tuple[str, str, str, str]]:
        """(source, destination, name, registered address) of each registration request
        (RD set: an overwrite demand has it clear), as Wireshark's NBNS dissector reads them."""
        self.process.terminate()
        self.process.wait(10)
        tshark = need_tool("tshark", "tshark")
        fields = subprocess.run(
            [tshark, "-r", str(self.path), "-Y", REGISTRATION_REQUESTS, "-T", "fields",
             "-e", "ip.src", "-e", "ip.dst", "-e", "nbns.name", "-e", "nbns.addr"],
            capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip
        found = []
        for line in fields.splitlines():
            source, destination, names, address = line.split("\t")
            # The question's name, then the additional record's (with its description).
            found.append((source, destination, names.split(",")[0], address))
        return found


@pytest.fixture(scope="module")
def hosts():
    pair = create_two_subnets(f"s{os.getpid()}")
    yield pair
    destroy_two_subnets(pair)


@pytest.fixture(scope="module")
def nmbd(hosts, tmp_path_factory):
    """nmbd on peer B's subnet, holding HOLDER<03> there."""
    with samba.nmbd(hosts.peer_b, "pb0", tmp_path_factory.mktemp("nmbd")) as process:
        wait_for(lambda: lookup(hosts, hosts.host, BROADCAST_B, "HOLDER") == [PEER_B], "nmbd")
        yield process


@pytest.fixture(scope="module")
def started(hosts, nmbd, tmp_path_factory):
    """The daemon, started while tshark watched both subnets; and what tshark saw."""
    folder = tmp_path_factory.mktemp("subnets")
    captures = {
        "a": Capture(hosts, hosts.peer_a, "pa0", folder / "a.pcap"),
        "b": Capture(hosts, hosts.peer_b, "pb0", folder / "b.pcap"),
    }
    data_dir = folder / "data"
    process = DaemonProcess(
        data_dir=data_dir,
        command=daemon_command(hosts, data_dir, "--alias", "RECVR", "--alias", "HOLDER"),
    )
    time.sleep(1)  # the overwrite demands follow the last registration request
    seen = {peer: capture.registrations() for peer, capture in captures.items()}
    yield process, seen
    process.stop()


def test_registration_broadcasts_go_out_on_each_subnet_with_its_address(started):
    _, seen = started
    assert (HOST_A, BROADCAST_A, "RECVR<03>", HOST_A) in seen["a"], seen["a"]
    assert (HOST_B, BROADCAST_B, "RECVR<03>", HOST_B) in seen["b"], seen["b"]
    # Three requests a name a subnet (RFC 1002 §6), each subnet's own, none crossing over.
    assert seen["a"].count((HOST_A, BROADCAST_A, "RECVR<03>", HOST_A)) == 3
    assert all(source == HOST_A for source, *_ in seen["a"]), seen["a"]
    assert all(source == HOST_B for source, *_ in seen["b"]), seen["b"]


def test_nmblookup_from_each_peer_gets_that_subnets_address(hosts, started):
    assert lookup(hosts, hosts.peer_a, BROADCAST_A, "RECVR") == [HOST_A]
    assert lookup(hosts, hosts.peer_b, BROADCAST_B, "RECVR") == [HOST_B]


def test_a_name_nmbd_holds_on_one_subnet_is_ours_on_the_other_only(hosts, started):
    daemon, _ = started
    assert lookup(hosts, hosts.peer_a, BROADCAST_A, "HOLDER") == [HOST_A]
    assert lookup(hosts, hosts.peer_b, BROADCAST_B, "HOLDER") == [PEER_B]
    info = names_command(daemon.data_dir, "info", "HOLDER")
    assert info.returncode == 0, info.stderr
    lines = [" ".join(line.split()) for line in info.stdout.splitlines()]
    assert "Registered on mda0 (198.51.100.0/25)" in lines
    assert any(
        line.startswith("Not registered on mdb0 (198.51.100.128/25):") and PEER_B in line
        for line in lines
    ), lines
    status = subprocess.run(
        [sys.executable, "-m", "messengerd", "status", "--json", "--data-dir",
         str(daemon.data_dir)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    subnets = {s["interface"]: s for s in json.loads(status.stdout)["interfaces"]}
    assert subnets["mda0"]["names"] == ["HOLDER", "RECVR"]
    assert subnets["mdb0"]["names"] == ["RECVR"]
    assert PEER_B in subnets["mdb0"]["not_registered"]["HOLDER"]
    assert any(f"HOLDER<03> is registered by {PEER_B}" in line for line in daemon.log)


CLAIM = """\
import socket, sys
from messengerd.wire.names import alias_name
from messengerd.wire.nbns import build_name_registration_request, parse_nbns
peer, broadcast, name = sys.argv[1:]
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((peer, 0))
    sock.settimeout(1.0)
    sock.sendto(build_name_registration_request(0x4D44, alias_name(name), peer), (broadcast, 137))
    try:
        while True:
            data, source = sock.recvfrom(1024)
            answer = parse_nbns(data)
            print(source[0], type(answer).__name__, getattr(answer, "rcode", ""))
    except TimeoutError:
        pass
"""
"""A peer's registration of `name` (one request, RD set, as nmbd sends): prints each answer."""


def claim(hosts: TwoSubnets, peer: str, address: str, broadcast: str, name: str) -> list[str]:
    result = hosts.run_in(peer, sys.executable, "-c", CLAIM, address, broadcast, name)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_each_subnet_defends_only_the_names_held_there(hosts, started):
    # RCODE 6, ACT_ERR: "active error, name owned by another node" (RFC 1002 §4.2.6).
    assert claim(hosts, hosts.peer_a, PEER_A, BROADCAST_A, "RECVR") == [
        f"{HOST_A} RegistrationResponse 6"
    ]
    assert claim(hosts, hosts.peer_b, PEER_B, BROADCAST_B, "RECVR") == [
        f"{HOST_B} RegistrationResponse 6"
    ]
    # HOLDER is ours on A only: on B nmbd (its owner) objects, and we stay silent.
    assert claim(hosts, hosts.peer_a, PEER_A, BROADCAST_A, "HOLDER") == [
        f"{HOST_A} RegistrationResponse 6"
    ]
    assert f"{HOST_B} RegistrationResponse 6" not in claim(
        hosts, hosts.peer_b, PEER_B, BROADCAST_B, "HOLDER"
    )


def test_names_add_is_all_or_nothing_across_subnets(hosts, started):
    daemon, _ = started
    assert names_command(daemon.data_dir, "del", "HOLDER").returncode == 0
    result = names_command(daemon.data_dir, "add", "HOLDER")
    assert result.returncode == 1
    assert "NERR_DuplicateName (2297)" in result.stderr
    # Refused on B, so released on A too: no subnet answers for it.
    wait_for(lambda: lookup(hosts, hosts.peer_a, BROADCAST_A, "HOLDER") == [], "the release")
    assert lookup(hosts, hosts.peer_b, BROADCAST_B, "HOLDER") == [PEER_B]


def test_an_address_that_goes_and_comes_back_is_followed_without_a_restart(hosts, started):
    daemon, _ = started

    def subnets() -> list[str]:
        status = subprocess.run(
            [sys.executable, "-m", "messengerd", "status", "--json", "--data-dir",
             str(daemon.data_dir)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return [s["address"] for s in json.loads(status.stdout)["interfaces"]]

    subprocess.run(
        ["ip", "-n", hosts.host, "addr", "del", f"{HOST_B}/25", "dev", "mdb0"], check=True
    )
    wait_for(lambda: subnets() == [f"{HOST_A}/25"], "the daemon to forget mdb0")
    assert lookup(hosts, hosts.peer_b, BROADCAST_B, "RECVR") == []
    subprocess.run(
        ["ip", "-n", hosts.host, "addr", "add", f"{HOST_B}/25", "brd", BROADCAST_B, "dev", "mdb0"],
        check=True,
    )
    wait_for(
        lambda: lookup(hosts, hosts.peer_b, BROADCAST_B, "RECVR") == [HOST_B],
        "RECVR registered on mdb0 again",
    )
    assert sorted(subnets()) == [f"{HOST_A}/25", f"{HOST_B}/25"]


def test_interface_restricts_the_subnets_registered_on(tmp_path):
    hosts = create_two_subnets(f"i{os.getpid()}")
    try:
        data_dir = tmp_path / "data"
        command = daemon_command(hosts, data_dir, "--alias", "RECVR", "--interface", "mda0")
        with DaemonProcess(data_dir=data_dir, command=command):
            assert lookup(hosts, hosts.peer_a, BROADCAST_A, "RECVR") == [HOST_A]
            assert lookup(hosts, hosts.peer_b, BROADCAST_B, "RECVR") == []
    finally:
        destroy_two_subnets(hosts)


def test_a_registration_that_cannot_be_sent_is_an_error_and_not_a_name(tmp_path):
    """A --broadcast the host has no route to: every registration request fails with
    "Network is unreachable", logged naming the subnet; the name is not answered for."""
    hosts = create_two_subnets(f"u{os.getpid()}")
    try:
        subprocess.run(["ip", "-n", hosts.host, "link", "set", "mdb0", "down"], check=True)
        subprocess.run(["ip", "-n", hosts.host, "link", "set", "mda0", "down"], check=True)
        data_dir = tmp_path / "data"
        command = daemon_command(hosts, data_dir, "--alias", "RECVR", "--broadcast", BROADCAST_B)
        with DaemonProcess(data_dir=data_dir, command=command) as daemon:
            errors = [line for line in daemon.log if "could not be sent" in line]
            assert errors and "Network is unreachable" in errors[0], "\n".join(daemon.log)
            assert "RECVR<03> not registered on" in errors[0]
            listed = names_command(data_dir, "list", "--json")
            assert json.loads(listed.stdout) == [], listed.stdout + listed.stderr
    finally:
        destroy_two_subnets(hosts)
