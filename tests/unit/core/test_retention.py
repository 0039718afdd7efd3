"""Retention: the inbox keeps within its [store] limits by itself, oldest first, in small
steps between senders' commits, and gives the space back; `history --prune` on demand."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from messengerd.core.message import Message
from messengerd.core.store import retention, schema
from messengerd.core.store.inbox import Inbox
from messengerd.core.store.retention import (
    FREE_PAGES_KEPT,
    PRUNE_BATCH_ROWS,
    Retention,
)
from messengerd.core.store.schema import DATABASE_NAME
from messengerd.core.store.writer import MAX_BATCH_WRITES

NOW = datetime.now(UTC)
QUICK_LOOKS = 0.05
"""check_interval for the tests: the writer looks at the limits every 50 ms when idle."""
WAIT = 20.0
"""Seconds a test waits for the writer to prune before it fails."""


def message(number: int, age: timedelta = timedelta(0), size: int = 100) -> Message:
    text = f"alert {number:06d} " + "x" * size
    return Message("UPS", "ADMIN", text, "session", "192.0.2.7:1025", NOW - age)


def count(data_dir: Path) -> int:
    with contextlib.closing(sqlite3.connect(data_dir / DATABASE_NAME)) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def numbers(inbox: Inbox) -> list[int]:
    return [int(m.text.split()[1]) for m in inbox.query()]


async def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "the writer did not prune in time"
        await asyncio.sleep(0.02)


def fill(data_dir: Path, rows: int, age: timedelta = timedelta(0), size: int = 100) -> None:
    """`rows` messages written straight into the file (faster than the writer's batches)."""
    with Inbox(data_dir):
        pass
    with contextlib.closing(schema.connect(data_dir / DATABASE_NAME)) as conn:
        conn.execute("BEGIN")
        schema.insert_batch(conn, [schema.row(message(n, age, size)) for n in range(rows)])
        conn.execute("COMMIT")


@pytest.mark.asyncio
async def test_messages_older_than_max_age_days_are_deleted_while_the_inbox_is_open(
    tmp_path: Path,
):
    limits = Retention(max_age_days=30, max_messages=0, max_size_mb=0)
    async with Inbox(tmp_path, retention=limits, check_interval=QUICK_LOOKS) as inbox:
        for number, days in enumerate([400, 45, 31, 29, 2, 0]):
            await inbox.store(message(number, timedelta(days=days)))
        await wait_for(lambda: inbox.count() == 3)
        assert numbers(inbox) == [3, 4, 5]
        assert inbox.usage()["pruned"] == 3


@pytest.mark.asyncio
async def test_max_messages_keeps_the_newest_and_deletes_the_oldest_first(tmp_path: Path):
    limits = Retention(max_age_days=0, max_messages=100, max_size_mb=0)
    async with Inbox(tmp_path, retention=limits, check_interval=QUICK_LOOKS) as inbox:
        for start in range(0, 1500, 500):
            await asyncio.gather(*(inbox.store(message(n)) for n in range(start, start + 500)))
        await wait_for(lambda: inbox.count() == 100)
        assert numbers(inbox) == list(range(1400, 1500))
        # Ids go on after the pruned ones: `history --follow` never sees an id twice.
        assert (await inbox.store(message(1500))).id == 1501


@pytest.mark.asyncio
async def test_pruning_keeps_up_with_a_burst_without_waiting_for_an_idle_moment(tmp_path: Path):
    limits = Retention(max_age_days=0, max_messages=500, max_size_mb=0)
    # No idle look during the burst (an hour away): only the look after each commit.
    async with Inbox(tmp_path, retention=limits, check_interval=3600) as inbox:
        most = 0
        for start in range(0, 6000, 200):
            await asyncio.gather(*(inbox.store(message(n)) for n in range(start, start + 200)))
            most = max(most, inbox.count())
        # A commit adds at most a batch, and the step after it deletes what is past the limit.
        assert 500 <= most <= 500 + MAX_BATCH_WRITES


@pytest.mark.asyncio
async def test_a_store_waits_for_one_prune_step_not_for_the_whole_prune(tmp_path: Path):
    fill(tmp_path, 30_000)
    limits = Retention(max_age_days=0, max_messages=10, max_size_mb=0)
    async with Inbox(tmp_path, retention=limits, check_interval=QUICK_LOOKS) as inbox:
        # The writer starts pruning 29,990 rows at once, PRUNE_BATCH_ROWS at a time.
        await wait_for(lambda: count(tmp_path) < 30_000)
        stored = await inbox.store(message(99_999))
        left = count(tmp_path)
        assert left > 10 + PRUNE_BATCH_ROWS, "the store waited for the whole prune"
        await wait_for(lambda: inbox.count() == 10)
        assert inbox.get(stored.id) is not None


@pytest.mark.asyncio
async def test_max_size_mb_bounds_the_pages_in_use_and_the_file_keeps_little_free_space(
    tmp_path: Path,
):
    limits = Retention(max_age_days=0, max_messages=0, max_size_mb=1)
    async with Inbox(tmp_path, retention=limits, check_interval=QUICK_LOOKS) as inbox:
        for start in range(0, 12_000, 500):
            await asyncio.gather(
                *(inbox.store(message(n, size=400)) for n in range(start, start + 500))
            )

        def within() -> bool:
            with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
                found = retention.pages(conn)
            return found.used_bytes <= limits.max_bytes and found.free <= FREE_PAGES_KEPT

        await wait_for(within)
        kept = numbers(inbox)
        # The newest are kept, in order, with nothing missing between them.
        assert kept == list(range(12_000 - len(kept), 12_000))
        assert 1000 < len(kept) < 3000  # about 1 MiB of 450-byte rows and their indexes
    # Closed: the file is its pages in use, the free pages kept, and nothing more.
    size = (tmp_path / DATABASE_NAME).stat().st_size
    assert size <= limits.max_bytes + FREE_PAGES_KEPT * 4096 + 64 * 1024


def test_a_prune_step_deletes_at_most_one_batch_in_one_transaction(tmp_path: Path):
    fill(tmp_path, 2000, age=timedelta(days=10))
    limits = Retention(max_age_days=1, max_messages=0, max_size_mb=0)
    with contextlib.closing(schema.connect(tmp_path / DATABASE_NAME)) as conn:
        steps = []
        while deleted := retention.prune_step(conn, limits, NOW):
            steps.append(deleted)
        assert not conn.in_transaction
    assert steps == [PRUNE_BATCH_ROWS] * 3 + [2000 - 3 * PRUNE_BATCH_ROWS]
    assert count(tmp_path) == 0


def test_no_limit_keeps_everything(tmp_path: Path):
    fill(tmp_path, 300, age=timedelta(days=4000))
    with contextlib.closing(schema.connect(tmp_path / DATABASE_NAME)) as conn:
        assert retention.prune_step(conn, retention.NO_LIMIT, NOW) == 0
    assert count(tmp_path) == 300


def test_prune_deletes_past_the_limits_and_gives_the_space_back(tmp_path: Path):
    fill(tmp_path, 20_000, size=400)
    inbox = Inbox(tmp_path, create=False)
    before = (tmp_path / DATABASE_NAME).stat().st_size
    result = inbox.prune(Retention(max_age_days=0, max_messages=1000, max_size_mb=0))
    assert result.deleted == 19_000
    assert inbox.count() == 1000
    assert numbers(inbox) == list(range(19_000, 20_000))
    after = (tmp_path / DATABASE_NAME).stat().st_size
    assert after == result.bytes_after
    assert after < before / 10, (before, after)
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0


def test_a_new_inbox_gives_freed_pages_back_by_incremental_vacuum(tmp_path: Path):
    with Inbox(tmp_path):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / DATABASE_NAME)) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.asyncio
async def test_status_usage_shows_size_count_oldest_and_limits(tmp_path: Path):
    limits = Retention(max_age_days=90, max_messages=5000, max_size_mb=10)
    async with Inbox(tmp_path, retention=limits) as inbox:
        for number, days in enumerate([60, 3, 1]):
            await inbox.store(message(number, timedelta(days=days)))
        usage = inbox.usage()
    assert usage["messages"] == 3
    assert usage["oldest"] == (NOW - timedelta(days=60)).isoformat()
    assert usage["limits"] == {"max_age_days": 90, "max_messages": 5000, "max_size_mb": 10}
    assert usage["bytes"] >= (tmp_path / DATABASE_NAME).stat().st_size > 0
    assert usage["disk_full"] is False
