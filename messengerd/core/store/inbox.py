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
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

from messengerd.core.message import Message, MessagePath
from messengerd.core.store import schema
from messengerd.core.store.schema import DATABASE_NAME, name_key, utc_text
from messengerd.core.store.writer import InboxError, InboxFull, StoreResult, StoreWriter

MAX_PENDING_WRITES = 1024
"""Messages queued or being committed; the next store() raises InboxFull (ERRnoroom)."""

STORE_TIMEOUT = 10.0
"""Seconds store() waits for its COMMIT before it answers InboxError: a disk that stalls (or
a write lock held past busy_timeout) costs a sender an error reply and a retry, never a
session held forever. The row may still land; the sender's retry is then a duplicate."""

PATHS = frozenset(get_args(MessagePath))

__all__ = [
    "DATABASE_NAME",
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
    ) -> None:
        """Open (or with `create`, make) the inbox; FileNotFoundError if absent and not `create`.

        `busy_timeout`: seconds the writer waits for a write lock another process holds
        before it gives up on a batch (its senders get an error reply and send again).
        InboxError when the file cannot be opened or made, or a newer messengerd wrote it.
        """
        self.path = Path(data_dir).resolve() / DATABASE_NAME
        self.max_pending = max_pending
        self.store_timeout = store_timeout
        self.pending = 0
        """Messages handed to the writer and not yet answered."""
        self._writer = StoreWriter(self.path, busy_timeout=busy_timeout)
        self._closed = False
        self._prepare(create)

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
            return await future
        finally:
            timer.cancel()
            self.pending -= 1

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
        """The store's `path`, `bytes` on disk (the database and its write-ahead log) and
        `messages` held, for `status`."""
        size = 0
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            with contextlib.suppress(FileNotFoundError):
                size += path.stat().st_size
        try:
            messages: int | None = self.count()
        except InboxError:
            messages = None  # unreadable just now (locked past busy_timeout): say nothing
        return {"path": os.fspath(self.path), "bytes": size, "messages": messages}

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
