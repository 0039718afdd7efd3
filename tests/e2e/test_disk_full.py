"""A disk that fills: `messengerd run` refuses with ERRnoroom, logs it once, and stores again
by itself when space returns. The data directory is a real 1 MiB tmpfs, mounted in a mount
namespace of the daemon's own (it goes when the daemon goes), filled and emptied with dd and
rm run inside that namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from messengerd.core.lmerr import NetError
from messengerd.sender import net_message_buffer_send
from tests.conftest import need
from tests.daemon_process import DaemonProcess

TMPFS_SIZE = "1m"
MAX_SENDS = 200
"""Messages sent at most before the first refusal: the write-ahead log reuses the room it
already has for a while before it needs a new block."""
TEXT = "battery low " + "x" * 1200
"""Long enough that a few messages need a new block of the write-ahead log."""
FULL_LOG = "no room to store messages"
ROOM_LOG = "room again in"


@pytest.fixture
def daemon(tmp_path: Path):
    need(os.geteuid() == 0, "mounting a tmpfs needs root")
    need(shutil.which("unshare") is not None, "unshare not installed (util-linux)")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    mount = f'mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 messengerd-test "$0" && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", mount, str(data_dir))
    process = DaemonProcess("--alias", "ADMIN", data_dir=data_dir, prefix=prefix)
    yield process
    process.stop()


def inside(daemon: DaemonProcess, *command: str) -> subprocess.CompletedProcess:
    """Run `command` in the daemon's mount namespace, where its data directory is the tmpfs."""
    return subprocess.run(
        ["nsenter", "--target", str(daemon.process.pid), "--mount", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


def send(daemon: DaemonProcess, text: str) -> None:
    net_message_buffer_send(
        "ADMIN", text, fromname="UPS", via="session", host="127.0.0.1",
        port=daemon.ports["session"], timeout=5,
    )  # fmt: skip


def log_lines(daemon: DaemonProcess, text: str) -> list[str]:
    return [line for line in daemon.log if text in line]


def fill(daemon: DaemonProcess, name: str) -> None:
    """Take every free block of the tmpfs (a failed write may have given some back)."""
    filled = inside(daemon, "dd", "if=/dev/zero", f"of={daemon.data_dir / name}", "bs=4k")
    assert "No space left on device" in filled.stderr, filled.stderr


def test_a_full_disk_refuses_with_errnoroom_logs_once_and_recovers_when_space_returns(daemon):
    send(daemon, "before the disk filled")
    assert daemon.next_message()["text"] == "before the disk filled"
    fill(daemon, "filler")

    acknowledged, refusals = [], []
    for number in range(MAX_SENDS):
        try:
            send(daemon, f"{number} {TEXT}")
        except NetError as exc:
            refusals.append(exc)
            if len(refusals) == 5:
                break
            # The disk stays full: SQLite gives back its log's blocks when the writer
            # drops its failed connection, and something else takes them at once.
            fill(daemon, f"filler-{number}")
        else:
            assert not refusals, "a message was stored after the disk had refused one"
            acknowledged.append(number)
    assert len(refusals) == 5, "the full disk never refused a message"
    assert all("ERRnoroom" in exc.detail for exc in refusals), refusals[0].detail
    # Every message acknowledged before the refusals is stored and shown; none after.
    shown = [int(daemon.next_message()["text"].split()[0]) for _ in acknowledged]
    assert shown == acknowledged
    assert daemon.no_message()
    assert len(log_lines(daemon, FULL_LOG)) == 1, "\n".join(daemon.log)
    assert not log_lines(daemon, ROOM_LOG)

    assert inside(daemon, "sh", "-c", f"rm {daemon.data_dir}/filler*").returncode == 0
    send(daemon, "after space returned")
    assert daemon.next_message()["text"] == "after space returned"
    assert len(log_lines(daemon, ROOM_LOG)) == 1, "\n".join(daemon.log)
    assert len(log_lines(daemon, FULL_LOG)) == 1
