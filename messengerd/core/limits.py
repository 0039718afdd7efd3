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
"""Concurrent TCP sessions; the next connection is closed at once (and counted in the log).
Fewer when the open-file limit is lower: see FD_RESERVE."""

MAX_SESSIONS_PER_SOURCE = 64
"""Concurrent TCP sessions from one address, so that one host cannot take them all: a
sender waits for each reply, so even a busy server needs a few; 64 leaves room for many
senders behind one NAT or VPN concentrator."""

MIN_SESSIONS = 16
"""Sessions allowed however low the open-file limit: below this the daemon is of no use,
and running out of descriptors pauses accepting (ACCEPT_RETRY_DELAY) rather than failing."""

FD_RESERVE = 256
"""Open files kept for everything but sessions when the session limit is sized to the
open-file limit (RLIMIT_NOFILE): 16 once the first message is stored (stdio, the event
loop, the UDP and listening sockets, the inbox's 3; measured on Linux), the inbox's
readers, the control channel (64 connections), and the sinks at their concurrency limits
(a command's process holds 3 pipes, a forward a socket or two), with room to spare."""

ACCEPT_RETRY_DELAY = 0.5
"""Seconds accepting pauses when the process or system is out of file descriptors; the
waiting connections stay in the listen backlog meanwhile."""

SESSION_IDLE_TIMEOUT = 120.0
"""Seconds a session may sit with no complete frame before it is closed; the settings'
`[daemon] session_idle_timeout` changes it."""

REASSEMBLY_TIMEOUT = 2.0
"""Seconds to wait for a datagram's missing fragments (RFC 1002 §4.4, PROTOCOL.md §5)."""

MAX_PENDING_DATAGRAMS = 256
"""Fragmented datagrams reassembled at once; the oldest is dropped to admit a new one."""

MAX_DATAGRAM_BYTES = 8192
"""Largest reassembled datagram (user data) accepted. RFC 1002's own limit is 64 KiB."""

MAX_RPC_REQUEST_BYTES = 8192
"""Largest NetrSendMessage or ept_map request body (the NDR stub, reassembled) accepted. Three
strings at MAX_FIELD_BYTES, MAX_FIELD_BYTES and MAX_TEXT_BYTES with their 12-byte headers and
padding need 4656; Windows sent at most 652 text bytes ([MS-MSRP] §3.2.4.4)."""

MAX_RPC_DATAGRAM_BYTES = 80 + MAX_RPC_REQUEST_BYTES
"""Largest connectionless RPC datagram read: the 80-byte header (C706 §12.5.1) and a whole
request body. Anything longer is dropped unread."""

MAX_RPC_FRAGMENTS = 16
"""Fragments kept per fragmented request. Senders fill fragments to their path size (C706's
must-receive fragment is 1464 bytes), so MAX_RPC_REQUEST_BYTES needs 6; 16 leaves room for
senders that cut smaller."""

MAX_RPC_REASSEMBLIES = 64
"""Fragmented requests reassembled at once (at most 64 x MAX_RPC_REQUEST_BYTES held); the
oldest is dropped to admit a new one."""

RPC_REASSEMBLY_TIMEOUT = 30.0
"""Seconds from a request's first fragment to its last. The DCE reference client retransmits
unacknowledged fragments every 2 to 8 s; 30 s lets a lossy sender retry a few times."""

MAX_RPC_PENDING_CALLS = 256
"""Calls delivered and waiting for the daemon's answer (stored or refused); a new call beyond
them is dropped unanswered, and its sender's retransmission comes back later."""

MAX_RPC_REPLY_CACHE = 1024
"""Answered calls whose reply is kept for retransmitted requests and pings (C706 ch. 10: a
server holds a reply until the client's ack or next call); the oldest is forgotten first."""

RPC_REPLY_CACHE_TIMEOUT = 60.0
"""Seconds a reply is kept for retransmissions: the DCE reference server's default
receive idle time (60 s, dgscall.c), after which a client has given up on the call anyway."""

MAX_EPT_TOWER_BYTES = 512
"""Largest protocol tower read from an ept_map request (C706 Appendix L). msgsvcsend's
ncadg_ip_udp tower is 75 bytes."""

MAX_EPT_TOWER_FLOORS = 16
"""Floors read from a protocol tower; a DCE tower over IP has 5."""
NODE_STATUS_BURST = 4
"""Node status answers one source gets at once: `nbtstat -A` asks up to three times, and
`net send <IP>` once per message. An answer is up to 11 times the request's size."""

NODE_STATUS_RATE = 1.0
"""Node status answers a second one source gets once its burst is spent."""

MAX_RATE_LIMITED_SOURCES = 4096
"""Sources whose rate-limit buckets are kept; the least recently seen is forgotten (and
starts again with a full bucket)."""
