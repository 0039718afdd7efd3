"""`messengerd doctor` names Samba's nmbd holding 137/udp, inside a network namespace.

nmbd runs on the client host of a namespace pair (198.51.100.0/24 only), as
test_names_netns runs it; doctor runs on that host with the standard ports and must name
nmbd with its pid and say how to stop it. doctor only tries to bind: it sends nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.interop.test_names_netns import nmbd  # noqa: F401 - the fixture, shared
from tests.netns import BROADCAST, CLIENT_ADDRESS, create_pair, destroy_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]


@pytest.fixture(scope="module")
def hosts():
    pair = create_pair(f"d{os.getpid()}")
    yield pair
    destroy_pair(pair)


def test_doctor_names_nmbd_holding_the_name_service_port(hosts, request, tmp_path):
    holder = request.getfixturevalue("nmbd")  # test_names_netns's nmbd, on our hosts
    result = subprocess.run(
        ["ip", "netns", "exec", hosts.client, sys.executable, "-m", "messengerd", "doctor",
         "--json", "--bind", CLIENT_ADDRESS, "--broadcast", BROADCAST,
         "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    found = {check["name"]: check for check in json.loads(result.stdout)["checks"]}
    name = found["name service port"]
    assert name["ok"] is False
    assert name["detail"].startswith(
        f"137/udp (name service) on {CLIENT_ADDRESS} is held by nmbd (pid {holder.pid})"
    ), name["detail"]
    assert name["detail"].endswith(
        ": stop it (Samba: `systemctl stop nmbd smbd`, or `disable netbios = yes` in "
        "smb.conf), or choose another port with --name-port"
    )
    assert found["datagram service port"]["detail"].startswith(
        f"138/udp (datagram service) on {CLIENT_ADDRESS} is held by nmbd"
    )
    assert found["session service port"] == {
        "name": "session service port", "ok": True,
        "detail": f"139/tcp (session service) on {CLIENT_ADDRESS} is free",
    }  # fmt: skip
