"""On the standard ports, between two namespaced hosts: nmblookup and smbclient -M see us."""

from __future__ import annotations

import os

import pytest

from tests.conftest import need_tool
from tests.daemon_process import DaemonProcess
from tests.netns import BROADCAST, SERVER_ADDRESS, create_pair, destroy_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]


@pytest.fixture(scope="module")
def hosts():
    pair = create_pair(str(os.getpid()))
    yield pair
    destroy_pair(pair)


@pytest.fixture(scope="module")
def daemon(hosts, tmp_path_factory):
    process = DaemonProcess(
        "--alias", "BOB", "--alias", "RECVR",
        data_dir=tmp_path_factory.mktemp("data"),
        bind=SERVER_ADDRESS, broadcast=BROADCAST, ports=(137, 138, 139), netns=hosts.server,
    )  # fmt: skip
    yield process
    process.stop()


def test_nmblookup_unicast_query_resolves_the_alias(hosts, daemon):
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in_client(nmblookup, "-U", SERVER_ADDRESS, "BOB#03")
    output = result.stdout.decode()
    assert f"{SERVER_ADDRESS} BOB<03>" in output, output + result.stderr.decode()


def test_nmblookup_broadcast_query_resolves_the_alias(hosts, daemon):
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in_client(nmblookup, "-B", BROADCAST, "RECVR#03")
    output = result.stdout.decode()
    assert f"{SERVER_ADDRESS} RECVR<03>" in output, output + result.stderr.decode()


def test_nmblookup_unknown_name_is_not_found(hosts, daemon):
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in_client(nmblookup, "-U", SERVER_ADDRESS, "CAROL#03")
    assert "CAROL<03>" not in result.stdout.decode().replace("name_query failed", "")
    assert "failed to find name CAROL#03" in result.stdout.decode()


def test_nmblookup_node_status_lists_the_aliases(hosts, daemon):
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in_client(nmblookup, "-A", SERVER_ADDRESS)
    output = result.stdout.decode()
    rows = [line.split() for line in output.splitlines() if "<03>" in line]
    assert [row[0] for row in rows] == ["BOB", "RECVR"], output
    assert all("<ACTIVE>" in " ".join(row) for row in rows), output


def test_smbclient_on_port_139_with_session_request_delivers(hosts, daemon):
    smbclient = need_tool("smbclient", "smbclient")
    result = hosts.run_in_client(
        smbclient, "-M", "BOB", "-I", SERVER_ADDRESS, "-N", "-U", "ALICE",
        input=b"across the veth pair",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()
    message = daemon.next_message()
    assert message["text"] == "across the veth pair"
    assert message["peer"].startswith("198.51.100.2:")
