"""Shared fixtures: the packet captures in ../shared/captures and the real tools tests need."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
from pathlib import Path

import pytest

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip with `reason` when `condition` fails; in CI (CI=true) fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def need_tool(name: str, package: str) -> str:
    """The path of a real client or server binary, e.g. smbclient from Debian's `smbclient`."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    need(path is not None, f"{name} not installed (apt-get install {package})")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def captures() -> Path:
    """The folder of real packet captures, read in place (never copied into the repo)."""
    need(CAPTURES.is_dir(), f"packet captures not found at {CAPTURES} (../shared/captures)")
    return CAPTURES


@pytest.fixture(scope="session")
def capture(captures: Path):
    """A function from a capture's file name to its path, skipping when that file is absent."""

    def find(name: str) -> Path:
        path = captures / name
        need(path.is_file(), f"capture {name} not found in {captures}")
        return path

    return find


ALLOWED_NETWORKS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("198.51.100.0/24"))
"""Where tests may send: loopback, and the namespaces' test network (TEST-NET-2)."""


def _check_destination(address: object) -> None:
    if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
        return
    try:
        host = ipaddress.ip_address(address[0])
    except ValueError:
        return  # a host name: resolution goes through the resolver, not this socket
    if not any(host in network for network in ALLOWED_NETWORKS if host.version == 4):
        raise AssertionError(f"a test tried to reach {address[0]}: only loopback is allowed")


@pytest.fixture(autouse=True, scope="session")
def loopback_only():
    """Fail any in-process send or connect beyond loopback and the test namespaces."""
    original_sendto, original_connect = socket.socket.sendto, socket.socket.connect

    def sendto(self, data, *args):
        _check_destination(args[-1])
        return original_sendto(self, data, *args)

    def connect(self, address):
        if self.family == socket.AF_INET:
            _check_destination(address)
        return original_connect(self, address)

    socket.socket.sendto, socket.socket.connect = sendto, connect
    yield
    socket.socket.sendto, socket.socket.connect = original_sendto, original_connect


PURE_TIER = "tests/unit/"
"""The pure tier: wire, protocol and core tested with bytes, no sockets and no processes."""


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say how long the pure tier took, so that it stays a matter of seconds."""
    seconds = 0.0
    tests = set()
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            if nodeid.startswith(PURE_TIER) and hasattr(report, "duration"):
                seconds += report.duration
                tests.add(nodeid)
    if tests:
        terminalreporter.write_line(
            f"pure tier ({PURE_TIER}): {len(tests)} tests in {seconds:.1f} s"
        )


@pytest.fixture(scope="session")
def deployment():
    """messengerd installed by the README's Quick start commands into a venv every user can
    read (tests/deployed.py); needs root, Debian's python3 with python3-venv, and pip's index."""
    from tests.deployed import deploy, public_folder

    with public_folder() as public:
        yield deploy(public)
