"""Which IPv4 address and broadcast address an interface has, for answers and registrations."""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

SIOCGIFADDR = 0x8915
SIOCGIFNETMASK = 0x891B
"""Linux ioctls (linux/sockios.h) reading an interface's IPv4 address and netmask."""
IFREQ_SIZE = 40
"""sizeof(struct ifreq) on 64-bit Linux: 16-byte name and a 24-byte union."""

LIMITED_BROADCAST = "255.255.255.255"
LOOPBACK_NETWORK = ipaddress.IPv4Network("127.0.0.0/8")


def interfaces() -> list[tuple[str, ipaddress.IPv4Interface]]:
    """(name, address/prefix) of every interface holding an IPv4 address; empty off Linux."""
    if not sys.platform.startswith("linux"):
        return []
    import fcntl

    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                address = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)[20:24]
                netmask = fcntl.ioctl(probe.fileno(), SIOCGIFNETMASK, request)[20:24]
            except OSError:
                continue
            found.append(
                (
                    name,
                    ipaddress.IPv4Interface(
                        f"{socket.inet_ntoa(address)}/{socket.inet_ntoa(netmask)}"
                    ),
                )
            )
    return found


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
