"""The inbox's SQLite schema: its tables, migrations, keys and digests, and the insert.

Everything that knows the layout of `messages.sqlite3` is here; the writer thread
(writer.py) and the reads (inbox.py) call it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from messengerd.core.message import Message

DATABASE_NAME = "messages.sqlite3"
"""The inbox's file in the data directory."""

DATABASE_MODE = 0o600
"""Messages are private: the database (and the -wal and -shm files SQLite creates with the
database's own mode) are for the daemon's user alone, whatever the umask."""

SCHEMA_VERSION = 2
"""Kept in `PRAGMA user_version`; a newer file is refused rather than misread."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another's write lock (daemon and CLI share the file)."""

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

ROWS_PER_STATEMENT = 32
"""Messages one INSERT (and one duplicate lookup) carries; a batch takes as many as it needs.
Few statements a batch, and 32 keeps the prepared statements (one per size) few and small."""

CACHED_STATEMENTS = 128 + 2 * ROWS_PER_STATEMENT
"""sqlite3's default statement cache (128) and room for the insert and lookup of each size."""

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            received_at TEXT NOT NULL,
            sender TEXT NOT NULL,
            recipient TEXT NOT NULL,
            sender_key TEXT NOT NULL,
            recipient_key TEXT NOT NULL,
            text TEXT NOT NULL,
            raw BLOB NOT NULL,
            path TEXT NOT NULL CHECK (path IN ('session', 'mailslot', 'rpc')),
            peer TEXT NOT NULL,
            codepage TEXT NOT NULL,
            read INTEGER NOT NULL DEFAULT 0 CHECK (read IN (0, 1))
        )""",
        "CREATE INDEX messages_by_time ON messages (received_at)",
        "CREATE INDEX messages_by_names ON messages (sender_key, recipient_key, received_at)",
        "CREATE INDEX messages_unread ON messages (id) WHERE read = 0",
    ),
    # The duplicate check looks a message up by From, To and text within a time window. An
    # index on the text itself would hold a second copy of every text; its digest keeps
    # the index small and makes the check an equality and range lookup, however many
    # messages the same sender sent within the window.
    2: (
        "ALTER TABLE messages ADD COLUMN text_digest BLOB",
        "UPDATE messages SET text_digest = text_digest_of(text)",
        "CREATE INDEX messages_by_digest"
        " ON messages (sender_key, recipient_key, text_digest, received_at)",
    ),
}
"""Statements that bring the schema from version N-1 to N."""
# AUTOINCREMENT: ids are never reused, so `history --follow` can poll for `id > last`.
# text_digest_of() is text_digest, registered for the migration only. text_digest stays
# nullable because ALTER TABLE cannot add a NOT NULL column without a default; the UPDATE
# fills it for every older row and insert_batch() sets it for every new one.

COLUMNS = "id, received_at, sender, recipient, text, raw, path, peer, codepage, read"
"""What the reads select, in the order `stored_fields()` takes them."""

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


class SchemaError(Exception):
    """The file is not an inbox this messengerd can use; the message says why."""


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


def create_private(path: Path) -> None:
    """Make an empty database file readable by its owner only, unless it exists.

    SQLite gives its -wal and -shm files the database file's mode, so this one call keeps
    all three private whatever the umask.
    """
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_MODE))


def connect(path: Path | str, **options: Any) -> sqlite3.Connection:
    """A connection for writing (`options` for sqlite3.connect)."""
    conn = sqlite3.connect(path, **({"timeout": BUSY_TIMEOUT, "isolation_level": None} | options))
    # Durable before ack: in WAL mode FULL syncs the log at every COMMIT.
    conn.execute("PRAGMA synchronous=FULL")
    # A multi-row INSERT keeps a statement journal (the pages it changes, to undo it
    # alone): in memory, not in a temporary file written at every batch.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A connection that only reads, with the functions the history queries use.

    A reader that may not write the folder (a member of the daemon's control group) cannot
    create the -wal and -shm files SQLite needs to read a WAL database; with no -wal there,
    no daemon has it open and every committed message is in the file itself, which is then
    read as immutable (no locks, no -shm). A daemon starting meanwhile checkpoints nothing
    into the file until its log is long, so the read stays whole.
    """
    options = "?mode=ro"
    if not os.path.exists(f"{path}-wal") and not os.access(path.parent, os.W_OK):
        options += "&immutable=1"
    conn = sqlite3.connect(
        path.as_uri() + options, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
    )
    # SQLite's lower() and LIKE fold ASCII only; names and text are often not ASCII.
    conn.create_function("casefold", 1, _casefold, deterministic=True)
    return conn


def rollback(conn: sqlite3.Connection) -> None:
    """Undo the open transaction, if there is one and the connection still can: a failed
    COMMIT may have rolled back already (I/O error), and an error from a second ROLLBACK
    would hide the one that matters."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version; SchemaError if a newer messengerd wrote it."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise SchemaError(
            f"{path} was written by a newer messengerd (schema {found}, "
            f"this one knows {SCHEMA_VERSION}): upgrade messengerd"
        )
    return found


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION in one transaction (a new file gets every step)."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.create_function("text_digest_of", 1, text_digest, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have just migrated.
        for step in range(version(conn, path) + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def prepare(path: Path) -> None:
    """Create or migrate the inbox at `path` (its directory exists)."""
    create_private(path)
    with contextlib.closing(connect(path)) as conn:
        if version(conn, path) != SCHEMA_VERSION:
            migrate(conn, path)


# -- the insert ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Row:
    """A message as it is stored: every value computed, nothing left to do."""

    insert: tuple[Any, ...]
    """The INSERT's parameters, in INSERT_COLUMNS' order."""
    find_duplicate: tuple[Any, ...]
    """What finds a stored copy: the names, the text's digest, the window, the text (the
    text too, so that a digest collision never folds two different texts into one)."""


def row(message: Message) -> Row:
    """The values that store `message` and find a stored copy of it."""
    sender_key, recipient_key = name_key(message.sender), name_key(message.recipient)
    digest = text_digest(message.text)
    window = timedelta(seconds=DUPLICATE_WINDOW)
    return Row(
        insert=(
            utc_text(message.received_at),
            message.sender,
            message.recipient,
            sender_key,
            recipient_key,
            message.text,
            digest,
            message.raw,
            message.path,
            message.peer,
            message.codepage,
        ),
        find_duplicate=(
            sender_key,
            recipient_key,
            digest,
            utc_text(message.received_at - window),
            utc_text(message.received_at + window),
            message.text,
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


def _casefold(value: str | None) -> str | None:
    return None if value is None else value.casefold()
