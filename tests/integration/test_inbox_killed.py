"""The inbox across a SIGKILL: a message store() returned for is on disk in a new process."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from messengerd.core.store.inbox import Inbox
from tests.unit.core.test_inbox import WAIT

CHILD = """
import asyncio, sys, time
from pathlib import Path
from messengerd.core.store.inbox import Inbox
from messengerd.core.message import Message

async def main():
    inbox = Inbox(Path(sys.argv[1]))
    result = await inbox.store(Message("UPS", "BOB", "On battery", "mailslot", "192.0.2.9:138"))
    print(result.id, flush=True)
    time.sleep(60)

asyncio.run(main())
"""


def test_a_message_stored_is_there_after_the_process_is_killed(tmp_path: Path):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(WAIT, child.kill)
    watchdog.start()
    try:
        stored = child.stdout.readline()
    finally:
        child.kill()  # SIGKILL on POSIX: no close(), no checkpoint, no atexit
        child.wait()
        watchdog.cancel()
        child.stdout.close()
    assert stored, "the child did not store a message"
    got = Inbox(tmp_path, create=False).get(int(stored))
    assert got is not None and got.text == "On battery" and got.path == "mailslot"
