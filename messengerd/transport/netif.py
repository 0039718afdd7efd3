"""Which IPv4 address and broadcast address an interface has, for answers and registrations."""

from __future__ import annotations

import array
import ipaddress
import socket
import struct
import sys

SIOCGIFCONF = 0x8912
SIOCGIFNETMASK = 0x891B
"""Linux ioctls (linux/sockios.h): list the IPv4 addresses with their interface names, and
read one interface's netmask."""
IFREQ_SIZE = 40
"""sizeof(struct ifreq) on 64-bit Linux: 16-byte name and a 24-byte union."""
IFNAMSIZ = 16
"""Bytes of an interface name in struct ifreq, its NUL included (linux/if.h)."""
IFCONF = "iL"
"""struct ifconf (linux/if.h): int ifc_len, then the buffer's address (native alignment)."""
MAX_ADDRESSES = 1024
"""IPv4 addresses listed at most (one ifreq each); a host with more is not one we serve."""

LIMITED_BROADCAST = "255.255.255.255"
LOOPBACK_NETWORK = ipaddress.IPv4Network("127.0.0.0/8")


def interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(name, address/prefix) of every IPv4 address on this host's interfaces; empty off Linux.

    SIOCGIFCONF asks the AF_INET socket itself. socket.if_nameindex() would ask over a
    netlink socket, which the systemd unit's RestrictAddressFamilies=AF_INET AF_UNIX refuses.
    """
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        buffer = array.array("B", bytes(MAX_ADDRESSES * IFREQ_SIZE))
        address, size = buffer.buffer_info()
        request = struct.pack(IFCONF, size, address)
        length = struct.unpack(IFCONF, fcntl.ioctl(probe.fileno(), SIOCGIFCONF, request))[0]
        listed = buffer.tobytes()[:length]
        for offset in range(0, length - IFREQ_SIZE + 1, IFREQ_SIZE):
            ifreq = listed[offset : offset + IFREQ_SIZE]
            ip = _sockaddr_in_address(ifreq)
            try:
                netmask = _sockaddr_in_address(fcntl.ioctl(probe.fileno(), SIOCGIFNETMASK, ifreq))
            except OSError:
                continue
            name = ifreq[:IFNAMSIZ].split(b"\0", 1)[0].decode(errors="replace")
            found.append((name, ipaddress.IPv4Interface(f"{ip}/{netmask}")))
    return found


def _sockaddr_in_address(ifreq: bytes) -> str:
    """The dotted address in an ifreq's union, a struct sockaddr_in: family, port, address."""
    return socket.inet_ntoa(ifreq[IFNAMSIZ + 4 : IFNAMSIZ + 8])


def broadcast_for(bind: str) -> str:
    """The broadcast address of the interface `bind` is on.

    127.0.0.1 gives 127.255.255.255. For 0.0.0.0 the one non-loopback interface's
    broadcast is used, or the limited broadcast where there are several. Raises
    ValueError when `bind` is on no interface, so a LAN address is never guessed.
    """
    address = ipaddress.IPv4Address(bind)
    if address in LOOPBACK_NETWORK:
        return str(LOOPBACK_NETWORK.broadcast_address)
    found = interfaces()
    if address.is_unspecified:
        outside = [iface for _, iface in found if iface.ip not in LOOPBACK_NETWORK]
        if len(outside) == 1:
            return str(outside[0].network.broadcast_address)
        return LIMITED_BROADCAST
    for _, iface in found:
        if iface.ip == address:
            return str(iface.network.broadcast_address)
    raise ValueError(f"{bind} is not an address of this host's interfaces; pass --broadcast")


def local_address_for(peer: str) -> str:
    """The local address the kernel would use to reach `peer` (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((peer, 9))
            return probe.getsockname()[0]
        except OSError:
            return "0.0.0.0"
