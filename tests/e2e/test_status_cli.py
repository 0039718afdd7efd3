"""`messengerd status` against a running `messengerd run`: what it received, refused and keeps."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from messengerd.sender import net_message_buffer_send
from tests.daemon_process import DaemonProcess

POLICY = """\
[policy]
deny_senders = ["SPAM*"]
"""


def status(data_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "messengerd", "status", "--data-dir", str(data_dir), *args],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def send(daemon: DaemonProcess, sender: str, text: str) -> None:
    net_message_buffer_send(
        "BOB", text, fromname=sender, host="127.0.0.1", port=daemon.ports["session"],
        via="session",
    )  # fmt: skip


@pytest.fixture
def daemon(tmp_path):
    settings = tmp_path / "messengerd.toml"
    settings.write_text(POLICY)
    data_dir = tmp_path / "data"
    with DaemonProcess("--alias", "BOB", "--config", str(settings), data_dir=data_dir) as process:
        send(process, "ALICE", "Backup finished")
        assert process.next_message()["from"] == "ALICE"
        send(process, "SPAMMER", "Buy now")
        send(process, "SPAMBOT", "Buy again")
        yield process


def test_status_shows_aliases_ports_counts_and_store(daemon):
    result = status(daemon.data_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rpc_port = json.loads(status(daemon.data_dir, "--json").stdout)["ports"]["rpc"]
    assert re.fullmatch(r"messengerd \S+ \(pid \d+\), up [ \w]+ since [-0-9]+ [0-9:]+", lines[0])
    ports = daemon.ports
    assert lines[1:] == [
        f"data dir    {daemon.data_dir}",
        f"listening   127.0.0.1: name {ports['name']}/udp, datagram {ports['datagram']}/udp, "
        f"session {ports['session']}/tcp, rpc {rpc_port}/udp; broadcast 127.255.255.255",
        "aliases     BOB",
        "names on    subnet 127.0.0.1/8: BOB",
        "received    1 message",
        "refused     2 messages: denied sender 2",
        lines[-3],
        lines[-2],
        "kept        365 days, 100000 messages, 100 MiB; 0 messages pruned",
    ]
    assert re.fullmatch(
        rf"store       {re.escape(str(daemon.data_dir))}/messages\.sqlite3: 1 message, "
        r"\d+\.\d KiB",
        lines[-3],
    )
    assert re.fullmatch(r"oldest      [-0-9]+ [0-9:]+", lines[-2])


def test_status_json_is_the_daemons_reply(daemon):
    result = status(daemon.data_dir, "--json")
    assert result.returncode == 0, result.stderr
    reply = json.loads(result.stdout)
    assert "ok" not in reply
    assert reply["aliases"] == ["BOB"]
    assert reply["ports"] == {**daemon.ports, "rpc": reply["ports"]["rpc"]}
    assert reply["messages_received"] == 1
    assert reply["messages_allowed"] == 1
    assert reply["refused"] == {"denied sender": 2}  # refusals only: no "allowed" among them
    assert reply["store"]["messages"] == 1
    assert reply["store"]["bytes"] > 0
    assert reply["uptime"] > 0
    started = datetime.fromisoformat(reply["started_at"])
    assert started.tzinfo is not None and started < datetime.now(UTC)


def test_status_without_a_store_says_so(tmp_path):
    with DaemonProcess("--alias", "BOB", "--no-store", data_dir=tmp_path) as process:
        result = status(process.data_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "store       none: messages are shown, not kept (--no-store)"
    )
    assert "refused     none" in result.stdout


def test_status_with_no_daemon_is_one_line_and_exit_2(tmp_path):
    result = status(tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"messengerd: no messengerd is running for {tmp_path} (no control socket); "
        "start it with `messengerd run`\n"
    )
