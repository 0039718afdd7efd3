"""Retention as a user meets it: the settings file's [store] limits kept by `messengerd run`,
the store's size, count and oldest message in `status`, and `messengerd history --prune`."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from messengerd.control.client import ControlClient
from messengerd.sender import net_message_buffer_send
from tests.daemon_process import DaemonProcess
from tests.unit.core.test_retention import fill

WAIT = 20.0


def history(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "messengerd", "history", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_run_keeps_the_settings_store_limits_and_status_shows_the_store(tmp_path: Path):
    data_dir = tmp_path / "data"
    fill(data_dir, 300, age=timedelta(days=2))
    settings = tmp_path / "messengerd.toml"
    settings.write_text("[store]\nmax_age_days = 30\nmax_messages = 50\nmax_size_mb = 8\n")
    with DaemonProcess("--alias", "ADMIN", "--config", str(settings), data_dir=data_dir) as daemon:
        net_message_buffer_send(
            "ADMIN", "after the prune", fromname="UPS", via="session", host="127.0.0.1",
            port=daemon.ports["session"], timeout=5,
        )  # fmt: skip
        assert daemon.next_message()["text"] == "after the prune"
        deadline = time.monotonic() + WAIT
        with ControlClient(data_dir) as client:
            while (store := client.request("status")["store"])["messages"] != 50:
                assert time.monotonic() < deadline, store
                time.sleep(0.1)
        shown = subprocess.run(
            [sys.executable, "-m", "messengerd", "status", "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        assert "kept 30 days, 50 messages, 8 MiB; 251 messages pruned" in " ".join(shown.split())
    assert store["limits"] == {"max_age_days": 30, "max_messages": 50, "max_size_mb": 8}
    assert store["pruned"] == 251  # 250 at start, then the oldest for the new message
    assert store["bytes"] > 0
    assert store["disk_full"] is False
    # The oldest kept is the 252nd of the 300 (all two days old), the newest the message.
    oldest = datetime.fromisoformat(store["oldest"])
    assert timedelta(days=2) <= datetime.now(UTC) - oldest < timedelta(days=2, minutes=10)
    listed = history(data_dir, "--json").stdout.splitlines()
    assert len(listed) == 50
    assert '"alert 000251 ' in listed[0] and '"after the prune"' in listed[-1]


def test_history_prune_applies_the_settings_limits_now_and_says_what_it_did(tmp_path: Path):
    fill(tmp_path, 5000, size=400)
    settings = tmp_path / "messengerd.toml"
    settings.write_text("[store]\nmax_messages = 200\n")
    before = (tmp_path / "messages.sqlite3").stat().st_size
    result = history(tmp_path, "--prune", "--config", str(settings))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "pruned 4800 messages past the limits (365 days, 200 messages, 100 MiB); 200 left" in (
        result.stderr
    )
    assert (tmp_path / "messages.sqlite3").stat().st_size < before / 10
    assert len(history(tmp_path, "--json").stdout.splitlines()) == 200


def test_history_prune_refuses_filters_and_a_bad_store_table(tmp_path: Path):
    fill(tmp_path, 10)
    result = history(tmp_path, "--prune", "--since", "1d")
    assert result.returncode == 2
    assert "--prune deletes by the [store] limits only; drop --since" in result.stderr
    settings = tmp_path / "bad.toml"
    settings.write_text("[store]\nmax_messages = -5\n")
    result = history(tmp_path, "--prune", "--config", str(settings))
    assert result.returncode == 2
    assert "bad.toml:2: key 'store.max_messages': must be 0 or more, not -5" in result.stderr
    assert len(history(tmp_path, "--json").stdout.splitlines()) == 10
