"""Two test hosts in network namespaces joined by a veth pair, on 198.51.100.0/24 only.

Nothing crosses into the machine's own network: the namespaces have no route out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from tests.conftest import need

NETWORK = "198.51.100.0/24"
SERVER_ADDRESS = "198.51.100.1"
CLIENT_ADDRESS = "198.51.100.2"
BROADCAST = "198.51.100.255"


@dataclass
class HostPair:
    server: str
    client: str

    def run_in_client(self, *command: str, input: bytes | None = None, timeout: float = 30):
        """Run a command on the client host; CompletedProcess with bytes output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.client, *command],
            input=input,
            capture_output=True,
            timeout=timeout,
        )


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def create_pair(tag: str) -> HostPair:
    """Make the namespaces md-s-TAG and md-c-TAG (skip, or fail in CI, without root/ip)."""
    need(os.geteuid() == 0, "network namespaces need root")
    need(shutil.which("ip") is not None, "ip not installed (apt-get install iproute2)")
    pair = HostPair(server=f"md-s-{tag}", client=f"md-c-{tag}")
    destroy_pair(pair)
    _ip("netns", "add", pair.server)
    _ip("netns", "add", pair.client)
    _ip("link", "add", "mds0", "netns", pair.server, "type", "veth",
        "peer", "name", "mdc0", "netns", pair.client)  # fmt: skip
    for namespace, device, address in (
        (pair.server, "mds0", SERVER_ADDRESS),
        (pair.client, "mdc0", CLIENT_ADDRESS),
    ):
        _ip("-n", namespace, "addr", "add", f"{address}/24", "brd", BROADCAST, "dev", device)
        _ip("-n", namespace, "link", "set", device, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
    return pair


def destroy_pair(pair: HostPair) -> None:
    for namespace in (pair.server, pair.client):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


SUBNET_A = ("198.51.100.1", "198.51.100.2", "198.51.100.127")
SUBNET_B = ("198.51.100.129", "198.51.100.130", "198.51.100.255")
"""Two /25 subnets: (the multi-homed host's address, its peer's, the broadcast address)."""


@dataclass
class TwoSubnets:
    """A host on two subnets (its interfaces mda0 and mdb0) and a peer on each."""

    host: str
    peer_a: str
    peer_b: str

    def run_in(self, namespace: str, *command: str, timeout: float = 30):
        """Run a command in one of the namespaces; CompletedProcess with text output."""
        return subprocess.run(
            ["ip", "netns", "exec", namespace, *command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def create_two_subnets(tag: str) -> TwoSubnets:
    """md-h-TAG on 198.51.100.0/25 (mda0) and 198.51.100.128/25 (mdb0), with md-a-TAG and
    md-b-TAG the peers on each; no routes beyond the two subnets, no forwarding."""
    need(os.geteuid() == 0, "network namespaces need root")
    need(shutil.which("ip") is not None, "ip not installed (apt-get install iproute2)")
    hosts = TwoSubnets(host=f"md-h-{tag}", peer_a=f"md-a-{tag}", peer_b=f"md-b-{tag}")
    destroy_two_subnets(hosts)
    for namespace in (hosts.host, hosts.peer_a, hosts.peer_b):
        _ip("netns", "add", namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")
    for (host_address, peer_address, broadcast), device, peer_device, peer in (
        (SUBNET_A, "mda0", "pa0", hosts.peer_a),
        (SUBNET_B, "mdb0", "pb0", hosts.peer_b),
    ):
        _ip("link", "add", device, "netns", hosts.host, "type", "veth",
            "peer", "name", peer_device, "netns", peer)  # fmt: skip
        for namespace, name, address in (
            (hosts.host, device, host_address),
            (peer, peer_device, peer_address),
        ):
            _ip("-n", namespace, "addr", "add", f"{address}/25", "brd", broadcast, "dev", name)
            _ip("-n", namespace, "link", "set", name, "up")
    return hosts


def destroy_two_subnets(hosts: TwoSubnets) -> None:
    for namespace in (hosts.host, hosts.peer_a, hosts.peer_b):
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)
