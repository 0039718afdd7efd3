"""Opening the listeners' sockets, and what to tell the user when one cannot be opened."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from collections.abc import Callable

PORT_OPTIONS = "--name-port, --datagram-port, --session-port and --rpc-port"


class ListenError(Exception):
    """A port could not be opened; the message says why and what to do, in one line."""


def listen_error(service: str, host: str, port: int, exc: OSError) -> ListenError:
    """The one line a user reads when `service` cannot listen on (host, port)."""
    protocol = "tcp" if service == "session" else "udp"
    where = f"port {port}/{protocol} ({service} service) on {host}"
    if exc.errno == errno.EADDRINUSE:
        return ListenError(
            f"{where} is already in use (Samba's nmbd/smbd or another messengerd?): "
            f"stop that program, or choose free ports with {PORT_OPTIONS}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        # Never setcap on the system's python (every script would get the capability), nor
        # on a plain venv's: its python is a symlink to the system's, which setcap follows.
        return ListenError(
            f"no permission to listen on {where}: run it as the messengerd service "
            f"(service/README.md), or give the capability to a venv's own copy of python "
            f"only (python3 -m venv --copies VENV; setcap cap_net_bind_service=ep "
            f"VENV/bin/python3), or run it under authbind --deep, or use high ports with "
            f"{PORT_OPTIONS}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(f"{host} is not an address of this host: check --bind")
    return ListenError(f"cannot listen on {where}: {exc.strerror or exc}")


WINSOCK_SO_REUSEADDR = 0x0004
"""winsock2.h's SO_REUSEADDR (Linux's is 2: the constant is Windows' own, named here)."""
SO_EXCLUSIVEADDRUSE = ~WINSOCK_SO_REUSEADDR
"""winsock2.h: ((int)(~SO_REUSEADDR)). On Windows, a socket with it set cannot be shared by
anyone, SO_REUSEADDR or not; without it, another program's SO_REUSEADDR socket could take our
port from under us (Microsoft: "Using SO_REUSEADDR and SO_EXCLUSIVEADDRUSE")."""


def claim_port(sock: socket.socket, *, shared: bool, platform: str = sys.platform) -> None:
    """Before bind(): the options that say who else may use the port.

    `shared` is for the broadcast address's socket only (nmbd-like daemons share it). Every
    other socket is ours alone: on Windows with SO_EXCLUSIVEADDRUSE; on POSIX by leaving
    SO_REUSEADDR off a UDP socket (on Linux it would let us share a UDP port with nmbd
    silently), and on a TCP listener SO_REUSEADDR only lets a restart rebind at once.
    """
    if platform == "win32":
        if not shared:
            sock.setsockopt(socket.SOL_SOCKET, SO_EXCLUSIVEADDRUSE, 1)
    elif shared or sock.type == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)


def udp_socket(host: str, port: int, *, shared: bool = False) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port) that may send broadcasts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        claim_port(sock, shared=shared)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def tcp_listener(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on (host, port), ours alone (claim_port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        claim_port(sock, shared=False)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def open_udp(
    service: str,
    hosts: list[str],
    port: int,
    factory: Callable[[], asyncio.DatagramProtocol],
) -> tuple[int, list[asyncio.DatagramTransport], list[asyncio.DatagramProtocol]]:
    """Bind `service`'s UDP port on each of `hosts` (the unicast address first, then its
    broadcast address); the port bound, the transports and their protocols.

    A socket bound to a unicast address never sees broadcasts (Linux, BSD), so a daemon
    bound to one interface listens on that interface's broadcast address as well, the way
    nmbd does. Every protocol answers from the first (unicast) socket: a reply from the
    broadcast socket would carry the broadcast address as its source. ListenError (one
    line, actionable) when a port cannot be opened; what was opened is closed again.
    """
    loop = asyncio.get_running_loop()
    transports: list[asyncio.DatagramTransport] = []
    protocols: list[asyncio.DatagramProtocol] = []
    try:
        for host in hosts:
            try:
                # Only the broadcast address is shared, as nmbd-like daemons share it; the
                # unicast address stays exclusive so a taken port is still reported.
                sock = udp_socket(host, port, shared=bool(transports))
            except OSError as exc:
                raise listen_error(service, host, port, exc) from None
            port = sock.getsockname()[1]
            transport, protocol = await loop.create_datagram_endpoint(factory, sock=sock)
            transports.append(transport)
            protocols.append(protocol)
            protocol.transport = transports[0]  # type: ignore[attr-defined]
    except BaseException:
        for transport in transports:
            transport.close()
        raise
    return port, transports, protocols
