"""Kill -9 in the middle of a load: every message whose reply a sender got is in history."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

from messengerd.core.lmerr import NetError
from messengerd.sender import send_message
from tests.daemon_process import DaemonProcess

SENDERS = 8
"""Senders at once, so that some messages are in flight when the daemon dies."""
KILL_AFTER = 150
"""Acknowledged messages before the SIGKILL."""
MAX_MESSAGES = 2000
"""A bound on the load, whatever happens to the kill."""


async def load(port: int, acknowledged: list[str], enough: asyncio.Event) -> int:
    """Send numbered messages until the receiver dies; the texts it acknowledged."""
    numbers = iter(range(MAX_MESSAGES))
    failures = 0

    async def sender() -> None:
        nonlocal failures
        for number in numbers:
            text = f"alert {number:05d}"
            try:
                await send_message(
                    "BOB", text, fromname="UPS", via="session", host="127.0.0.1", port=port,
                    timeout=5,
                )  # fmt: skip
            except NetError:
                failures += 1
                return  # the receiver is gone: this sender stops
            acknowledged.append(text)
            if len(acknowledged) >= KILL_AFTER:
                enough.set()

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return failures


def test_every_acknowledged_message_survives_sigkill(tmp_path):
    daemon = DaemonProcess("--alias", "BOB", data_dir=tmp_path)
    acknowledged: list[str] = []

    async def run() -> int:
        enough = asyncio.Event()
        task = asyncio.create_task(load(daemon.ports["session"], acknowledged, enough))
        await asyncio.wait_for(enough.wait(), 60)
        daemon.process.send_signal(signal.SIGKILL)
        return await asyncio.wait_for(task, 60)

    try:
        failures = asyncio.run(run())
    finally:
        daemon.process.kill()
        daemon.process.wait()
    assert daemon.process.returncode == -signal.SIGKILL
    assert failures > 0, "the load was still running when the daemon died"
    assert len(acknowledged) >= KILL_AFTER

    # Restart on the same data directory, then read the store as a user would.
    with DaemonProcess("--alias", "BOB", data_dir=tmp_path):
        pass
    history = subprocess.run(
        [sys.executable, "-m", "messengerd", "history", "--json", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    stored = {json.loads(line)["text"] for line in history.stdout.splitlines()}
    missing = [text for text in acknowledged if text not in stored]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
