"""The console sink: one line per message, or one JSON object per line.

Lines are written by a thread of their own, never on the event loop: a terminal that is
slow, or a pipe nobody reads (`messengerd run | something-that-hung`), would otherwise
stop every session and the control channel once the pipe's 64 KiB are full. The thread
takes lines from a bounded queue; a line that finds it full is dropped and counted, as is
every line once the reader has closed the pipe. The inbox has every message all the same.

The thread writes to the stream's file descriptor with os.write, not through the stream:
blocked in a full pipe it then holds none of Python's locks, so the process can still
exit (a daemon thread blocked inside sys.stdout.write would make the interpreter abort at
exit, unable to flush stdout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from messengerd.core.message import Message
from messengerd.core.ratelog import SummaryLog
from messengerd.core.visible import json_line

log = logging.getLogger(__name__)

CONSOLE_QUEUE = 1024
"""Lines waiting to be written; past this the reader is not keeping up, and lines are
dropped (and counted) rather than held: at most a few MiB of text."""

CLOSE_TIMEOUT = 2.0
"""Seconds stop() waits for the queued lines to be written; a reader that takes none in
that time is not waited for (what is left is counted as dropped)."""


class ConsoleSink:
    """Prints `[time] FROM -> TO (path, peer): text`, or JSON with `json_lines`."""

    name = "console"

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        json_lines: bool = False,
        queue_size: int = CONSOLE_QUEUE,
    ) -> None:
        self.stream = stream or sys.stdout
        self.json_lines = json_lines
        self.lines: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._dropped = 0
        """Lines dropped on the loop (the queue full)."""
        self._lost = 0
        """Lines the thread could not write (the reader is gone); only the thread writes it."""
        self._gone = False
        self._thread: threading.Thread | None = None
        self._summary = SummaryLog(log)

    @property
    def dropped(self) -> int:
        """Messages not printed: the queue was full, or nobody reads the output any more."""
        return self._dropped + self._lost

    async def deliver(self, message: Message) -> None:
        """Queue the message's line for the writer thread; never waits."""
        line = json_line(message.to_json()) if self.json_lines else message.one_line()
        if self._gone:
            self._drop("nobody reads the output any more")
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._write_lines, name="console", daemon=True)
            self._thread.start()
        try:
            self.lines.put_nowait(line + "\n")
        except queue.Full:
            self._drop(f"{self.lines.maxsize} lines wait to be written: the output is not read")

    def _drop(self, reason: str) -> None:
        self._dropped += 1
        self._summary.note(self.name, "message not printed", reason)

    async def aclose(self) -> None:
        """Let the thread write what is queued (at most CLOSE_TIMEOUT), then stop it."""
        if self._thread is not None:
            await asyncio.to_thread(self._finish)
        if self.dropped:
            log.warning(
                "%s: %d message(s) not printed (the inbox has them)", self.name, self.dropped
            )
        self._summary.flush()

    def _finish(self) -> None:
        assert self._thread is not None
        deadline = time.monotonic() + CLOSE_TIMEOUT
        with contextlib.suppress(queue.Full):
            self.lines.put(None, timeout=CLOSE_TIMEOUT)
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            # Blocked in a pipe nobody reads: it is left to the process's exit.
            self._dropped += self.lines.qsize()

    # -- the writer thread ----------------------------------------------------------------

    def _write_lines(self) -> None:
        write = self._writer()
        while (line := self.lines.get()) is not None:
            if self._gone:
                self._lost += 1
                continue
            try:
                write(line)
            except OSError:
                # EPIPE: the reader closed its end (Python ignores SIGPIPE); or the
                # terminal went away. Nothing more will be read.
                self._gone = True
                self._lost += 1

    def _writer(self) -> Callable[[str], None]:
        """How the thread writes a line: to the stream's descriptor if it has one."""
        stream = self.stream
        try:
            fd = stream.fileno()
            stream.flush()
        except (AttributeError, OSError, ValueError):
            # No descriptor (a StringIO in a test, a GUI's stream): the stream itself.
            def write_stream(line: str) -> None:
                stream.write(line)
                stream.flush()

            return write_stream
        encoding = getattr(stream, "encoding", None) or "utf-8"

        def write_fd(line: str) -> None:
            data = memoryview(line.encode(encoding, errors="replace"))
            while data:
                data = data[os.write(fd, data) :]

        return write_fd
