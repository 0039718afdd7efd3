"""The inbox's writer: one thread that commits what the event loop hands it (group commit).

The event loop queues (message, future) pairs and never waits for the disk. The thread takes
whatever is waiting (at most MAX_BATCH_WRITES), stores it in one transaction on its own
connection (synchronous=FULL: on disk when COMMIT returns), and resolves the batch's futures
with one `call_soon_threadsafe` per loop. What arrives during a commit joins the next one,
so a busy second costs a few hundred COMMITs, not one a message. SQLite releases the GIL
while it works, so the loop runs on during a commit. Plain threads and sqlite3: the same on
Linux, macOS and Windows.

Between commits the thread also keeps the inbox within its retention limits (retention.py):
after every commit, and every check_interval seconds when messages are few, it looks (a few
header reads); while something is past a limit it runs one bounded prune or vacuum step after
each commit (or at once when nothing is queued), so a prune delays a sender's COMMIT by one
step at most, and the limits are kept to within a commit's batch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from messengerd.core.message import Message
from messengerd.core.store import retention, schema
from messengerd.core.store.retention import NO_LIMIT, Retention

log = logging.getLogger(__name__)

MAX_BATCH_WRITES = 256
"""Writes in one transaction, so one COMMIT holds SQLite's write lock only briefly."""

CHECKPOINT_INTERVAL = 0.5
"""Seconds after a commit before the writer copies the WAL into the database, at the first
moment nothing is queued: between messages, not inside the COMMIT of some sender's message.
At 2,000 messages a second the WAL holds a few MiB in between."""

CHECKPOINT_BACKSTOP_PAGES = 4_096
"""WAL pages (16 MiB) at which a COMMIT checkpoints itself, should a long burst leave the
writer no idle moment: the one sender whose COMMIT crosses it waits for the copy, and the
WAL never holds the store much past its max_size_mb."""

JOIN_TIMEOUT = 30.0
"""Seconds close() waits for the thread to commit what is queued and stop."""

RETENTION_CHECK_INTERVAL = 60.0
"""Seconds between looks at the limits when no message comes: max_age_days is kept to within
a minute on an idle inbox."""

NO_ROOM_ERRORS = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR_SHMSIZE})
"""SQLite's (extended) result codes for a disk with no room: SQLITE_FULL when a write to the
database or its log fails with ENOSPC (or the file reached `PRAGMA max_page_count`);
SQLITE_IOERR_SHMSIZE when a new connection cannot grow its -shm file (seen on a full tmpfs)."""


class InboxError(Exception):
    """The inbox cannot store or read messages; the message says why."""


class InboxFull(InboxError):
    """Too many messages wait to be committed; refuse this one (SMB ERRnoroom)."""


class DiskFull(InboxError):
    """The disk (or the file's page limit) has no room for the message; refuse it (SMB
    ERRnoroom). The next store tries again: space that returns is used without a restart."""


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

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout: float = schema.BUSY_TIMEOUT,
        retention: Retention = NO_LIMIT,
        check_interval: float = RETENTION_CHECK_INTERVAL,
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.retention = retention
        self.check_interval = check_interval
        self.batches = 0
        """Transactions committed (for tests and metrics)."""
        self.pruned = 0
        """Messages the retention limits have deleted since the thread started."""
        self.last_prune_error: str | None = None
        """Why the last prune or vacuum step failed; None once one succeeds."""
        self._queue: collections.deque[_Write] = collections.deque()
        self._wake = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread now, not at the first message: an inbox with limits is kept
        within them from the start, even if no message comes."""
        with self._wake:
            self._start()

    def _start(self) -> None:
        if self._closing:
            raise InboxError("the inbox is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
            self._thread.start()

    def submit(self, message: Message, future: asyncio.Future[StoreResult]) -> None:
        """Queue `message`; `future` (of the loop it was made on) gets its outcome."""
        with self._wake:
            self._start()
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
        # When the retention limits are next looked at; the first look comes at once.
        housekeeping_due = time.monotonic() if self._limited() else None
        # Messages held, counted at the first look and kept up to date by each commit.
        held: int | None = None
        try:
            while True:
                due = [when for when in (checkpoint_due, housekeeping_due) if when is not None]
                batch = self._take(min(due, default=None))
                if batch is None:
                    break
                if batch:
                    conn, outcomes = self._commit(conn, batch)
                    _resolve(batch, outcomes)
                    if conn is not None and checkpoint_due is None:
                        checkpoint_due = time.monotonic() + CHECKPOINT_INTERVAL
                    if conn is not None and self._limited():
                        added = sum(1 for outcome in outcomes if _new_row(outcome))
                        held, past = self._look(conn, held, added)
                        if past:
                            housekeeping_due = time.monotonic()
                now = time.monotonic()
                if housekeeping_due is not None and housekeeping_due <= now:
                    # One bounded step, then the next batch (if any) before another one.
                    conn, more = self._housekeep(conn)
                    housekeeping_due = now if more else now + self.check_interval
                    if not more:
                        held = None  # counted again at the next look
                    if conn is not None and checkpoint_due is None:
                        checkpoint_due = now + CHECKPOINT_INTERVAL
                elif not batch and conn is not None:
                    # Nothing queued: the moment for the copy no sender's COMMIT should pay
                    # for (SQLite's own would run inside the COMMIT that crosses its mark).
                    _checkpoint(conn, "PASSIVE")
                    checkpoint_due = None
        finally:
            if conn is not None:
                # A clean stop leaves no WAL behind at its full size.
                _checkpoint(conn, "TRUNCATE")
                conn.close()

    def _limited(self) -> bool:
        return self.retention != NO_LIMIT

    def _look(
        self, conn: sqlite3.Connection, held: int | None, added: int
    ) -> tuple[int | None, bool]:
        """Messages held after a commit that added `added`, and whether a limit is passed."""
        try:
            held = retention.count(conn) if held is None else held + added
            return held, retention.past_limits(conn, self.retention, datetime.now(UTC), held)
        except sqlite3.Error:
            return None, True  # the prune step will say what is wrong

    def _take(self, due: float | None) -> list[_Write] | None:
        """The next batch, waiting for one; [] when nothing is queued and a checkpoint or a
        look at the limits is `due`; None once closing with nothing left."""
        with self._wake:
            while not self._queue and not self._closing:
                if due is None:
                    self._wake.wait()
                    continue
                remaining = due - time.monotonic()
                if remaining <= 0:
                    return []
                self._wake.wait(remaining)
            if not self._queue:
                return None
            count = min(len(self._queue), MAX_BATCH_WRITES)
            return [self._queue.popleft() for _ in range(count)]

    def _connect(self, conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            conn = schema.connect(
                self.path,
                timeout=self.busy_timeout,
                cached_statements=schema.CACHED_STATEMENTS,
            )
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_BACKSTOP_PAGES}")
        return conn

    def _commit(
        self, conn: sqlite3.Connection | None, batch: list[_Write]
    ) -> tuple[sqlite3.Connection | None, list[Outcome]]:
        try:
            conn = self._connect(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                stored = schema.insert_batch(conn, [schema.row(w.message) for w in batch])
                conn.execute("COMMIT")
            except BaseException:
                schema.rollback(conn)
                raise
        except Exception as exc:
            if _is_full(exc):
                # SQLite has rolled the transaction back and the connection is sound; a new
                # one would need room on the full disk for its shared-memory file too.
                error: InboxError = DiskFull(f"no room to store messages in {self.path}: {exc}")
                return conn, [error] * len(batch)
            # A connection that failed otherwise is not trusted with the next batch.
            if conn is not None:
                conn.close()
            error = InboxError(f"cannot store in {self.path}: {exc or type(exc).__name__}")
            return None, [error] * len(batch)
        self.batches += 1
        return conn, [StoreResult(id, duplicate) for id, duplicate in stored]

    def _housekeep(self, conn: sqlite3.Connection | None) -> tuple[sqlite3.Connection | None, bool]:
        """One prune step, else one vacuum step; True while there is more to do."""
        try:
            conn = self._connect(conn)
            deleted = retention.prune_step(conn, self.retention, datetime.now(UTC))
            returned = 0 if deleted else retention.vacuum_step(conn)
        except sqlite3.Error as exc:
            # Busy past busy_timeout (a long `history --prune`), or no room to log the delete:
            # tried again at the next look; messages are stored meanwhile as before.
            if conn is not None:
                conn.close()
            if self.last_prune_error is None:
                log.warning("cannot prune %s now: %s; trying again later", self.path, exc)
            self.last_prune_error = str(exc)
            return None, False
        self.last_prune_error = None
        if deleted:
            self.pruned += deleted
            log.debug("pruned %d messages past the limits (%s)", deleted, self.retention.describe())
        return conn, bool(deleted or returned)


def _new_row(outcome: Outcome) -> bool:
    return isinstance(outcome, StoreResult) and not outcome.duplicate


def _is_full(exc: BaseException) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in NO_ROOM_ERRORS


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
