"""Retention: how much of the past the inbox keeps, and the small steps that prune it.

A service that runs for years must not fill its disk: the inbox keeps messages for at most
`max_age_days`, at most `max_messages` of them, in at most `max_size_mb` of database pages,
and deletes the oldest first once one is passed. Each step here is one short write
transaction of at most PRUNE_BATCH_ROWS rows or VACUUM_STEP_PAGES pages, so the writer thread
(writer.py) can run one between two COMMITs of senders' messages and keep every sender's wait
short; `messengerd history --prune` runs the same steps until none is left.

The pages a delete frees go back to the file system through SQLite's incremental vacuum
(`auto_vacuum = INCREMENTAL`, schema.prepare), all but FREE_PAGES_KEPT of them, which the next
messages reuse without growing the file again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from messengerd.core.store import schema
from messengerd.core.store.schema import utc_text

DEFAULT_MAX_AGE_DAYS = 365
"""A year: the alerts of last season are still there when this season's look the same."""

DEFAULT_MAX_MESSAGES = 100_000
"""A busy alert source (a UPS, a monitoring server) sends tens to hundreds of messages a day:
a year of 270 a day. At about 620 bytes a message (bench/results: 200-byte texts, with the
indexes) that is about 60 MiB."""

DEFAULT_MAX_SIZE_MB = 100
"""MiB of database pages. It holds DEFAULT_MAX_MESSAGES at typical sizes and caps a year of
long texts (up to 4 KiB each, limits.MAX_TEXT_BYTES): well under a log partition (Debian's
/var is often a few GiB), and small enough that the file stays quick to back up and copy."""

BYTES_PER_MB = 1024 * 1024
"""max_size_mb counts mebibytes."""

PRUNE_BATCH_ROWS = 512
"""Rows one prune step deletes at most: a few milliseconds with its four indexes, the most a
sender's COMMIT waits behind it. More than writer.MAX_BATCH_WRITES, so pruning that runs one
step per commit outpaces any burst."""

VACUUM_STEP_PAGES = 256
"""Pages (1 MiB at SQLite's 4 KiB) one incremental vacuum step gives back to the file system:
each moves up to this many pages from the end of the file, a few milliseconds of writing."""

FREE_PAGES_KEPT = 512
"""Free pages left in the file for the next messages (2 MiB at 4 KiB pages): a store at its
limit frees a batch and fills it again, and handing those pages back and growing the file
again would only write the same megabytes twice."""


@dataclass(frozen=True)
class Retention:
    """The limits of the `[store]` table; 0 turns a limit off."""

    max_age_days: float = DEFAULT_MAX_AGE_DAYS
    max_messages: int = DEFAULT_MAX_MESSAGES
    max_size_mb: float = DEFAULT_MAX_SIZE_MB

    @property
    def max_age(self) -> timedelta | None:
        return timedelta(days=self.max_age_days) if self.max_age_days else None

    @property
    def max_bytes(self) -> int | None:
        return int(self.max_size_mb * BYTES_PER_MB) if self.max_size_mb else None

    def describe(self) -> str:
        """`365 days, 100000 messages, 100 MiB` (or `no limit`), for logs and the CLI."""
        parts = []
        if self.max_age_days:
            parts.append(f"{self.max_age_days:g} days")
        if self.max_messages:
            parts.append(f"{self.max_messages} messages")
        if self.max_size_mb:
            parts.append(f"{self.max_size_mb:g} MiB")
        return ", ".join(parts) or "no limit"

    def to_json(self) -> dict[str, Any]:
        return {
            "max_age_days": self.max_age_days,
            "max_messages": self.max_messages,
            "max_size_mb": self.max_size_mb,
        }


NO_LIMIT = Retention(0, 0, 0)
"""Keep everything (the inbox's behaviour before retention)."""


@dataclass(frozen=True)
class Pages:
    """The database's pages: their size, how many the file has, and how many are free."""

    size: int
    count: int
    free: int

    @property
    def used_bytes(self) -> int:
        """Bytes of pages holding data: what max_size_mb bounds."""
        return (self.count - self.free) * self.size


def pages(conn: sqlite3.Connection) -> Pages:
    """The page figures of the database `conn` is on (cheap: read from its header)."""
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    count = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return Pages(size, count, free)


def file_bytes(path: Path) -> int:
    """Bytes on disk of the database and its write-ahead log."""
    size = 0
    for each in (path, path.with_name(path.name + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            size += os.stat(each).st_size
    return size


def oldest(conn: sqlite3.Connection) -> datetime | None:
    """When the oldest message kept was received (an index lookup), None for none."""
    found = conn.execute("SELECT min(received_at) FROM messages").fetchone()[0]
    return None if found is None else datetime.fromisoformat(found)


def past_limits(conn: sqlite3.Connection, retention: Retention, now: datetime, count: int) -> bool:
    """True when the inbox of `count` messages is past a limit (or, for size, might be):
    header reads and an index lookup, cheap enough to run after every commit."""
    if retention.max_messages and count > retention.max_messages:
        return True
    if retention.max_bytes and pages(conn).used_bytes > retention.max_bytes:
        return True
    if retention.max_age is not None:
        first = oldest(conn)
        return first is not None and first < now - retention.max_age
    return False


def count(conn: sqlite3.Connection) -> int:
    """How many messages the inbox holds (about 1 ms for 100,000)."""
    return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def prune_step(conn: sqlite3.Connection, retention: Retention, now: datetime) -> int:
    """Delete at most PRUNE_BATCH_ROWS of the oldest messages past a limit, in one write
    transaction of its own; how many went (0: every limit is kept)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = _delete_past_limits(conn, retention, now)
        conn.execute("COMMIT")
    except BaseException:
        schema.rollback(conn)
        raise
    return deleted


def _delete_past_limits(conn: sqlite3.Connection, retention: Retention, now: datetime) -> int:
    budget = PRUNE_BATCH_ROWS
    if retention.max_age is not None:
        cutoff = utc_text(now - retention.max_age)
        cursor = conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages"
            " WHERE received_at < ? ORDER BY received_at LIMIT ?)",
            (cutoff, budget),
        )
        budget -= cursor.rowcount
    excess = 0
    if budget and (retention.max_messages or retention.max_bytes):
        held = count(conn)
        if retention.max_messages:
            excess = held - retention.max_messages
        if retention.max_bytes and held:
            excess = max(excess, _rows_over_size(pages(conn), held, retention.max_bytes))
    if excess > 0:
        cursor = conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
            (min(excess, budget),),
        )
        budget -= cursor.rowcount
    return PRUNE_BATCH_ROWS - budget


def _rows_over_size(found: Pages, count: int, max_bytes: int) -> int:
    """How many of `count` rows to delete to bring the used pages under `max_bytes`, at
    their average size; at least one while over it, so that pruning always ends."""
    over = found.used_bytes - max_bytes
    if over <= 0:
        return 0
    per_row = found.used_bytes / count
    return max(1, int(over / per_row) + 1)


def vacuum_step(conn: sqlite3.Connection, keep: int = FREE_PAGES_KEPT) -> int:
    """Give at most VACUUM_STEP_PAGES free pages beyond `keep` back to the file system; how
    many (0: none beyond those, or a file without auto_vacuum)."""
    before = pages(conn).free
    excess = min(before - keep, VACUUM_STEP_PAGES)
    if excess <= 0 or not incremental(conn):
        return 0
    # executescript steps the pragma to its end; execute() would step it once (one page).
    conn.executescript(f"PRAGMA incremental_vacuum({excess})")
    return before - pages(conn).free


def incremental(conn: sqlite3.Connection) -> bool:
    """True when the file gives free pages back by incremental vacuum."""
    return conn.execute("PRAGMA auto_vacuum").fetchone()[0] == schema.AUTO_VACUUM_INCREMENTAL
