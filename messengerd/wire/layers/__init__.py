"""scapy layers: the reference definition of every packet messengerd reads or sends.

Used by `messengerd decode`, the tests and users' scapy sessions, never by the daemon's
runtime, which reads and builds the same bytes with the struct codecs in messengerd.wire.
Importing this package puts every layer's bindings in place, so that `NBTSession(frame)` or
`NameServiceHeader(data)` dissects a whole packet.
"""

from messengerd.wire.layers import datagram, nbns, nbss, smb

__all__ = ["datagram", "nbns", "nbss", "smb"]
