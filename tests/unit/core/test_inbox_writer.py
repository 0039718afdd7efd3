"""The inbox writer process's parts, in this process: its frames, its transaction and its
checkpointer (tests/unit/test_inbox.py drives the real process through Inbox)."""

from __future__ import annotations

import contextlib
import marshal
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from messengerd import inbox_writer
from messengerd.core.message import Message
from messengerd.core.store.inbox import DATABASE_NAME, Inbox, write_request
from messengerd.inbox_writer import FRAME_HEADER, MAX_FRAME_BYTES, FrameError, FrameReader

FUZZ = settings(max_examples=300, deadline=None)


def frames_of(value: object) -> bytes:
    return inbox_writer.encode_frame(value)


def test_frames_split_anywhere_decode_to_what_was_sent():
    sent = [(1, "a", b"\x00\xff"), ("stored", ((1, 2, False),)), ()]
    stream = b"".join(frames_of(value) for value in sent)
    for cut in range(len(stream) + 1):
        reader = FrameReader()
        got = list(reader.feed(stream[:cut])) + list(reader.feed(stream[cut:]))
        assert got == sent


def test_a_frame_longer_than_the_bound_is_refused_before_it_is_buffered():
    reader = FrameReader()
    with pytest.raises(FrameError, match="at most"):
        list(reader.feed(FRAME_HEADER.pack(MAX_FRAME_BYTES + 1)))


@FUZZ
@given(st.binary(max_size=512))
def test_any_bytes_are_frames_or_a_frame_error(data: bytes):
    reader = FrameReader()
    with contextlib.suppress(FrameError):
        list(reader.feed(data))


@FUZZ
@given(st.lists(st.binary(max_size=64), max_size=6), st.data())
def test_mutated_frames_are_frames_or_a_frame_error(payloads: list[bytes], data):
    stream = bytearray(b"".join(frames_of(p) for p in payloads))
    for _ in range(data.draw(st.integers(0, 4))):
        if stream:
            stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    reader = FrameReader()
    try:
        for frame in reader.feed(bytes(stream)):
            marshal.dumps(frame)  # whatever came out is a plain value
    except FrameError:
        pass


def test_the_checkpointer_thread_copies_the_wal_into_the_database(tmp_path: Path):
    Inbox(tmp_path).close()
    database = tmp_path / DATABASE_NAME
    writer = inbox_writer.Writer(str(database))
    try:
        text = "x" * 3000  # about a page a message: the WAL passes its threshold soon
        requests = [
            write_request(i, Message("UPS", "BOB", f"{i} {text}", "mailslot", "192.0.2.9:138"))
            for i in range(2000)
        ]
        for start in range(0, len(requests), 50):
            answer = writer.commit(requests[start : start + 50])
            assert answer[0] == "stored"
        # No COMMIT checkpoints below the backstop: only the thread can have copied pages.
        assert os.path.getsize(f"{database}-wal") < inbox_writer.CHECKPOINT_BACKSTOP_PAGES * 4096
        deadline = time.monotonic() + 10
        while os.path.getsize(database) < 2 * 1024 * 1024:
            assert time.monotonic() < deadline, "the WAL was never copied into the database"
            time.sleep(0.05)
    finally:
        writer.stop()
    assert not os.path.exists(f"{database}-wal")  # the last connection removed it
    assert Inbox(tmp_path, create=False).count() == 2000
