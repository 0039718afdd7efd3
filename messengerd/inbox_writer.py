"""The inbox's writer process: it commits the daemon's messages to SQLite, on its own GIL.

`Inbox.store()` (messengerd/inbox.py) starts it with one end of a socket pair as FD:
`python -m messengerd.inbox_writer DATABASE FD [BUSY_TIMEOUT]`. It reads requests, commits
whatever has arrived in one transaction (group commit; synchronous=FULL, so it is on disk
when COMMIT returns), answers, and exits when the daemon closes its end, after committing
what it was sent.

Why a process and not a thread: a writer thread gives up the GIL inside every SQLite call
and must win it back from the event loop, which holds it nearly all the time under load.
Measured (bench/README.md), a thread made every commit wait milliseconds for the GIL and the
event loop lose time to the hand-overs; a process has its own GIL and costs the loop one
send and one receive per batch.

Frames both ways: a 4-byte little-endian length, then a `marshal`led tuple (the peer is
our own parent, and marshal is the fastest codec for tuples of str, bytes and int).
A request is `(seq, received_at, sender, recipient, text, raw, path, peer, codepage)`;
an answer `("stored", ((seq, id, duplicate), ...))` for one committed transaction, or
`("failed", reason, (seq, ...))` for one that was undone.

This module imports no asyncio and none of the daemon: the process stays small.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import marshal
import signal
import socket
import sqlite3
import struct
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DUPLICATE_WINDOW = 10.0
"""Seconds within which the same From, To and Text is one message, not two.

A broadcast arrives once per interface, `net send` retries a session it thinks failed,
and some senders try the session and the mailslot both: all within a few seconds.
"""

TEXT_DIGEST_SIZE = 16
"""Bytes of BLAKE2b over a text's UTF-8 that the duplicate check looks rows up by.

128 bits make a collision between two texts practically impossible, and a collision would
cost only an index step: the check still compares the full text of every row it finds.
"""

MAX_BATCH_WRITES = 256
"""Writes in one transaction, so one COMMIT holds SQLite's write lock only briefly."""

ROWS_PER_STATEMENT = 32
"""Messages one INSERT (and one duplicate lookup) carries; a batch takes as many as it needs.
Few statements a batch, and 32 keeps the prepared statements (one per size) few and small."""

WRITER_CACHED_STATEMENTS = 128 + 2 * ROWS_PER_STATEMENT
"""sqlite3's default statement cache (128) and room for the insert and lookup of each size."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another's write lock (daemon and CLI share the file)."""

CHECKPOINT_INTERVAL = 0.5
"""Seconds between the checkpointer thread's checkpoints while messages are committed: at
2,000 messages a second the WAL holds about 10 MiB in between."""

CHECKPOINT_BACKSTOP_PAGES = 16_000
"""WAL pages at which a COMMIT checkpoints itself, should the checkpointer fall behind."""

FRAME_HEADER = struct.Struct("<I")
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""A frame longer than this is a broken peer, not a batch: the reader gives up on it."""
RECEIVE_BYTES = 256 * 1024
"""Bytes read from the socket at a time."""

INSERT_COLUMNS = (
    "received_at",
    "sender",
    "recipient",
    "sender_key",
    "recipient_key",
    "text",
    "text_digest",
    "raw",
    "path",
    "peer",
    "codepage",
)

Request = tuple[int, str, str, str, str, bytes, str, str, str]
"""(seq, received_at as utc_text(), sender, recipient, text, raw, path, peer, codepage)."""


class FrameError(ValueError):
    """The byte stream is not frames: the other side is broken."""


def utc_text(when: datetime) -> str:
    """A fixed-width ISO 8601 UTC time, so that text order is time order in SQL."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Message.received_at is UTC by contract
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def name_key(name: str) -> str:
    """A From or To name for case-insensitive matching (NetBIOS names ignore case)."""
    return name.casefold()


def text_digest(text: str) -> bytes:
    """The text_digest column: TEXT_DIGEST_SIZE bytes of BLAKE2b over the text's UTF-8."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=TEXT_DIGEST_SIZE).digest()


def encode_frame(value: Any) -> bytes:
    payload = marshal.dumps(value)
    return FRAME_HEADER.pack(len(payload)) + payload


class FrameReader:
    """Bytes in, whole decoded frames out; FrameError for what cannot be a frame."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> Iterator[Any]:
        self._buffer += data
        while len(self._buffer) >= FRAME_HEADER.size:
            (length,) = FRAME_HEADER.unpack_from(self._buffer)
            if length > MAX_FRAME_BYTES:
                raise FrameError(f"a frame of {length} bytes (at most {MAX_FRAME_BYTES})")
            end = FRAME_HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[FRAME_HEADER.size : end])
            del self._buffer[:end]
            try:
                yield marshal.loads(payload)
            except (EOFError, ValueError, TypeError) as exc:
                raise FrameError(f"a frame that is not marshal data: {exc}") from None

    def requests(self, data: bytes) -> list[Request]:
        """The requests in the whole frames `data` completes (each frame holds several)."""
        return [request for frame in self.feed(data) for request in frame]


# -- the transaction ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """A message as it is stored: every value computed, nothing left to do."""

    insert: tuple[Any, ...]
    """The INSERT's parameters, in INSERT_COLUMNS' order."""
    find_duplicate: tuple[Any, ...]
    """What finds a stored copy: the names, the text's digest, the window, the text (the
    text too, so that a digest collision never folds two different texts into one)."""


def row(request: Request) -> Row:
    _, received_at, sender, recipient, text, raw, path, peer, codepage = request
    sender_key, recipient_key = name_key(sender), name_key(recipient)
    digest = text_digest(text)
    when, window = datetime.fromisoformat(received_at), timedelta(seconds=DUPLICATE_WINDOW)
    return Row(
        insert=(
            received_at,
            sender,
            recipient,
            sender_key,
            recipient_key,
            text,
            digest,
            raw,
            path,
            peer,
            codepage,
        ),
        find_duplicate=(
            sender_key,
            recipient_key,
            digest,
            utc_text(when - window),
            utc_text(when + window),
            text,
        ),
    )


def insert_batch(conn: sqlite3.Connection, rows: list[Row]) -> list[tuple[int, bool]]:
    """Store `rows` inside the caller's write transaction, each unless it is a copy of a
    stored message or of a row before it; (id, duplicate) for each, in order."""
    outcomes: list[tuple[int, bool] | None] = [None] * len(rows)
    copies: dict[tuple[Any, ...], list[int]] = {}
    fresh: list[int] = []
    for index, each in enumerate(rows):
        # Copies within one batch: all arrive within the window, the first one is stored.
        key = each.find_duplicate[:3] + each.find_duplicate[5:]
        if key in copies:
            copies[key].append(index)
        else:
            copies[key] = [index]
            fresh.append(index)
    for chunk in _chunks(fresh):
        lookup = [value for index in chunk for value in (index, *rows[index].find_duplicate)]
        for index, original in conn.execute(_find_duplicates_sql(len(chunk)), lookup):
            outcomes[index] = (original, True)
    for chunk in _chunks([index for index in fresh if outcomes[index] is None]):
        values = [value for index in chunk for value in rows[index].insert]
        cursor = conn.execute(_insert_sql(len(chunk)), values)
        # One statement into an AUTOINCREMENT table under our write lock: its rows take
        # consecutive ids, in the order of its VALUES, the last being lastrowid.
        last = cursor.lastrowid
        if cursor.rowcount != len(chunk) or last is None:
            raise sqlite3.DatabaseError(f"stored {cursor.rowcount} of {len(chunk)} messages")
        for offset, index in enumerate(chunk):
            outcomes[index] = (last - len(chunk) + 1 + offset, False)
    for indexes in copies.values():
        first = outcomes[indexes[0]]
        assert first is not None
        for index in indexes[1:]:
            outcomes[index] = (first[0], True)
    return [outcome for outcome in outcomes if outcome is not None]


def _chunks(indexes: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(indexes), ROWS_PER_STATEMENT):
        yield indexes[start : start + ROWS_PER_STATEMENT]


@functools.cache
def _insert_sql(rows: int) -> str:
    one = "(" + ", ".join("?" * len(INSERT_COLUMNS)) + ")"
    return f"INSERT INTO messages ({', '.join(INSERT_COLUMNS)}) VALUES " + ", ".join([one] * rows)


@functools.cache
def _find_duplicates_sql(rows: int) -> str:
    """The first stored copy of each of `rows` messages, by its index in the batch."""
    one = "(?, ?, ?, ?, ?, ?, ?)"
    return (
        "WITH batch (n, sender_key, recipient_key, text_digest, since, until, text)"
        f" AS (VALUES {', '.join([one] * rows)})"
        " SELECT batch.n, min(m.id) FROM batch JOIN messages AS m"
        " ON m.sender_key = batch.sender_key AND m.recipient_key = batch.recipient_key"
        " AND m.text_digest = batch.text_digest"
        " AND m.received_at BETWEEN batch.since AND batch.until AND m.text = batch.text"
        " GROUP BY batch.n"
    )


def connect(path: str, **options: Any) -> sqlite3.Connection:
    """A connection for writing (`options` for sqlite3.connect)."""
    conn = sqlite3.connect(path, **({"timeout": BUSY_TIMEOUT, "isolation_level": None} | options))
    # Durable before ack: in WAL mode FULL syncs the log at every COMMIT.
    conn.execute("PRAGMA synchronous=FULL")
    # A multi-row INSERT keeps a statement journal (the pages it changes, to undo it
    # alone): in memory, not in a temporary file written at every batch.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if there is one and the connection still can: a failed
    COMMIT may have rolled back already (I/O error), and an error from a second ROLLBACK
    would hide the one that matters."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class Checkpointer:
    """Copies the WAL into the database on a thread of its own, so that no COMMIT pays for it.

    SQLite's automatic checkpoint runs inside the COMMIT that crosses its threshold: that
    message's sender waited for 4 MiB copied and two fsyncs (the bench's p99). Here the
    writer's connection leaves it to this thread (PASSIVE: it never blocks the writer),
    at most every CHECKPOINT_INTERVAL while messages are being committed, and keeps
    SQLite's own only as a backstop at CHECKPOINT_BACKSTOP_PAGES.
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._due = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """After a COMMIT: there is WAL to copy."""
        self._due.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        while True:
            self._due.wait()
            if self._stopping.is_set():
                break
            # Cleared before the work: a COMMIT while it runs asks for the next one.
            self._due.clear()
            try:
                conn = conn or sqlite3.connect(
                    self.path, timeout=self.busy_timeout, isolation_level=None
                )
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            except sqlite3.Error as exc:
                print(f"messengerd inbox writer: checkpoint: {exc}", file=sys.stderr)
                if conn is not None:
                    conn.close()
                conn = None
            if self._stopping.wait(CHECKPOINT_INTERVAL):
                break
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._stopping.set()
        self._due.set()
        self._thread.join()


class Writer:
    """Commits batches of requests to one database, on one connection while it works."""

    def __init__(self, path: str, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._checkpointer = Checkpointer(path, busy_timeout)

    def commit(self, requests: list[Request]) -> tuple[Any, ...]:
        """One transaction for `requests`; the answer frame's value."""
        seqs = tuple(request[0] for request in requests)
        try:
            if self._conn is None:
                self._conn = connect(
                    self.path,
                    timeout=self.busy_timeout,
                    cached_statements=WRITER_CACHED_STATEMENTS,
                )
                self._conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP_PAGES}")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes = insert_batch(conn, [row(request) for request in requests])
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise
        except Exception as exc:
            # A connection that failed is not trusted with the next batch.
            self.close()
            return ("failed", str(exc) or type(exc).__name__, seqs)
        self._checkpointer.committed()
        stored = zip(seqs, outcomes, strict=True)
        return ("stored", tuple((seq, id, duplicate) for seq, (id, duplicate) in stored))

    def close(self) -> None:
        """Close the connection (a later commit opens another)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        """At exit: the checkpointer first, so that our connection closes last and SQLite
        checkpoints and removes the WAL with it."""
        self._checkpointer.stop()
        self.close()


def serve(sock: socket.socket, writer: Writer) -> None:
    """Until the other end closes: read what has arrived, commit it, answer."""
    frames = FrameReader()
    while True:
        data = sock.recv(RECEIVE_BYTES)
        if not data:
            return
        requests = frames.requests(data)
        # Everything else already waiting joins this transaction (group commit).
        while True:
            try:
                # Never on Windows (no MSG_DONTWAIT): Inbox refuses the writer process there.
                more = sock.recv(RECEIVE_BYTES, socket.MSG_DONTWAIT)  # type: ignore[attr-defined,unused-ignore]
            except BlockingIOError:
                break
            if not more:
                break
            requests += frames.requests(more)
        for start in range(0, len(requests), MAX_BATCH_WRITES):
            sock.sendall(encode_frame(writer.commit(requests[start : start + MAX_BATCH_WRITES])))


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(f"usage: python -m {__spec__.name} DATABASE FD [BUSY_TIMEOUT]", file=sys.stderr)
        return 2
    # Ctrl-C and the service manager's stop reach the whole process group: the daemon stops
    # first and closes our socket, and we commit what we were sent before we exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    path, fd = argv[:2]
    writer = Writer(path, float(argv[2]) if len(argv) > 2 else BUSY_TIMEOUT)
    try:
        with socket.socket(fileno=int(fd)) as sock:
            serve(sock, writer)
    except (OSError, FrameError) as exc:
        print(f"messengerd inbox writer: {exc}", file=sys.stderr)
        return 1
    finally:
        writer.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
