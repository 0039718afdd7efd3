"""`messengerd doctor` for real on Linux: ports held by real processes, named from /proc."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess

HOLDER = """\
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 0))
tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
tcp.bind(("127.0.0.1", 0))
tcp.listen(1)
print(udp.getsockname()[1], tcp.getsockname()[1], flush=True)
sys.stdin.read()
"""
"""A process that holds a UDP and a listening TCP port on 127.0.0.1 until its stdin ends."""


def doctor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "messengerd", "doctor", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def checks(result: subprocess.CompletedProcess) -> dict[str, dict]:
    document = json.loads(result.stdout)
    assert set(document) == {"checks"}
    for check in document["checks"]:
        assert set(check) == {"name", "ok", "detail"}
    return {check["name"]: check for check in document["checks"]}


@pytest.fixture
def holder(tmp_path: Path):
    """The holder under a name of its own: /proc/PID/comm is the name it was executed by."""
    program = tmp_path / "md-holder"
    program.symlink_to(os.path.realpath(sys.executable))
    process = subprocess.Popen(
        [str(program), "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    udp, tcp = (int(port) for port in process.stdout.readline().split())
    yield process, udp, tcp
    process.communicate("")


def test_a_port_another_process_holds_is_named_with_that_process(holder, tmp_path):
    process, udp, tcp = holder
    result = doctor(
        "--json", "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
        "--name-port", str(udp), "--datagram-port", str(free_port(socket.SOCK_DGRAM)),
        "--session-port", str(tcp), "--data-dir", str(tmp_path / "data"),
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    found = checks(result)
    assert found["name service port"] == {
        "name": "name service port",
        "ok": False,
        "detail": f"{udp}/udp (name service) on 127.0.0.1 is held by md-holder "
        f"(pid {process.pid}): stop it, or choose another port with --name-port",
    }
    assert found["session service port"]["detail"] == (
        f"{tcp}/tcp (session service) on 127.0.0.1 is held by md-holder "
        f"(pid {process.pid}): stop it, or choose another port with --session-port"
    )
    assert found["datagram service port"]["ok"] is True
    assert found["data directory"] == {
        "name": "data directory", "ok": True, "detail": f"{tmp_path / 'data'} will be created",
    }  # fmt: skip


def test_a_holder_on_the_wildcard_address_blocks_the_bind_address_too(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wildcard:
        wildcard.bind(("0.0.0.0", 0))
        port = wildcard.getsockname()[1]
        result = doctor("--json", "--bind", "127.0.0.1", "--name-port", str(port),
                        "--datagram-port", "0", "--session-port", "0",
                        "--data-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 1
    detail = checks(result)["name service port"]["detail"]
    assert detail.startswith(f"{port}/udp (name service) on 127.0.0.1 is held by ")
    assert f"(pid {os.getpid()}): stop it" in detail  # this test process holds it


def test_all_clear_exits_0_and_prints_one_line_a_check(tmp_path):
    result = doctor("--bind", "127.0.0.1", "--name-port", "0", "--datagram-port", "0",
                    "--session-port", "0", "--data-dir", str(tmp_path))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ok    name service port: name service on any free port (0)"
    assert f"ok    data directory: {tmp_path} is writable" in lines
    assert all(line.startswith("ok    ") for line in lines)


def test_the_running_daemons_own_ports_pass(tmp_path):
    with DaemonProcess("--alias", "DOCTOR", data_dir=tmp_path) as daemon:
        pid = daemon.process.pid
        result = doctor(
            "--json", "--bind", "127.0.0.1", "--name-port", str(daemon.ports["name"]),
            "--datagram-port", str(daemon.ports["datagram"]),
            "--session-port", str(daemon.ports["session"]), "--data-dir", str(tmp_path),
        )  # fmt: skip
    assert result.returncode == 0, result.stdout
    found = checks(result)
    assert found["session service port"]["detail"].endswith(
        f"is held by the running messengerd (pid {pid})"
    )
    assert found["control channel"]["detail"] == f"messengerd (pid {pid}) answers for {tmp_path}"


def test_fixing_netbt_is_for_windows_only(tmp_path):
    result = doctor("--fix-netbt", "Ethernet", "--data-dir", str(tmp_path))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        "messengerd: --fix-netbt and --restore-netbt change Windows' NetBT; there is none here\n"
    )
