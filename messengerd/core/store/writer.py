"""The inbox's writer: one thread that commits what the event loop hands it (group commit).

The event loop queues (message, future) pairs and never waits for the disk. The thread takes
whatever is waiting (at most MAX_BATCH_WRITES), stores it in one transaction on its own
connection (synchronous=FULL: on disk when COMMIT returns), and resolves the batch's futures
with one `call_soon_threadsafe` per loop. What arrives during a commit joins the next one,
so a busy second costs a few hundred COMMITs, not one a message. SQLite releases the GIL
while it works, so the loop runs on during a commit. Plain threads and sqlite3: the same on
Linux, macOS and Windows.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from messengerd.core.message import Message
from messengerd.core.store import schema

MAX_BATCH_WRITES = 256
"""Writes in one transaction, so one COMMIT holds SQLite's write lock only briefly."""

CHECKPOINT_INTERVAL = 0.5
"""Seconds after a commit before the writer copies the WAL into the database, at the first
moment nothing is queued: between messages, not inside the COMMIT of some sender's message.
At 2,000 messages a second the WAL holds a few MiB in between."""

CHECKPOINT_BACKSTOP_PAGES = 16_000
"""WAL pages (about 64 MiB) at which a COMMIT checkpoints itself, should a long burst leave
the writer no idle moment."""

JOIN_TIMEOUT = 30.0
"""Seconds close() waits for the thread to commit what is queued and stop."""


class InboxError(Exception):
    """The inbox cannot store or read messages; the message says why."""


class InboxFull(InboxError):
    """Too many messages wait to be committed; refuse this one (SMB ERRnoroom)."""


@dataclass(frozen=True)
class StoreResult:
    """What a store did: the message's id, and whether it was already there (a duplicate)."""

    id: int
    duplicate: bool = False


Outcome = StoreResult | InboxError


@dataclass(frozen=True, slots=True)
class _Write:
    message: Message
    future: asyncio.Future[StoreResult]


class StoreWriter:
    """The thread that owns the inbox's write connection while the daemon runs."""

    def __init__(self, path: Path, *, busy_timeout: float = schema.BUSY_TIMEOUT) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.batches = 0
        """Transactions committed (for tests and metrics)."""
        self._queue: collections.deque[_Write] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def submit(self, message: Message, future: asyncio.Future[StoreResult]) -> None:
        """Queue `message`; `future` (of the loop it was made on) gets its outcome."""
        with self._wake:
            if self._closing:
                raise InboxError("the inbox is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            self._queue.append(_Write(message, future))
            if len(self._queue) == 1:
                # The thread waits only on an empty queue; a longer one it will find.
                self._wake.notify()

    def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the database, stop the thread.

        Blocking: from a loop, run it in a thread (the futures it resolves are on the loop).
        """
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(JOIN_TIMEOUT)

    # -- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        # When the WAL written since the last checkpoint should go into the database.
        checkpoint_due: float | None = None
        try:
            while True:
                batch = self._take(checkpoint_due)
                if batch is None:
                    break
                if batch:
                    conn, outcomes = self._commit(conn, batch)
                    _resolve(batch, outcomes)
                    if conn is not None and checkpoint_due is None:
                        checkpoint_due = time.monotonic() + CHECKPOINT_INTERVAL
                elif conn is not None:
                    # Nothing queued: the moment for the copy no sender's COMMIT should pay
                    # for (SQLite's own would run inside the COMMIT that crosses its mark).
                    _checkpoint(conn, "PASSIVE")
                    checkpoint_due = None
        finally:
            if conn is not None:
                # A clean stop leaves no WAL behind at its full size.
                _checkpoint(conn, "TRUNCATE")
                conn.close()

    def _take(self, checkpoint_due: float | None) -> list[_Write] | None:
        """The next batch, waiting for one; [] when nothing is queued and a checkpoint is
        due; None once closing with nothing left."""
        with self._wake:
            while not self._queue and not self._closing:
                if checkpoint_due is None:
                    self._wake.wait()
                    continue
                remaining = checkpoint_due - time.monotonic()
                if remaining <= 0:
                    return []
                self._wake.wait(remaining)
            if not self._queue:
                return None
            count = min(len(self._queue), MAX_BATCH_WRITES)
            return [self._queue.popleft() for _ in range(count)]

    def _commit(
        self, conn: sqlite3.Connection | None, batch: list[_Write]
    ) -> tuple[sqlite3.Connection | None, list[Outcome]]:
        try:
            if conn is None:
                conn = schema.connect(
                    self.path,
                    timeout=self.busy_timeout,
                    cached_statements=schema.CACHED_STATEMENTS,
                )
                conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP_PAGES}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = schema.insert_batch(conn, [schema.row(w.message) for w in batch])
                conn.execute("COMMIT")
            except BaseException:
                schema.rollback(conn)
                raise
        except Exception as exc:
            # A connection that failed is not trusted with the next batch.
            if conn is not None:
                conn.close()
            error = InboxError(f"cannot store in {self.path}: {exc or type(exc).__name__}")
            return None, [error] * len(batch)
        self.batches += 1
        return conn, [StoreResult(id, duplicate) for id, duplicate in stored]


def _checkpoint(conn: sqlite3.Connection, mode: str) -> None:
    # A checkpoint that cannot run now (a reader holds the WAL) is simply tried later.
    with contextlib.suppress(sqlite3.Error):
        conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()


def _resolve(batch: list[_Write], outcomes: list[Outcome]) -> None:
    """Hand each outcome to its future's loop: one call for each loop in the batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[StoreResult], Outcome]]]
    by_loop = {}
    for write, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(write.future.get_loop(), []).append((write.future, outcome))
    for loop, answers in by_loop.items():
        # A loop already closed has nobody waiting: the rows are stored all the same.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_all, answers)


def _settle_all(answers: list[tuple[asyncio.Future[StoreResult], Outcome]]) -> None:
    """On the loop: answer each store() whose caller still waits."""
    for future, outcome in answers:
        if future.done():
            continue  # timed out or cancelled; the row is stored all the same
        if isinstance(outcome, InboxError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
