"""Inbox: durable before ack, group commit, duplicate suppression, and the history queries."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from messengerd.core.message import Message
from messengerd.core.store import schema
from messengerd.core.store.inbox import Inbox, InboxError, InboxFull, StoredMessage, StoreResult
from messengerd.core.store.schema import (
    DATABASE_NAME,
    DUPLICATE_WINDOW,
    SCHEMA_VERSION,
    TEXT_DIGEST_SIZE,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
WAIT = 10.0
"""Seconds a test waits for a child process before it fails instead of hanging."""


def message(
    text: str = "Server SRV1 shuts down in 5 minutes",
    sender: str = "ADMIN",
    recipient: str = "BOB",
    path: str = "session",
    when: datetime = T0,
    peer: str = "192.0.2.7:1025",
) -> Message:
    raw = text.encode("cp850")
    return Message(sender, recipient, text, path, peer, when, raw=raw)  # type: ignore[arg-type]


class WriteLock:
    """Another connection holding the inbox's write lock, as `messengerd history
    --mark-read` does for a moment: the writer thread waits for it, as it would."""

    def __init__(self, data_dir: Path) -> None:
        self.conn = sqlite3.connect(data_dir / DATABASE_NAME, isolation_level=None)

    def __enter__(self) -> WriteLock:
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def release(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def __exit__(self, *exc_info: object) -> None:
        self.release()
        self.conn.close()


@pytest.fixture
def inbox(tmp_path: Path) -> Iterator[Inbox]:
    with Inbox(tmp_path) as inbox:
        yield inbox


async def store_all(inbox: Inbox, messages: list[Message]) -> list[int]:
    return [(await inbox.store(m)).id for m in messages]


@pytest.mark.asyncio
async def test_store_then_get_and_query_round_trip_every_field(inbox: Inbox):
    wire = Message.from_wire(
        b"ADMIN", b"BOB", b"\x99lstand M\x81ller\x14Zeile 2", path="rpc", peer="192.0.2.7:1025"
    )
    sent = dataclasses.replace(wire, received_at=T0)
    result = await inbox.store(sent)
    got = inbox.get(result.id)
    assert got == StoredMessage.from_message(sent, id=result.id, read=False)
    assert got.text == "Ölstand Müller\nZeile 2"
    assert got.raw == b"\x99lstand M\x81ller\x14Zeile 2"
    assert got.received_at == T0 and got.received_at.tzinfo == UTC
    assert (got.path, got.peer, got.codepage) == ("rpc", "192.0.2.7:1025", "cp850")
    assert not result.duplicate
    assert inbox.query() == [got]


@pytest.mark.asyncio
async def test_received_at_in_another_zone_is_kept_as_the_same_instant_in_utc(inbox: Inbox):
    local = T0.astimezone(timezone(timedelta(hours=2)))
    result = await inbox.store(message(when=local))
    got = inbox.get(result.id)
    assert got.received_at == T0 and got.received_at.utcoffset() == timedelta(0)


@pytest.mark.asyncio
async def test_200_concurrent_stores_are_all_committed_with_unique_ids(inbox: Inbox):
    results = await asyncio.gather(*(inbox.store(message(f"alert {i}")) for i in range(200)))
    assert len({r.id for r in results}) == 200
    assert not any(r.duplicate for r in results)
    assert inbox.count() == 200
    assert [m.text for m in inbox.query()] == [f"alert {i}" for i in range(200)]


@pytest.mark.asyncio
async def test_writes_queued_during_a_commit_share_the_next_transaction(tmp_path: Path):
    async with Inbox(tmp_path) as inbox:
        with WriteLock(tmp_path) as lock:
            first = asyncio.create_task(inbox.store(message("alert 0")))
            await asyncio.sleep(0.5)  # the writer has it and waits for the lock
            rest = [asyncio.create_task(inbox.store(message(f"alert {i}"))) for i in range(1, 200)]
            await asyncio.sleep(0.2)
            assert inbox.pending == 200 and inbox.batches == 0
            lock.release()
            results = await asyncio.gather(first, *rest)
        # The first write alone, then all the others, which waited, in one transaction.
        assert inbox.batches == 2
        assert inbox.count() == 200 == len({r.id for r in results})


@pytest.mark.asyncio
async def test_store_does_not_block_the_event_loop_while_a_commit_is_slow(tmp_path: Path):
    async with Inbox(tmp_path) as inbox:
        with WriteLock(tmp_path) as lock:
            store = asyncio.create_task(inbox.store(message()))
            ticks = 0
            for _ in range(100):
                await asyncio.sleep(0.001)
                ticks += 1
            assert ticks == 100 and not store.done()
            lock.release()
            result = await store
        assert inbox.get(result.id) is not None


@pytest.mark.asyncio
async def test_store_beyond_the_pending_bound_raises_inbox_full(tmp_path: Path):
    async with Inbox(tmp_path, max_pending=3) as inbox:
        with WriteLock(tmp_path) as lock:
            tasks = [asyncio.create_task(inbox.store(message(f"alert {i}"))) for i in range(3)]
            await asyncio.sleep(0)
            with pytest.raises(InboxFull, match="3 messages are waiting"):
                await inbox.store(message("one too many"))
            lock.release()
            await asyncio.gather(*tasks)
        await inbox.store(message("room again"))
        assert inbox.count() == 4


@pytest.mark.asyncio
async def test_a_failed_batch_answers_its_callers_and_the_next_batch_stores(tmp_path: Path):
    async with Inbox(tmp_path, busy_timeout=0.2) as inbox:
        # The writer waits busy_timeout (0.2 s here, not SQLite's 5 s) for the lock.
        with WriteLock(tmp_path), pytest.raises(InboxError, match="database is locked"):
            async with asyncio.timeout(3):
                await inbox.store(message("lost"))
        result = await inbox.store(message("kept"))
        assert [m.text for m in inbox.query()] == ["kept"] and inbox.pending == 0
        assert result.id == inbox.latest_id()


@pytest.mark.asyncio
async def test_a_store_slower_than_its_bound_answers_an_error_and_a_retry_is_a_duplicate(
    tmp_path: Path,
):
    async with Inbox(tmp_path, store_timeout=0.3) as inbox:
        with WriteLock(tmp_path) as lock:
            with pytest.raises(InboxError, match=r"longer than 0\.3 s"):
                await inbox.store(message("slow disk"))
            assert inbox.pending == 0  # the caller is answered; the writer still has it
            lock.release()
            # The sender, told of an error, sends again: its first copy landed meanwhile.
            retry = await inbox.store(message("slow disk"))
        assert retry.duplicate
        assert [m.text for m in inbox.query()] == ["slow disk"]


@pytest.mark.asyncio
async def test_close_commits_stops_the_writer_and_leaves_no_wal_behind(tmp_path: Path):
    inbox = Inbox(tmp_path)
    for i in range(50):
        await inbox.store(message(f"alert {i}"))
    writers = [t for t in threading.enumerate() if t.name == "inbox-writer"]
    assert writers
    await inbox.aclose()
    assert not any(t.is_alive() for t in writers)
    wal = tmp_path / (DATABASE_NAME + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert Inbox(tmp_path).count() == 50


def test_the_inbox_files_are_private_whatever_the_umask(tmp_path: Path):
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    previous = os.umask(0o022)
    try:

        async def store_one() -> None:
            async with Inbox(data_dir) as inbox:
                await inbox.store(message())
                modes = {
                    path.name: stat.S_IMODE(path.stat().st_mode)
                    for path in data_dir.glob(DATABASE_NAME + "*")
                }
                assert set(modes) >= {DATABASE_NAME, DATABASE_NAME + "-wal"}
                assert set(modes.values()) == {0o600}, modes

        asyncio.run(store_one())
    finally:
        os.umask(previous)


@pytest.mark.asyncio
async def test_same_message_within_the_window_is_stored_once_across_paths(inbox: Inbox):
    first = await inbox.store(message(path="session"))
    again = await inbox.store(
        message(sender="admin", recipient="bob", path="mailslot", when=T0 + timedelta(seconds=5))
    )
    assert again.duplicate and again.id == first.id
    assert inbox.count() == 1


@pytest.mark.asyncio
async def test_copies_arriving_together_on_three_paths_are_stored_once(inbox: Inbox):
    paths = ["session", "mailslot", "rpc"]
    copies = [message(path=p, when=T0 + timedelta(milliseconds=i)) for i, p in enumerate(paths)]
    results = await asyncio.gather(*(inbox.store(c) for c in copies))
    assert len({r.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert inbox.count() == 1


@pytest.mark.asyncio
async def test_same_message_outside_the_window_or_with_other_text_is_stored_again(inbox: Inbox):
    later = T0 + timedelta(seconds=DUPLICATE_WINDOW + 1)
    results = [
        await inbox.store(message()),
        await inbox.store(message(when=later)),
        await inbox.store(message(text="server srv1 shuts down in 5 minutes")),
        await inbox.store(message(recipient="ALICE")),
    ]
    assert not any(r.duplicate for r in results)
    assert inbox.count() == 4


@pytest.mark.asyncio
async def test_a_copy_is_found_among_many_messages_from_the_same_sender(inbox: Inbox):
    ids = await store_all(inbox, [message(f"alert {i}") for i in range(300)])
    window = timedelta(seconds=DUPLICATE_WINDOW)
    later = await inbox.store(message("alert 150", "admin", "bob", "rpc", T0 + window))
    earlier = await inbox.store(message("alert 151", path="mailslot", when=T0 - window))
    assert (later, earlier) == (StoreResult(ids[150], True), StoreResult(ids[151], True))
    beyond = await inbox.store(message("alert 152", when=T0 + window + timedelta(microseconds=1)))
    assert not beyond.duplicate
    assert inbox.count() == 301


def digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=TEXT_DIGEST_SIZE).digest()


@pytest.mark.asyncio
async def test_a_digest_collision_never_folds_two_different_texts(inbox: Inbox, tmp_path: Path):
    first = await inbox.store(message("Server SRV1 shuts down in 5 minutes"))
    # No real BLAKE2b collision is known: give the stored row the other text's digest.
    with sqlite3.connect(tmp_path / DATABASE_NAME) as conn:
        changed = conn.execute(
            "UPDATE messages SET text_digest = ? WHERE id = ?",
            (digest("Server SRV2 shuts down in 5 minutes"), first.id),
        ).rowcount
    conn.close()
    assert changed == 1
    other = await inbox.store(message("Server SRV2 shuts down in 5 minutes"))
    assert not other.duplicate and other.id != first.id
    assert inbox.count() == 2


DIGEST_LOOKUP = (
    "INDEX messages_by_digest (sender_key=? AND recipient_key=? AND text_digest=?"
    " AND received_at>? AND received_at<?)"
)
"""SQLite's EXPLAIN QUERY PLAN for a search on every column of the index (> stands for >=)."""


def test_the_duplicate_check_is_an_index_lookup_however_many_rows_match_the_names(
    tmp_path: Path,
):
    Inbox(tmp_path).close()
    # The writer's transaction, run here so that its statements can be traced.
    conn = schema.connect(tmp_path / DATABASE_NAME)
    conn.execute("BEGIN IMMEDIATE")
    schema.insert_batch(conn, [schema.row(message(f"alert {i}")) for i in range(500)])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")  # the planner now knows that 500 rows share From and To
    ran: list[str] = []
    conn.set_trace_callback(ran.append)  # each statement with its values filled in
    conn.execute("BEGIN IMMEDIATE")
    again = schema.row(message("alert 250"))
    assert schema.insert_batch(conn, [again]) == [(251, True)]
    conn.execute("COMMIT")
    conn.set_trace_callback(None)
    lookups = [sql for sql in ran if sql.lstrip().upper().startswith(("SELECT", "WITH"))]
    assert lookups, f"the writer ran no SELECT: {ran}"
    for sql in lookups:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert any(DIGEST_LOOKUP in step for step in plan), plan
        # The batch's own VALUES are scanned; the messages table never is.
        scans = [step for step in plan if step.startswith("SCAN")]
        assert all(step == "SCAN batch" or "CONSTANT ROW" in step for step in scans), plan
    conn.close()


@pytest.fixture
def filled(inbox: Inbox) -> Inbox:
    asyncio.run(
        store_all(
            inbox,
            [
                message("Backup finished", "ADMIN", "BOB", when=T0),
                message("On battery power", "UPS", "*", "mailslot", T0 + timedelta(hours=1)),
                message("Power restored", "ups", "ALICE", "rpc", T0 + timedelta(hours=2)),
                message("Ölstand niedrig", "PLANT", "bob", when=T0 + timedelta(hours=3)),
            ],
        )
    )
    return inbox


def texts(messages: list[StoredMessage]) -> list[str]:
    return [m.text for m in messages]


def test_query_filters_by_time_names_text_and_limit(filled: Inbox):
    assert texts(filled.query(since=T0 + timedelta(hours=2))) == [
        "Power restored",
        "Ölstand niedrig",
    ]
    assert texts(filled.query(sender="Ups")) == ["On battery power", "Power restored"]
    assert texts(filled.query(recipient="BOB")) == ["Backup finished", "Ölstand niedrig"]
    assert texts(filled.query(grep="ÖLSTAND")) == ["Ölstand niedrig"]
    assert texts(filled.query(grep="power", sender="UPS", recipient="alice")) == ["Power restored"]
    # The newest N, still oldest first: what `history --limit N` prints.
    assert texts(filled.query(limit=2)) == ["Power restored", "Ölstand niedrig"]
    assert filled.query(limit=0) == []
    assert filled.count(sender="ups") == 2


def test_mark_read_sets_the_flag_and_unread_only_leaves_those_out(filled: Inbox):
    first, second, *_ = filled.query()
    assert filled.mark_read([first.id, second.id]) == 2
    assert filled.mark_read([first.id]) == 0
    assert filled.get(first.id).read
    assert texts(filled.query(unread_only=True)) == ["Power restored", "Ölstand niedrig"]
    assert filled.count(unread_only=True) == 2
    assert filled.mark_read() == 2
    assert filled.query(unread_only=True) == []
    assert filled.mark_read([first.id], read=False) == 1
    assert texts(filled.query(unread_only=True)) == ["Backup finished"]


def test_after_returns_later_messages_for_following(filled: Inbox):
    ids = [m.id for m in filled.query()]
    assert filled.latest_id() == ids[-1]
    assert texts(filled.after(ids[1])) == ["Power restored", "Ölstand niedrig"]
    assert texts(filled.after(ids[1], sender="PLANT")) == ["Ölstand niedrig"]
    assert filled.after(ids[-1]) == []


def test_export_jsonl_writes_the_filtered_messages_one_object_a_line(filled: Inbox, tmp_path):
    out = tmp_path / "export.jsonl"
    assert filled.export_jsonl(out, sender="ups") == 2
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [set(line) for line in lines] == [
        {"id", "from", "to", "text", "received_at", "path", "peer", "codepage", "read"}
    ] * 2
    assert lines[1] == {
        "id": 3,
        "from": "ups",
        "to": "ALICE",
        "text": "Power restored",
        "received_at": "2024-05-01T14:00:00.123456+00:00",
        "path": "rpc",
        "peer": "192.0.2.7:1025",
        "codepage": "cp850",
        "read": False,
    }


def test_empty_inbox_reads_as_empty(inbox: Inbox):
    assert inbox.query() == [] and inbox.latest_id() == 0 and inbox.count() == 0
    assert inbox.get(1) is None


def test_inbox_file_is_wal_with_the_schema_version(inbox: Inbox, tmp_path: Path):
    conn = sqlite3.connect(tmp_path / DATABASE_NAME)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_inbox_from_a_newer_messengerd_is_refused(tmp_path: Path):
    Inbox(tmp_path).close()
    conn = sqlite3.connect(tmp_path / DATABASE_NAME)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(InboxError, match="newer messengerd"):
        Inbox(tmp_path)


def test_opening_without_create_leaves_an_empty_data_dir_alone(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        Inbox(tmp_path / "none", create=False)
    assert not (tmp_path / "none").exists()
    assert not Inbox.exists(tmp_path)


@pytest.mark.asyncio
async def test_a_second_inbox_on_the_same_directory_reads_what_the_first_stored(tmp_path: Path):
    async with Inbox(tmp_path) as daemon_side:
        result = await daemon_side.store(message())
        reader = Inbox(tmp_path, create=False)
        assert texts(reader.query()) == [message().text]
        assert reader.mark_read([result.id]) == 1
        assert daemon_side.get(result.id).read


@pytest.mark.asyncio
async def test_close_commits_the_writes_already_queued(tmp_path: Path):
    inbox = Inbox(tmp_path)
    tasks = [asyncio.create_task(inbox.store(message(f"alert {i}"))) for i in range(20)]
    await asyncio.sleep(0)
    await inbox.aclose()
    assert len({(await task).id for task in tasks}) == 20
    assert Inbox(tmp_path).count() == 20
    with pytest.raises(InboxError, match="closed"):
        await inbox.store(message("late"))
