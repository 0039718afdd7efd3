"""Upgrades: an inbox written by every earlier released schema opens in today's messengerd
with every row intact, and gets today's features (duplicate check, retention, vacuum).

Each old file is built from the statements that version ran, copied here from its release
(schema 1: commit 384d755, messengerd/inbox.py; schema 2: b7f3437, whose statements stayed
the same through 34bc8a9) and frozen: they must never be generated from today's
schema.MIGRATIONS, or a change there would go untested against the files users have.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from messengerd.cli import main
from messengerd.core.message import Message
from messengerd.core.store.inbox import Inbox, StoreResult
from messengerd.core.store.retention import Retention
from messengerd.core.store.schema import DATABASE_NAME, MIGRATIONS, SCHEMA_VERSION

SCHEMA_1 = (
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
)
"""Schema 1 as released (384d755), run on a new file after `PRAGMA journal_mode=WAL`."""

SCHEMA_2 = (
    *SCHEMA_1,
    "ALTER TABLE messages ADD COLUMN text_digest BLOB",
    "UPDATE messages SET text_digest = text_digest_of(text)",
    "CREATE INDEX messages_by_digest"
    " ON messages (sender_key, recipient_key, text_digest, received_at)",
)
"""Schema 2 as released (b7f3437): a new file ran schema 1's statements, then these."""


def released_digest(text: str) -> bytes:
    """text_digest as schema 2 defined it: 16 bytes of BLAKE2b over the UTF-8."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


T0 = datetime(2025, 3, 1, 8, 0, 0, 250000, tzinfo=UTC)

ROWS = [
    # received_at, sender, recipient, text, raw, path, peer, codepage, read
    (T0, "ADMIN", "BOB", "Backup finished", b"Backup finished", "session", "192.0.2.7:1025",
     "cp850", 1),
    (T0 + timedelta(seconds=3), "Ups", "*", "Ölstand niedrig\nZeile 2",
     "Ölstand niedrig\nZeile 2".encode("cp850"), "mailslot", "192.0.2.9:138", "cp850", 0),
    (T0 + timedelta(hours=1), "ADMIN", "BOB", "Backup finished", b"Backup finished", "rpc",
     "192.0.2.7:1034", "cp850", 0),
    (T0 + timedelta(days=40), "PLANT", "Дежурный", "Давление в норме", "Давление в норме"
     .encode("cp866"), "session", "192.0.2.20:1030", "cp866", 1),
    (T0 + timedelta(days=400), "MON", "OPS", "disk 97% full" + " " * 3000 + "end",
     b"disk 97% full" + b" " * 3000 + b"end", "session", "192.0.2.30:1031", "cp850", 0),
]  # fmt: skip
"""Rows of every kind: each path, two code pages, read and unread, 4 KiB of text, times
spread over more than a year (for retention)."""


def build(data_dir: Path, version: int) -> None:
    """An inbox as messengerd with schema `version` left it: its statements, its rows."""
    conn = sqlite3.connect(data_dir / DATABASE_NAME, isolation_level=None)
    conn.create_function("text_digest_of", 1, released_digest, deterministic=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("BEGIN IMMEDIATE")
    for statement in {1: SCHEMA_1, 2: SCHEMA_2}[version]:
        conn.execute(statement)
    columns = "received_at, sender, recipient, sender_key, recipient_key, text, raw, path,"
    columns += " peer, codepage, read"
    for when, sender, to, text, raw, path, peer, codepage, read in ROWS:
        values = [
            when.isoformat(timespec="microseconds"),
            sender,
            to,
            sender.casefold(),
            to.casefold(),
            text,
            raw,
            path,
            peer,
            codepage,
            read,
        ]
        if version >= 2:
            conn.execute(
                f"INSERT INTO messages ({columns}, text_digest) VALUES ({'?, ' * 11}?)",
                [*values, released_digest(text)],
            )
        else:
            conn.execute(f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * 11)})", values)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("COMMIT")
    conn.close()


def pragma(data_dir: Path, name: str) -> object:
    with contextlib.closing(sqlite3.connect(data_dir / DATABASE_NAME)) as conn:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]


def test_the_frozen_schemas_are_the_ones_today_s_migrations_start_from():
    """Schema 1 and 2's statements are still today's first two steps; a third step may add
    to them but never rewrite them (a user's file went through them as they were)."""
    assert MIGRATIONS[1] == SCHEMA_1
    assert (*MIGRATIONS[1], *MIGRATIONS[2]) == SCHEMA_2


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.asyncio
async def test_an_old_inbox_opens_with_every_row_and_todays_features(tmp_path: Path, version):
    build(tmp_path, version)
    assert pragma(tmp_path, "auto_vacuum") == 0
    async with Inbox(tmp_path) as inbox:
        stored = inbox.query()
        assert [
            (m.id, m.received_at, m.sender, m.recipient, m.text, m.raw, m.path, m.peer,
             m.codepage, int(m.read))
            for m in stored
        ] == [(id, *row) for id, row in enumerate(ROWS, 1)]  # fmt: skip
        assert pragma(tmp_path, "user_version") == SCHEMA_VERSION
        assert pragma(tmp_path, "integrity_check") == "ok"
        # Freed pages now go back to the disk: the file was switched at this first open.
        assert pragma(tmp_path, "auto_vacuum") == 2
        assert pragma(tmp_path, "journal_mode") == "wal"
        # A copy of a message stored before the upgrade is still found; ids go on.
        copy = Message("UPS", "*", ROWS[1][3], "rpc", "192.0.2.9:1026", T0 + timedelta(seconds=9))
        assert await inbox.store(copy) == StoreResult(2, duplicate=True)
        new = Message("ADMIN", "BOB", "after the upgrade", "session", "192.0.2.7:1040", T0)
        assert (await inbox.store(new)).id == len(ROWS) + 1
        assert inbox.count(unread_only=True) == 4
        assert [m.id for m in inbox.query(sender="ups")] == [2]
        assert [m.id for m in inbox.query(grep="ДАВЛЕНИЕ")] == [4]
        assert inbox.usage()["oldest"] == T0.isoformat()
        assert inbox.mark_read([2]) == 1


@pytest.mark.parametrize("version", [1, 2])
def test_an_old_inbox_is_pruned_by_age_oldest_first(tmp_path: Path, version):
    build(tmp_path, version)
    inbox = Inbox(tmp_path, create=False)
    now = T0 + timedelta(days=420)
    result = inbox.prune(Retention(max_age_days=365, max_messages=0, max_size_mb=0), now)
    assert result.deleted == 4
    assert [m.text[:13] for m in inbox.query()] == ["disk 97% full"]
    assert pragma(tmp_path, "auto_vacuum") == 2
    assert pragma(tmp_path, "integrity_check") == "ok"


@pytest.mark.parametrize("version", [1, 2])
def test_history_reads_an_old_inbox_without_changing_it(tmp_path: Path, version, capsys):
    build(tmp_path, version)
    assert main(["history", "--data-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(ROWS)
    assert '"text": "Давление в норме"' in out[3]
    # Reading alone converts nothing: only the daemon's open switches the file.
    assert pragma(tmp_path, "auto_vacuum") == 0
