"""Who may share our ports: the socket options the listeners set before bind()."""

from __future__ import annotations

import errno
import socket

import pytest

from messengerd.transport.sockets import (
    SO_EXCLUSIVEADDRUSE,
    WINSOCK_SO_REUSEADDR,
    claim_port,
    listen_error,
    tcp_listener,
    udp_socket,
)
from tests.unit.windows.headers import defines, header


def test_a_unicast_udp_port_of_ours_cannot_be_shared_on_linux():
    ours = udp_socket("127.0.0.1", 0)
    try:
        assert ours.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 0
        port = ours.getsockname()[1]
        with pytest.raises(OSError) as taken:
            udp_socket("127.0.0.1", port)
        assert taken.value.errno == errno.EADDRINUSE
        assert "already in use" in str(listen_error("name", "127.0.0.1", port, taken.value))
    finally:
        ours.close()


def test_the_broadcast_address_socket_is_shared_as_nmbd_shares_it():
    first = udp_socket("127.255.255.255", 0, shared=True)
    try:
        port = first.getsockname()[1]
        second = udp_socket("127.255.255.255", port, shared=True)
        second.close()
    finally:
        first.close()


def test_the_session_listener_rebinds_at_once_after_a_restart():
    listener = tcp_listener("127.0.0.1", 0, 8)
    port = listener.getsockname()[1]
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    listener.close()
    tcp_listener("127.0.0.1", port, 8).close()


class RecordingSocket:
    """Records setsockopt() as Winsock takes it; on Windows SO_EXCLUSIVEADDRUSE is
    ((int)(~SO_REUSEADDR)) (winsock2.h) and must be set before bind() (Microsoft, "Using
    SO_REUSEADDR and SO_EXCLUSIVEADDRUSE")."""

    def __init__(self, kind: int) -> None:
        self.type = kind
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_on_windows_every_unshared_socket_is_exclusive_and_none_reuses(kind: int):
    sock = RecordingSocket(kind)
    claim_port(sock, shared=False, platform="win32")  # type: ignore[arg-type]
    assert sock.options == [(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)]
    winsock = defines(header("winsock2.h"))
    assert winsock["SO_REUSEADDR"] == WINSOCK_SO_REUSEADDR
    assert "#define SO_EXCLUSIVEADDRUSE ((int)(~SO_REUSEADDR))" in header("winsock2.h")
    shared = RecordingSocket(socket.SOCK_DGRAM)
    claim_port(shared, shared=True, platform="win32")  # type: ignore[arg-type]
    assert shared.options == []
