"""`messengerd names` on the standard ports between two namespaced hosts, seen by Samba.

nmblookup on the client host checks what `names add/del` did; nmbd on the client host,
holding a name, checks that a registration it objects to makes `names add` fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import samba
from tests.conftest import need_tool
from tests.daemon_process import DaemonProcess, names_command
from tests.netns import BROADCAST, CLIENT_ADDRESS, SERVER_ADDRESS, create_pair, destroy_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]

NMBD_READY_TIMEOUT = 30.0
"""Seconds nmbd may take to register its names (it broadcasts three times, 2 s apart)."""
POLL_INTERVAL = 0.5


@pytest.fixture(scope="module")
def hosts():
    pair = create_pair(f"n{os.getpid()}")
    yield pair
    destroy_pair(pair)


@pytest.fixture(scope="module")
def daemon(hosts, tmp_path_factory):
    process = DaemonProcess(
        "--alias", "RECVR",
        data_dir=tmp_path_factory.mktemp("names"),
        bind=SERVER_ADDRESS, broadcast=BROADCAST, ports=(137, 138, 139), netns=hosts.server,
    )  # fmt: skip
    yield process
    process.stop()


def node_status_aliases(hosts) -> list[str]:
    """The <03> names `nmblookup -A` lists for the server, as Samba parses its answer."""
    nmblookup = need_tool("nmblookup", "smbclient")
    result = hosts.run_in_client(nmblookup, "-A", SERVER_ADDRESS)
    output = result.stdout.decode()
    assert "<ACTIVE>" in output, output + result.stderr.decode()
    return [line.split()[0] for line in output.splitlines() if "<03>" in line]


def resolves(hosts, name: str) -> bool:
    nmblookup = need_tool("nmblookup", "smbclient")
    output = hosts.run_in_client(nmblookup, "-U", SERVER_ADDRESS, f"{name}#03").stdout.decode()
    return f"{SERVER_ADDRESS} {name}<03>" in output


def listed(daemon) -> list[str]:
    result = names_command(daemon.data_dir, "list", "--json")
    assert result.returncode == 0, result.stderr
    return [entry["name"] for entry in json.loads(result.stdout)]


def test_names_add_and_del_show_in_nmblookup(hosts, daemon):
    result = names_command(daemon.data_dir, "add", "bob")
    assert result.returncode == 0, result.stderr
    assert node_status_aliases(hosts) == listed(daemon) == ["BOB", "RECVR"]
    assert resolves(hosts, "BOB")
    result = names_command(daemon.data_dir, "del", "BOB")
    assert result.returncode == 0, result.stderr
    assert node_status_aliases(hosts) == listed(daemon) == ["RECVR"]
    assert not resolves(hosts, "BOB")


@pytest.fixture
def nmbd(hosts, tmp_path):
    """Samba's nmbd on the client host, holding HOLDER<00>, <03> and <20>."""
    with samba.nmbd(hosts.client, "mdc0", tmp_path) as process:
        _wait_until_it_answers(hosts, process, tmp_path)
        yield process


def _wait_until_it_answers(hosts, process: subprocess.Popen, tmp_path: Path) -> None:
    nmblookup = need_tool("nmblookup", "smbclient")
    deadline = time.monotonic() + NMBD_READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nmbd exited: {process.communicate()[0].decode()}")
        # A broadcast query from the server host: nmbd answers one only for the names it
        # holds on the subnet, which it has once its own registration broadcasts are done
        # (a unicast query is answered earlier, before nmbd would defend the name).
        query = subprocess.run(
            ["ip", "netns", "exec", hosts.server, nmblookup, "-B", BROADCAST, "HOLDER#03"],
            capture_output=True, timeout=30,
        )  # fmt: skip
        if f"{CLIENT_ADDRESS} HOLDER<03>" in query.stdout.decode():
            return
        time.sleep(POLL_INTERVAL)
    raise AssertionError(f"nmbd never answered for HOLDER<03> (files in {tmp_path})")


def test_a_name_nmbd_holds_cannot_be_added(daemon, nmbd):
    result = names_command(daemon.data_dir, "add", "HOLDER")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr == (
        "messengerd: NERR_DuplicateName (2297): "
        "The name is in use as a message alias on another computer.\n"
    )
    assert "HOLDER" not in listed(daemon)
    assert any(f"HOLDER<03> is registered by {CLIENT_ADDRESS}" in line for line in daemon.log), (
        "\n".join(daemon.log)
    )
