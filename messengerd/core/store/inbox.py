"""The inbox: every message, durable in SQLite before its sender is acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, get_args

from messengerd import inbox_writer
from messengerd.core.message import Message, MessagePath
from messengerd.inbox_writer import BUSY_TIMEOUT, text_digest, utc_text
from messengerd.inbox_writer import DUPLICATE_WINDOW as DUPLICATE_WINDOW
from messengerd.inbox_writer import TEXT_DIGEST_SIZE as TEXT_DIGEST_SIZE
from messengerd.inbox_writer import name_key as _key

log = logging.getLogger(__name__)

DATABASE_NAME = "messages.sqlite3"
"""The inbox's file in the data directory."""

SCHEMA_VERSION = 2
"""Kept in `PRAGMA user_version`; a newer file is refused rather than misread."""

MAX_PENDING_WRITES = 1024
"""Messages queued or being committed (store() and submit()); the next one raises InboxFull."""

WRITER_MODULE = "messengerd.inbox_writer"
"""`python -m WRITER_MODULE DATABASE FD BUSY_TIMEOUT`: the process that commits."""

WRITER_EXIT_TIMEOUT = 30.0
"""Seconds close() waits for the writer process's last answers, and then for its exit,
before it kills it."""

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
# text_digest_of() is text_digest, registered for the migration only. text_digest stays
# nullable because ALTER TABLE cannot add a NOT NULL column without a default; the UPDATE
# fills it for every older row and the writer (inbox_writer.py) sets it for every new one.


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


Stored = Callable[[StoreResult | InboxError], None]
"""What submit() calls with a message's outcome: its StoreResult, or why it was not stored."""


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
    """`messages.sqlite3` in a data directory: async store() for the daemon, sync reads for all.

    Writes go to a writer process that commits whatever has arrived in one transaction
    (group commit); each store() returns only after its COMMIT did. Reads open their own
    short read-only connection, so they work from any thread or process, daemon or not.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        create: bool = True,
        max_pending: int = MAX_PENDING_WRITES,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        """Open (or with `create`, make) the inbox; FileNotFoundError if absent and not `create`.

        `busy_timeout`: seconds the writer waits for a write lock another process holds
        before it gives up on a batch (its senders get an error reply and send again).
        """
        self.path = Path(data_dir).resolve() / DATABASE_NAME
        self.max_pending = max_pending
        self.busy_timeout = busy_timeout
        self.batches = 0
        """Transactions the writer has committed (for tests and metrics)."""
        self._writer: _WriterProcess | None = None
        self._sequence = 0
        self._waiting: dict[int, Stored] = {}
        self._drained: asyncio.Future[None] | None = None
        self._closing = False
        self._prepare(create)

    @staticmethod
    def exists(data_dir: Path) -> bool:
        """True when `data_dir` holds an inbox (the daemon has started there at least once)."""
        return (Path(data_dir) / DATABASE_NAME).is_file()

    @property
    def pending(self) -> int:
        """Messages sent to be stored and not yet answered."""
        return len(self._waiting)

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
        conn.create_function("text_digest_of", 1, text_digest, deterministic=True)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have just migrated.
            for version in range(self._version(conn) + 1, SCHEMA_VERSION + 1):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            inbox_writer.rollback(conn)
            raise

    def _connect(self) -> sqlite3.Connection:
        return inbox_writer.connect(str(self.path))

    def _connect_readonly(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path.as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT, isolation_level=None
        )
        # SQLite's lower() and LIKE fold ASCII only; names and text are often not ASCII.
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        return conn

    # -- writing -------------------------------------------------------------------------
    #
    # The writer process (messengerd/inbox_writer.py) commits; submit() sends it the message
    # and calls back with its answer (store() awaits the same). What is submitted during one
    # loop iteration goes in one frame, and the writer puts whatever has arrived into one
    # transaction (group commit), so a busy second costs a few hundred COMMITs, not one per
    # message.

    async def store(self, message: Message) -> StoreResult:
        """Commit `message` (or find it already stored); InboxFull when too many are queued.

        Call it from one event loop at a time: the writer process answers on that loop.
        """
        future: asyncio.Future[StoreResult] = asyncio.get_running_loop().create_future()
        self.submit(message, functools.partial(_settle, future))
        return await future

    def submit(self, message: Message, stored: Stored) -> None:
        """Send `message` to be committed now; `stored(StoreResult or InboxError)` is called
        on this loop once it is (or cannot be). InboxFull, InboxError at once instead.

        store() without a task: the session listener acknowledges from `stored`, so its
        reply leaves in the loop iteration that reads the writer's answer.
        """
        if message.path not in PATHS:
            raise ValueError(f"unknown message path {message.path!r}")
        if self._closing:
            raise InboxError("the inbox is closed")
        if len(self._waiting) >= self.max_pending:
            raise InboxFull(f"{len(self._waiting)} messages are waiting to be stored")
        writer = self._writer_on(asyncio.get_running_loop())
        self._sequence += 1
        self._waiting[self._sequence] = stored
        writer.send(write_request(self._sequence, message))

    async def start(self) -> None:
        """Start the writer process now, on this loop, rather than at the first store():
        the first message is not kept waiting for it, and a writer that cannot start is
        an error at start-up. InboxError if it cannot be started."""
        if self._closing:
            raise InboxError("the inbox is closed")
        self._writer_on(asyncio.get_running_loop())

    def _writer_on(self, loop: asyncio.AbstractEventLoop) -> _WriterProcess:
        """The writer process answering on `loop`, started if there is none."""
        writer = self._writer
        if writer is not None and writer.loop is loop and not writer.ended:
            return writer
        if writer is not None:
            writer.finish_sync()  # a store() from another loop, or the last writer ended
        self._writer = _WriterProcess(
            self.path, self.busy_timeout, loop, self._answered, self._writer_ended
        )
        return self._writer

    def _answered(self, answer: tuple[Any, ...]) -> None:
        """On the writer's loop: answer the messages of one transaction."""
        if answer[0] == "stored":
            self.batches += 1
            for sequence, id, duplicate in answer[1]:
                self._tell(sequence, StoreResult(id, duplicate))
        else:
            _, reason, sequences = answer
            log.error("inbox: %d messages not stored: %s", len(sequences), reason)
            for sequence in sequences:
                self._tell(sequence, InboxError(f"cannot store in {self.path}: {reason}"))
        self._check_drained()

    def _writer_ended(self, reason: str) -> None:
        """On the writer's loop: the process is gone; nothing it had is answered now."""
        if self._waiting:
            log.error("inbox: %d messages not stored: %s", len(self._waiting), reason)
        for sequence in list(self._waiting):
            self._tell(sequence, InboxError(f"cannot store in {self.path}: {reason}"))
        self._check_drained()

    def _tell(self, sequence: int, outcome: StoreResult | InboxError) -> None:
        """Call one message's `stored`; what it raises is logged and stops no other."""
        stored = self._waiting.pop(sequence, None)
        if stored is None:
            return
        try:
            stored(outcome)
        except Exception:
            log.exception("inbox: a caller failed on its message's answer")

    def _check_drained(self) -> None:
        if not self._waiting and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def close(self) -> None:
        """Stop the writer process after it committed everything sent to it.

        For the end of a program or a test: it blocks until the writer has exited. From a
        running event loop, `await aclose()`.
        """
        self._closing = True
        if self._writer is not None:
            self._writer.finish_sync()
            self._writer = None

    async def aclose(self) -> None:
        """Refuse new writes, wait until every queued one is answered, stop the writer."""
        self._closing = True
        writer = self._writer
        if writer is None:
            return
        if self._waiting and not writer.ended:
            self._drained = asyncio.get_running_loop().create_future()
            await self._drained
        await asyncio.to_thread(writer.finish_sync)
        self._writer = None

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
                    inbox_writer.rollback(conn)
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


class _WriterProcess:
    """The daemon's side of one writer process: requests out and answers in, on `loop`,
    through a non-blocking socket pair; `ended(reason)` once the process is gone."""

    def __init__(
        self,
        database: Path,
        busy_timeout: float,
        loop: asyncio.AbstractEventLoop,
        answered: Callable[[tuple[Any, ...]], None],
        ended: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.ended = False
        self._answered = answered
        self._on_end = ended
        self._batch: list[inbox_writer.Request] = []
        self._out = bytearray()
        self._writing = False
        self._frames = inbox_writer.FrameReader()
        if os.name != "posix":
            raise InboxError(
                "the inbox writer process needs POSIX to start (file descriptor passing):"
                " on Windows, run with --no-store for now"
            )
        ours, theirs = socket.socketpair()
        # The child imports the messengerd this process runs, wherever that comes from.
        package_root = str(Path(inbox_writer.__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    WRITER_MODULE,
                    str(database),
                    str(theirs.fileno()),
                    str(busy_timeout),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
                env=dict(os.environ, PYTHONPATH=path),
            )
        except (OSError, ValueError) as exc:
            ours.close()
            raise InboxError(f"cannot start the inbox writer process: {exc}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        loop.add_reader(ours.fileno(), self._readable)

    def send(self, request: inbox_writer.Request) -> None:
        """Queue `request`; what is queued during this loop iteration leaves as one frame."""
        if not self._batch:
            self.loop.call_soon(self._flush)
        self._batch.append(request)

    def _flush(self) -> None:
        if self.ended or not self._batch:
            return
        self._frame_batch()
        self._write()

    def _frame_batch(self) -> None:
        """Move the queued requests, as one frame, to the bytes waiting to be sent."""
        if self._batch:
            self._out += inbox_writer.encode_frame(tuple(self._batch))
            self._batch = []

    def _write(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._end(f"cannot reach the inbox writer process: {exc}")
            return
        del self._out[:sent]
        if bool(self._out) != self._writing:
            self._writing = bool(self._out)
            if self._writing:
                self.loop.add_writer(self.sock.fileno(), self._write)
            else:
                self.loop.remove_writer(self.sock.fileno())

    def _readable(self) -> None:
        try:
            data = self.sock.recv(inbox_writer.RECEIVE_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            self._end(f"lost the inbox writer process: {exc}")
            return
        if not data:
            self._end(f"the inbox writer process ended{self._exit_status()}")
            return
        try:
            for answer in self._frames.feed(data):
                self._answered(answer)
        except inbox_writer.FrameError as exc:
            self._end(f"the inbox writer process answered garbage: {exc}")

    def _exit_status(self) -> str:
        code = self.process.poll()
        return "" if code is None else f" (exit status {code})"

    def _end(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._detach()
        self.sock.close()
        if self.process.poll() is None:
            self.process.kill()  # we gave up on it; finish_sync() reaps it
        self._on_end(reason)

    def _detach(self) -> None:
        """Stop watching the socket on the loop (a closed loop watches nothing)."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self.sock.fileno())
            if self._writing:
                self.loop.remove_writer(self.sock.fileno())
        self._writing = False

    def finish_sync(self) -> None:
        """Send what is queued, tell the process to stop, read its last answers, reap it.

        Blocking, from any thread: the answers are handed to the loop if it runs elsewhere.
        """
        if not self.ended:
            self.ended = True
            self._detach()
            answers: list[Any] = []
            try:
                self._frame_batch()
                self.sock.settimeout(WRITER_EXIT_TIMEOUT)
                self.sock.sendall(self._out)
                self.sock.shutdown(socket.SHUT_WR)
                # Its last answers, then end of file: it closed its end on the way out.
                while data := self.sock.recv(inbox_writer.RECEIVE_BYTES):
                    answers += self._frames.feed(data)
            except TimeoutError:
                log.error("inbox: the writer process did not stop; killing it")
                self.process.kill()
            except (OSError, inbox_writer.FrameError) as exc:
                log.error("inbox: stopping the writer process: %s", exc)
                self.process.kill()
            finally:
                self.sock.close()
            for answer in answers:
                self._call_on_loop(self._answered, answer)
            self._call_on_loop(self._on_end, "the inbox is closed")
        try:
            self.process.wait(WRITER_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.error("inbox: the writer process did not exit; killing it")
            self.process.kill()
            self.process.wait()

    def _call_on_loop(self, function: Callable[..., None], *args: Any) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            function(*args)
        else:
            # The loop is gone (closed at shutdown): nobody is waiting for the answer.
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(function, *args)


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
        params.append(utc_text(since))
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


def write_request(sequence: int, message: Message) -> inbox_writer.Request:
    """What the writer process is sent to store `message` (inbox_writer.Request)."""
    return (
        sequence,
        utc_text(message.received_at),
        message.sender,
        message.recipient,
        message.text,
        message.raw,
        message.path,
        message.peer,
        message.codepage,
    )


def _settle(future: asyncio.Future[StoreResult], outcome: StoreResult | InboxError) -> None:
    """Answer one store() (on its loop), unless its caller gave up."""
    if future.done():
        return  # the caller gave up (cancelled); the row is stored all the same
    if isinstance(outcome, InboxError):
        future.set_exception(outcome)
    else:
        assert isinstance(outcome, StoreResult)
        future.set_result(outcome)
