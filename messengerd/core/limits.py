"""Every bound messengerd puts on what a peer can make it hold, in one place.

Protocol-fixed sizes (a name is 15 bytes, a D7 block carries at most 128) live beside the
packets they describe in `messengerd.wire`; these are the receiver's own choices.
"""

MAX_TEXT_BYTES = 4096
"""Text bytes kept per message. Windows' popup showed at most 4095 characters (PROTOCOL.md §5);
smbclient -M sends at most 1600 bytes and Windows at most 652 ([MS-MSRP] §3.2.4.4)."""

MAX_FIELD_BYTES = 256
"""Bytes of a From or To field. Names are 15 bytes, but senders put user names and
`DOMAIN\\user` there; anything longer is not a name."""

MAX_SESSION_FRAME = 8192
"""Largest NBSS session message accepted. A D0 with 128 text bytes and two full fields is
under 600 bytes; the RFC's 17-bit length (131071) is no reason to buffer that much."""

MAX_SESSIONS = 2048
"""Concurrent TCP sessions; the next connection is closed at once with a log line."""

SESSION_IDLE_TIMEOUT = 120.0
"""Seconds a session may sit with no complete frame before it is closed."""

REASSEMBLY_TIMEOUT = 2.0
"""Seconds to wait for a datagram's missing fragments (RFC 1002 §4.4, PROTOCOL.md §5)."""

MAX_PENDING_DATAGRAMS = 256
"""Fragmented datagrams reassembled at once; the oldest is dropped to admit a new one."""

MAX_DATAGRAM_BYTES = 8192
"""Largest reassembled datagram (user data) accepted. RFC 1002's own limit is 64 KiB."""
