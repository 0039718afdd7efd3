"""The inbox: every message, durable in SQLite before its sender is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from messengerd.message import Message
from messengerd.message import Path as MessagePath

log = logging.getLogger(__name__)

DATABASE_NAME = "messages.sqlite3"
"""The inbox's file in the data directory."""

SCHEMA_VERSION = 2
"""Kept in `PRAGMA user_version`; a newer file is refused rather than misread."""

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

MAX_PENDING_WRITES = 1024
"""store() calls queued or being committed; the next one raises InboxFull."""

MAX_BATCH_WRITES = 256
"""Writes in one transaction, so one COMMIT holds SQLite's write lock only briefly."""

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another's write lock (daemon and CLI share the file)."""

PATHS = frozenset(get_args(MessagePath))

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
# text_digest_of() is _text_digest, registered for the migration only. text_digest stays
# nullable because ALTER TABLE cannot add a NOT NULL column without a default; the UPDATE
# fills it for every older row and _insert() sets it for every new one.

_FIND_DUPLICATE = (
    "SELECT id FROM messages WHERE sender_key = ? AND recipient_key = ? AND text_digest = ?"
    " AND received_at BETWEEN ? AND ? AND text = ? ORDER BY id LIMIT 1"
)
"""The first stored copy of a message within the window; `text = ?` so that a digest
collision never folds two different texts into one."""

_COLUMNS = "id, received_at, sender, recipient, text, raw, path, peer, codepage, read"


class InboxError(Exception):
    """The inbox cannot store or read messages; the message says why."""


class InboxFull(InboxError):
    """MAX_PENDING_WRITES messages wait to be committed; refuse this one (SMB ERRnoroom)."""


@dataclass(frozen=True)
class StoreResult:
    """What store() did: the message's id, and whether it was already there (a duplicate)."""

    id: int
    duplicate: bool = False


@dataclass(frozen=True)
class StoredMessage(Message):
    """A message as the inbox holds it: with its id and read flag."""

    id: int = field(kw_only=True)
    read: bool = field(default=False, kw_only=True)

    @classmethod
    def from_message(cls, message: Message, id: int, read: bool = False) -> StoredMessage:
        """`message` under the id store() gave it, e.g. for sinks that mark messages read."""
        values = {f.name: getattr(message, f.name) for f in dataclasses.fields(Message)}
        return cls(**values, id=id, read=read)

    def to_json(self) -> dict[str, Any]:
        """The keys `messengerd history --json` prints and `--export` writes."""
        return {
            "id": self.id,
            **super().to_json(),
            "codepage": self.codepage,
            "read": self.read,
        }


@dataclass
class _Write:
    message: Message
    future: asyncio.Future[StoreResult]
    loop: asyncio.AbstractEventLoop


_STOP = None
"""Queued by close(): the writer commits what is ahead of it, then ends."""


def _utc_text(when: datetime) -> str:
    """A fixed-width ISO 8601 UTC time, so that text order is time order in SQL."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # Message.received_at is UTC by contract
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def _key(name: str) -> str:
    """A From or To name for case-insensitive matching (NetBIOS names ignore case)."""
    return name.casefold()


def _text_digest(text: str) -> bytes:
    """The text_digest column: TEXT_DIGEST_SIZE bytes of BLAKE2b over the text's UTF-8."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=TEXT_DIGEST_SIZE).digest()


class Inbox:
    """`messages.sqlite3` in a data directory: async store() for the daemon, sync reads for all.

    Writes run on one writer thread that commits whatever is queued in one transaction
    (group commit) and resolves each store() only after COMMIT returned. Reads open their
    own short read-only connection, so they work from any thread or process, daemon or not.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        create: bool = True,
        max_pending: int = MAX_PENDING_WRITES,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        """Open (or with `create`, make) the inbox; FileNotFoundError if absent and not `create`.

        `on_batch` is called on the writer thread before each transaction with its number
        of writes (for tests and metrics).
        """
        self.path = Path(data_dir).resolve() / DATABASE_NAME
        self.max_pending = max_pending
        self.batches = 0
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pending = 0
        self._writer: threading.Thread | None = None
        self._closed = False
        self._prepare(create)

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """True when `data_dir` holds an inbox (the daemon has started there at least once)."""
        return (Path(data_dir) / DATABASE_NAME).is_file()

    @property
    def pending(self) -> int:
        """store() calls not yet answered."""
        return self._pending

    # -- schema --------------------------------------------------------------------------

    def _prepare(self, create: bool) -> None:
        if not self.path.is_file():
            if not create:
                raise FileNotFoundError(f"no inbox at {self.path}")
            # Messages are private: a directory made here is for its owner only.
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            with contextlib.closing(self._connect()) as conn:
                if self._version(conn) != SCHEMA_VERSION:
                    self._migrate(conn)
        except sqlite3.Error as exc:
            raise InboxError(f"cannot open {self.path}: {exc}") from None

    def _version(self, conn: sqlite3.Connection) -> int:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise InboxError(
                f"{self.path} was written by a newer messengerd (schema {version}, "
                f"this one knows {SCHEMA_VERSION}): upgrade messengerd"
            )
        return version

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.create_function("text_digest_of", 1, _text_digest, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have just migrated.
            for version in range(self._version(conn) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        # Durable before ack: in WAL mode FULL syncs the log at every COMMIT.
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _connect_readonly(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path.as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
        )
        # SQLite's lower() and LIKE fold ASCII only; names and text are often not ASCII.
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        return conn

    # -- writing -------------------------------------------------------------------------

    async def store(self, message: Message) -> StoreResult:
        """Commit `message` (or find it already stored); InboxFull when too many are queued."""
        if message.path not in PATHS:
            raise ValueError(f"unknown message path {message.path!r}")
        loop = asyncio.get_running_loop()
        write = _Write(message, loop.create_future(), loop)
        with self._lock:
            if self._closed:
                raise InboxError("the inbox is closed")
            if self._pending >= self.max_pending:
                raise InboxFull(f"{self._pending} messages are waiting to be stored")
            self._pending += 1
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_forever, name="messengerd-inbox", daemon=True
                )
                self._writer.start()
            self._queue.put(write)
        return await write.future

    def _write_forever(self) -> None:
        conn: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch = [first]
            # Everything that queued up during the last COMMIT goes into this one.
            while len(batch) < MAX_BATCH_WRITES:
                try:
                    write = self._queue.get_nowait()
                except queue.Empty:
                    break
                if write is _STOP:
                    stopping = True
                    break
                batch.append(write)
            conn = self._commit(conn, batch)
        if conn is not None:
            conn.close()

    def _commit(
        self, conn: sqlite3.Connection | None, batch: list[_Write]
    ) -> sqlite3.Connection | None:
        """Store `batch` in one transaction; answer each write. Returns the connection to reuse."""
        results: list[StoreResult] = []
        error: InboxError | None = None
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            if conn is None:
                conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = [self._insert(conn, write.message) for write in batch]
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self.batches += 1
        except Exception as exc:
            log.error("inbox: %d messages not stored: %s", len(batch), exc)
            error = InboxError(f"cannot store in {self.path}: {exc}")
            # A connection that failed is not trusted with the next batch.
            if conn is not None:
                conn.close()
            conn = None
        with self._lock:
            self._pending -= len(batch)
        for index, write in enumerate(batch):
            _settle(write, results[index] if error is None else error)
        return conn

    def _insert(self, conn: sqlite3.Connection, message: Message) -> StoreResult:
        received_at = message.received_at
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=UTC)
        window = timedelta(seconds=DUPLICATE_WINDOW)
        sender_key, recipient_key = _key(message.sender), _key(message.recipient)
        text_digest = _text_digest(message.text)
        original = conn.execute(
            _FIND_DUPLICATE,
            (
                sender_key,
                recipient_key,
                text_digest,
                _utc_text(received_at - window),
                _utc_text(received_at + window),
                message.text,
            ),
        ).fetchone()
        if original is not None:
            return StoreResult(original[0], duplicate=True)
        cursor = conn.execute(
            "INSERT INTO messages (received_at, sender, recipient, sender_key, recipient_key,"
            " text, text_digest, raw, path, peer, codepage)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _utc_text(received_at),
                message.sender,
                message.recipient,
                sender_key,
                recipient_key,
                message.text,
                text_digest,
                message.raw,
                message.path,
                message.peer,
                message.codepage,
            ),
        )
        assert cursor.lastrowid is not None
        return StoreResult(cursor.lastrowid)

    def close(self) -> None:
        """Commit every write already queued, then stop the writer thread."""
        with self._lock:
            writer = self._writer
            if writer is not None and not self._closed:
                self._queue.put(_STOP)
            self._closed = True
        if writer is not None:
            writer.join()

    async def aclose(self) -> None:
        """close() without blocking the event loop while the last batch commits."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Inbox:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            with contextlib.closing(self._connect_readonly()) as conn:
                yield conn
        except sqlite3.Error as exc:
            raise InboxError(f"cannot read {self.path}: {exc}") from None

    def query(
        self,
        *,
        since: datetime | None = None,
        sender: str | None = None,
        recipient: str | None = None,
        grep: str | None = None,
        limit: int | None = None,
        unread_only: bool = False,
        after_id: int | None = None,
    ) -> list[StoredMessage]:
        """Matching messages, oldest first; with `limit`, only the newest `limit` of them.

        From and To match ignoring case, `grep` is a substring of the text ignoring case,
        `since` includes that instant (a naive datetime is taken as UTC).
        """
        return list(
            self._select(
                since=since,
                sender=sender,
                recipient=recipient,
                grep=grep,
                limit=limit,
                unread_only=unread_only,
                after_id=after_id,
            )
        )

    def _select(self, *, limit: int | None = None, **filters: Any) -> Iterator[StoredMessage]:
        where, params = _where(**filters)
        sql = f"SELECT {_COLUMNS} FROM messages WHERE {where} ORDER BY id"
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be 0 or more, not {limit}")
            sql = (
                f"SELECT * FROM (SELECT {_COLUMNS} FROM messages WHERE {where}"
                " ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
            params.append(limit)
        with self._reading() as conn:
            for row in conn.execute(sql, params):
                yield _stored(row)

    def get(self, id: int) -> StoredMessage | None:
        """The message with this id, or None."""
        with self._reading() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (id,)).fetchone()
        return None if row is None else _stored(row)

    def after(self, id: int, **filters: Any) -> list[StoredMessage]:
        """Messages stored after the one with this id, oldest first (for following)."""
        return self.query(after_id=id, **filters)

    def latest_id(self) -> int:
        """The id of the newest message, 0 when there is none."""
        with self._reading() as conn:
            return conn.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()[0]

    def count(self, **filters: Any) -> int:
        """How many messages match (the query() filters, without `limit`)."""
        where, params = _where(**filters)
        with self._reading() as conn:
            return conn.execute(f"SELECT count(*) FROM messages WHERE {where}", params).fetchone()[
                0
            ]

    def mark_read(self, ids: Iterable[int] | None = None, *, read: bool = True) -> int:
        """Set the read flag of these messages (None: every message); returns how many changed."""
        try:
            with contextlib.closing(self._connect()) as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    before = conn.total_changes
                    if ids is None:
                        conn.execute("UPDATE messages SET read = ? WHERE read != ?", (read, read))
                    else:
                        conn.executemany(
                            "UPDATE messages SET read = ? WHERE id = ? AND read != ?",
                            ((read, id, read) for id in ids),
                        )
                    changed = conn.total_changes - before
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
        except sqlite3.Error as exc:
            raise InboxError(f"cannot write {self.path}: {exc}") from None
        return changed

    def export_jsonl(self, path: Path, **filters: Any) -> int:
        """Write matching messages to `path`, one JSON object a line; returns how many."""
        written = 0
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            for message in self._select(**filters):
                out.write(json.dumps(message.to_json(), ensure_ascii=False) + "\n")
                written += 1
        return written


def _rollback(conn: sqlite3.Connection) -> None:
    # A failed COMMIT may have rolled back already (I/O error); a second ROLLBACK would
    # raise and hide the error that matters.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _casefold(value: str | None) -> str | None:
    return None if value is None else value.casefold()


def _where(
    *,
    since: datetime | None = None,
    sender: str | None = None,
    recipient: str | None = None,
    grep: str | None = None,
    unread_only: bool = False,
    after_id: int | None = None,
) -> tuple[str, list[Any]]:
    clauses = ["1"]
    params: list[Any] = []
    if since is not None:
        clauses.append("received_at >= ?")
        params.append(_utc_text(since))
    if sender is not None:
        clauses.append("sender_key = ?")
        params.append(_key(sender))
    if recipient is not None:
        clauses.append("recipient_key = ?")
        params.append(_key(recipient))
    if grep is not None:
        clauses.append("instr(casefold(text), ?) > 0")
        params.append(grep.casefold())
    if unread_only:
        clauses.append("read = 0")
    if after_id is not None:
        clauses.append("id > ?")
        params.append(after_id)
    return " AND ".join(clauses), params


def _stored(row: tuple[Any, ...]) -> StoredMessage:
    id, received_at, sender, recipient, text, raw, path, peer, codepage, read = row
    return StoredMessage(
        sender=sender,
        recipient=recipient,
        text=text,
        path=path,
        peer=peer,
        received_at=datetime.fromisoformat(received_at),
        raw=bytes(raw),
        codepage=codepage,
        id=id,
        read=bool(read),
    )


def _settle(write: _Write, outcome: StoreResult | InboxError) -> None:
    """Answer one store() on its own event loop (called from the writer thread)."""

    def answer() -> None:
        if write.future.done():
            return  # the caller gave up (cancelled); the row is stored all the same
        if isinstance(outcome, InboxError):
            write.future.set_exception(outcome)
        else:
            write.future.set_result(outcome)

    # The caller's loop is gone (closed at shutdown): nobody is waiting for the answer.
    with contextlib.suppress(RuntimeError):
        write.loop.call_soon_threadsafe(answer)
