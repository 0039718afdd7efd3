"""Which subnets `interfaces = [...]` / `--interface` take: smb.conf's rules."""

from __future__ import annotations

import ipaddress

from messengerd.transport.netif import Subnet, select_subnets

FOUND = [
    Subnet("eth0", ipaddress.IPv4Interface("198.51.100.1/25"), "198.51.100.127"),
    Subnet("eth1", ipaddress.IPv4Interface("198.51.100.129/25"), "198.51.100.255"),
    Subnet("tun0", ipaddress.IPv4Interface("198.51.100.200/30"), "198.51.100.203"),
]


def names(subnets: list[Subnet]) -> list[str]:
    return [subnet.interface for subnet in subnets]


def test_no_entries_take_every_subnet():
    assert select_subnets(FOUND, []) == FOUND


def test_names_with_wildcards_networks_and_addresses_select():
    assert names(select_subnets(FOUND, ["eth*"])) == ["eth0", "eth1"]
    assert names(select_subnets(FOUND, ["198.51.100.128/25"])) == ["eth1", "tun0"]
    assert names(select_subnets(FOUND, ["198.51.100.1"])) == ["eth0"]
    assert names(select_subnets(FOUND, ["tun0", "198.51.100.0/25"])) == ["eth0", "tun0"]


def test_an_entry_matching_nothing_selects_nothing():
    assert select_subnets(FOUND, ["wlan0"]) == []


def test_a_subnet_label_names_its_interface_and_network():
    assert FOUND[1].label() == "eth1 (198.51.100.128/25)"
    bare = Subnet("", ipaddress.IPv4Interface("127.0.0.1/8"), "127.255.255.255")
    assert bare.label() == "127.0.0.0/8"
