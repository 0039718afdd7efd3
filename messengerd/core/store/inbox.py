"""The inbox: every message durable in SQLite before its sender is acknowledged; the reads.

`Inbox.store()` hands a message to the writer thread (writer.py) and returns once its
COMMIT did, or raises InboxError: the caller then tells the sender to try again. Reads open
their own short read-only connection, so they work from any thread or process, daemon or
not (`messengerd history` reads with the daemon stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

from messengerd.core.message import Message, MessagePath
from messengerd.core.store import retention, schema
from messengerd.core.store.retention import NO_LIMIT, Retention
from messengerd.core.store.schema import DATABASE_NAME, name_key, utc_text
from messengerd.core.store.writer import (
    RETENTION_CHECK_INTERVAL,
    DiskFull,
    InboxError,
    InboxFull,
    StoreResult,
    StoreWriter,
)

log = logging.getLogger(__name__)

MAX_PENDING_WRITES = 1024
"""Messages queued or being committed; the next store() raises InboxFull (ERRnoroom)."""

STORE_TIMEOUT = 10.0
"""Seconds store() waits for its COMMIT before it answers InboxError: a disk that stalls (or
a write lock held past busy_timeout) costs a sender an error reply and a retry, never a
session held forever. The row may still land; the sender's retry is then a duplicate."""

PATHS = frozenset(get_args(MessagePath))

__all__ = [
    "DATABASE_NAME",
    "DiskFull",
    "Inbox",
    "InboxError",
    "InboxFull",
    "StoreResult",
    "StoredMessage",
]


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


@dataclass(frozen=True)
class PruneResult:
    """What `Inbox.prune()` did: messages deleted, and the files' size before and after."""

    deleted: int
    bytes_before: int
    bytes_after: int


class Inbox:
    """`messages.sqlite3` in a data directory: async store() for the daemon, sync reads for all."""

    def __init__(
        self,
        data_dir: Path,
        *,
        create: bool = True,
        max_pending: int = MAX_PENDING_WRITES,
        busy_timeout: float = schema.BUSY_TIMEOUT,
        store_timeout: float = STORE_TIMEOUT,
        retention: Retention = NO_LIMIT,
        check_interval: float = RETENTION_CHECK_INTERVAL,
    ) -> None:
        """Open (or with `create`, make) the inbox; FileNotFoundError if absent and not `create`.

        `busy_timeout`: seconds the writer waits for a write lock another process holds
        before it gives up on a batch (its senders get an error reply and send again).
        `retention`: the limits the writer keeps the inbox within while it is open, looking
        every `check_interval` seconds (and every few hundred messages); the default keeps
        every message. InboxError when the file cannot be opened or made, or a newer
        messengerd wrote it.
        """
        self.path = Path(data_dir).resolve() / DATABASE_NAME
        self.max_pending = max_pending
        self.store_timeout = store_timeout
        self.retention = retention
        self.pending = 0
        """Messages handed to the writer and not yet answered."""
        self.disk_full = False
        """True from a store the disk had no room for until one that stored."""
        self._writer = StoreWriter(
            self.path,
            busy_timeout=busy_timeout,
            retention=retention,
            check_interval=check_interval,
        )
        self._closed = False
        self._prepare(create)
        if create:
            self._enable_incremental_vacuum()
        if retention != NO_LIMIT:
            self._writer.start()

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """True when `data_dir` holds an inbox (the daemon has started there at least once)."""
        return (Path(data_dir) / DATABASE_NAME).is_file()

    @property
    def batches(self) -> int:
        """Transactions the writer has committed (for tests and metrics)."""
        return self._writer.batches

    def _prepare(self, create: bool) -> None:
        if not create and self.path.is_file() and not os.access(self.path, os.W_OK):
            # Another user's inbox, shared with this one's group (messengerd.core.datadir):
            # only its owner's daemon creates or migrates it; read it as it is.
            self._check_readable()
            return
        if not self.path.is_file():
            if not create:
                raise FileNotFoundError(f"no inbox at {self.path}")
            # Messages are private: a directory made here is for its owner only.
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise InboxError(f"cannot create {self.path.parent}: {exc.strerror}") from None
        try:
            schema.prepare(self.path)
        except schema.SchemaError as exc:
            raise InboxError(str(exc)) from None
        except (sqlite3.Error, OSError) as exc:
            raise InboxError(f"cannot open {self.path}: {exc}") from None

    def _enable_incremental_vacuum(self) -> None:
        """Switch a file made before retention to give freed pages back (once, at the first
        start of this version); if it cannot now, it is tried at the next start."""
        try:
            if schema.enable_incremental_vacuum(self.path):
                log.info("%s now gives the space of pruned messages back", self.path)
        except sqlite3.Error as exc:
            log.warning(
                "%s keeps the space of pruned messages for new ones (cannot VACUUM it now: "
                "%s); trying again at the next start",
                self.path,
                exc,
            )

    def _check_readable(self) -> None:
        try:
            with self._reading() as conn:
                found = schema.version(conn, self.path)
        except schema.SchemaError as exc:
            raise InboxError(str(exc)) from None
        if found != schema.SCHEMA_VERSION:
            raise InboxError(
                f"{self.path} has schema {found}, this messengerd reads {schema.SCHEMA_VERSION}: "
                "start its daemon once to bring it up to date"
            )

    # -- writing -------------------------------------------------------------------------

    async def store(self, message: Message) -> StoreResult:
        """Commit `message` (or find a copy already stored) and return once it is durable.

        InboxFull when max_pending messages already wait; InboxError when the store fails
        or takes longer than store_timeout.
        """
        if message.path not in PATHS:
            raise ValueError(f"unknown message path {message.path!r}")
        if self._closed:
            raise InboxError("the inbox is closed")
        if self.pending >= self.max_pending:
            raise InboxFull(f"{self.pending} messages are waiting to be stored")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[StoreResult] = loop.create_future()
        self._writer.submit(message, future)
        self.pending += 1
        timer = loop.call_later(self.store_timeout, _time_out, future, self.store_timeout)
        try:
            result = await future
        except DiskFull as exc:
            if not self.disk_full:
                # Once, not per message: a full disk refuses every sender until it has room.
                log.error(
                    "%s: every sender is answered ERRnoroom until there is room; free space "
                    "on that disk, or lower [store] max_size_mb",
                    exc,
                )
                self.disk_full = True
            raise
        finally:
            timer.cancel()
            self.pending -= 1
        if self.disk_full:
            log.warning("room again in %s: messages are stored again", self.path)
            self.disk_full = False
        return result

    def close(self) -> None:
        """Commit what is queued and stop the writer (blocking; from a loop, `aclose()`)."""
        self._closed = True
        self._writer.close()

    async def aclose(self) -> None:
        """Refuse new writes, let the writer commit what it has, and stop it."""
        self._closed = True
        await asyncio.to_thread(self._writer.close)

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
            with contextlib.closing(schema.connect_readonly(self.path)) as conn:
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
        sql = f"SELECT {schema.COLUMNS} FROM messages WHERE {where} ORDER BY id"
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be 0 or more, not {limit}")
            sql = (
                f"SELECT * FROM (SELECT {schema.COLUMNS} FROM messages WHERE {where}"
                " ORDER BY id DESC LIMIT ?) ORDER BY id"
            )
            params.append(limit)
        with self._reading() as conn:
            for row in conn.execute(sql, params):
                yield _stored(row)

    def get(self, id: int) -> StoredMessage | None:
        """The message with this id, or None."""
        with self._reading() as conn:
            sql = f"SELECT {schema.COLUMNS} FROM messages WHERE id = ?"
            row = conn.execute(sql, (id,)).fetchone()
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
            with contextlib.closing(schema.connect(self.path)) as conn:
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
                    schema.rollback(conn)
                    raise
        except sqlite3.Error as exc:
            raise InboxError(f"cannot write {self.path}: {exc}") from None
        return changed

    def usage(self) -> dict[str, Any]:
        """The store for `status`: its `path`, `bytes` on disk (the database and its
        write-ahead log), `messages` held, the `oldest` one's time, the `limits` it is kept
        within, messages `pruned` by them in this process, and whether the disk is full.
        `messages` and `oldest` are None when the file cannot be read just now (locked past
        busy_timeout)."""
        messages: int | None = None
        oldest: datetime | None = None
        with contextlib.suppress(InboxError), self._reading() as conn:
            messages = retention.count(conn)
            oldest = retention.oldest(conn)
        return {
            "path": os.fspath(self.path),
            "bytes": retention.file_bytes(self.path),
            "messages": messages,
            "oldest": None if oldest is None else oldest.isoformat(),
            "limits": self.retention.to_json(),
            "pruned": self._writer.pruned,
            "disk_full": self.disk_full,
        }

    def prune(self, limits: Retention, now: datetime | None = None) -> PruneResult:
        """Delete every message past `limits` now, oldest first, and give all the freed
        space back to the file system (`messengerd history --prune`).

        Each step is a short transaction of its own, so a daemon storing into the same file
        meanwhile waits for one step at a time, not for the whole prune.
        """
        before = retention.file_bytes(self.path)
        deleted = 0
        try:
            with contextlib.closing(schema.connect(self.path)) as conn:
                while step := retention.prune_step(conn, limits, now or datetime.now(UTC)):
                    deleted += step
                if retention.incremental(conn):
                    while retention.vacuum_step(conn, keep=0):
                        pass
                    # Shrink the file now: the WAL's frames go in and the file is cut.
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            self._enable_incremental_vacuum()
        except sqlite3.Error as exc:
            raise InboxError(f"cannot prune {self.path}: {exc}") from None
        return PruneResult(deleted, before, retention.file_bytes(self.path))

    def export_jsonl(self, path: Path, **filters: Any) -> int:
        """Write matching messages to `path`, one JSON object a line; returns how many."""
        written = 0
        with open(path, "w", encoding="utf-8", newline="\n") as out:
            for message in self._select(**filters):
                out.write(json.dumps(message.to_json(), ensure_ascii=False) + "\n")
                written += 1
        return written


def _time_out(future: asyncio.Future[StoreResult], timeout: float) -> None:
    if not future.done():
        future.set_exception(InboxError(f"the store took longer than {timeout:g} s"))


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
        params.append(utc_text(since))
    if sender is not None:
        clauses.append("sender_key = ?")
        params.append(name_key(sender))
    if recipient is not None:
        clauses.append("recipient_key = ?")
        params.append(name_key(recipient))
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
