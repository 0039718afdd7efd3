"""`messengerd history`: what a person sees listing, filtering, exporting and following."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from messengerd.commands import history
from messengerd.commands.history import add_parser as add_history_parser
from messengerd.commands.history import parse_since
from messengerd.core.message import Message
from messengerd.core.store.inbox import Inbox

NOW = datetime.now(UTC)


def parse(data_dir: Path, *argv: str) -> argparse.Namespace:
    """The history options, parsed by a parser built the way messengerd.cli builds its own."""
    parser = argparse.ArgumentParser(prog="messengerd")
    add_history_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["history", "--data-dir", str(data_dir), *argv])


def run(data_dir: Path, capsys, *argv: str) -> tuple[int, list[str], str]:
    args = parse(data_dir, *argv)
    code = args.handler(args)
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def store(data_dir: Path, *messages: Message) -> None:
    async def store_all() -> None:
        async with Inbox(data_dir) as inbox:
            for m in messages:
                await inbox.store(m)

    asyncio.run(store_all())


def ids(lines: list[str]) -> list[int]:
    return [int(line.split()[0]) for line in lines]


def received(age: timedelta, sender: str, recipient: str, text: str, path: str, peer: str):
    return Message(sender, recipient, text, path, peer, NOW - age)  # type: ignore[arg-type]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store(
        tmp_path,
        received(timedelta(days=3), "ADMIN", "BOB", "Backup finished", "session", "192.0.2.1:1025"),
        received(timedelta(hours=2), "UPS", "*", "On battery power", "mailslot", "192.0.2.9:138"),
        received(timedelta(minutes=10), "ups", "ALICE", "Power restored", "rpc", "192.0.2.9:1034"),
        received(
            timedelta(minutes=1),
            "PLANT",
            "bob",
            "Ölstand niedrig\nTank 2",
            "session",
            "192.0.2.5:1025",
        ),
    )
    return tmp_path


def test_lists_every_message_with_its_id_and_an_unread_marker(data_dir: Path, capsys):
    code, lines, err = run(data_dir, capsys)
    assert code == 0 and err == ""
    assert ids(lines) == [1, 2, 3, 4]
    assert lines[0].startswith("    1 * [")
    assert lines[0].endswith("] ADMIN -> BOB (session, 192.0.2.1:1025): Backup finished")
    assert lines[3].endswith("PLANT -> bob (session, 192.0.2.5:1025): Ölstand niedrig | Tank 2")


def test_filters_by_sender_recipient_text_time_and_limit(data_dir: Path, capsys):
    assert ids(run(data_dir, capsys, "--from", "Ups")[1]) == [2, 3]
    assert ids(run(data_dir, capsys, "--to", "BOB")[1]) == [1, 4]
    assert ids(run(data_dir, capsys, "--grep", "POWER", "--to", "alice")[1]) == [3]
    assert ids(run(data_dir, capsys, "--since", "3h")[1]) == [2, 3, 4]
    assert ids(run(data_dir, capsys, "--since", "30m", "--from", "ups")[1]) == [3]
    yesterday = (datetime.now() - timedelta(days=1)).date().isoformat()
    assert ids(run(data_dir, capsys, "--since", yesterday)[1]) == [2, 3, 4]
    assert ids(run(data_dir, capsys, "--limit", "2")[1]) == [3, 4]
    assert run(data_dir, capsys, "--from", "nobody") == (0, [], "")


def test_json_prints_one_object_per_message(data_dir: Path, capsys):
    code, lines, _ = run(data_dir, capsys, "--json", "--to", "bob")
    objects = [json.loads(line) for line in lines]
    assert code == 0 and [o["id"] for o in objects] == [1, 4]
    assert objects[1]["text"] == "Ölstand niedrig\nTank 2"
    assert objects[1]["from"] == "PLANT" and objects[1]["read"] is False
    assert datetime.fromisoformat(objects[1]["received_at"]).tzinfo is not None


def test_export_writes_the_filtered_messages_and_says_how_many(data_dir: Path, capsys):
    out = data_dir / "ups.jsonl"
    code, lines, err = run(data_dir, capsys, "--export", str(out), "--from", "ups")
    assert code == 0 and lines == []
    assert err == f"messengerd: exported 2 messages to {out}\n"
    exported = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [e["text"] for e in exported] == ["On battery power", "Power restored"]


def test_mark_read_without_ids_marks_what_was_shown(data_dir: Path, capsys):
    code, lines, _ = run(data_dir, capsys, "--unread", "--from", "ups", "--mark-read")
    assert code == 0 and ids(lines) == [2, 3]
    assert ids(run(data_dir, capsys, "--unread")[1]) == [1, 4]
    assert run(data_dir, capsys)[1][1].startswith("    2   [")


def test_mark_read_with_ids_marks_those_and_names_unknown_ones(data_dir: Path, capsys):
    code, lines, err = run(data_dir, capsys, "--mark-read", "1", "99")
    assert code == 1 and lines == []
    assert err == "messengerd: marked 1 message read\nmessengerd: no message with id 99\n"
    assert ids(run(data_dir, capsys, "--unread")[1]) == [2, 3, 4]


def test_empty_data_dir_says_nothing_is_stored_yet(tmp_path: Path, capsys):
    code, lines, err = run(tmp_path, capsys, "--json")
    assert (code, lines) == (0, [])
    assert err == f"messengerd: no messages stored in {tmp_path} yet\n"
    assert not Inbox.exists(tmp_path)


def test_follow_shows_the_backlog_then_new_matching_messages(data_dir: Path, capsys, monkeypatch):
    arrivals = iter(
        [
            Message("UPS", "*", "Battery low", "mailslot", "192.0.2.9:138"),
            Message("ADMIN", "*", "Not from ups", "session", "192.0.2.1:1025"),
        ]
    )

    def sleep(seconds: float) -> None:
        arrival = next(arrivals, None)
        if arrival is None:
            raise KeyboardInterrupt
        store(data_dir, arrival)

    monkeypatch.setattr(history, "time", SimpleNamespace(sleep=sleep))
    code, lines, _ = run(data_dir, capsys, "--follow", "--from", "ups", "--limit", "1")
    assert code == 0
    assert ids(lines) == [3, 5]
    assert lines[1].endswith("UPS -> * (mailslot, 192.0.2.9:138): Battery low")


def test_follow_waits_for_the_daemon_to_make_the_inbox(tmp_path: Path, capsys, monkeypatch):
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) > 1:
            raise KeyboardInterrupt
        store(tmp_path, Message("UPS", "*", "First", "mailslot", "192.0.2.9:138"))

    monkeypatch.setattr(history, "time", SimpleNamespace(sleep=sleep))
    code, lines, err = run(tmp_path, capsys, "--follow", "--json")
    assert code == 0 and [json.loads(line)["text"] for line in lines] == ["First"]
    assert "waiting" in err


def test_since_accepts_ages_iso_times_and_days():
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert parse_since("10m", now) == now - timedelta(minutes=10)
    assert parse_since("2H", now) == now - timedelta(hours=2)
    assert parse_since("3d", now) == now - timedelta(days=3)
    assert parse_since("2024-04-30T08:00:00Z", now) == datetime(2024, 4, 30, 8, tzinfo=UTC)
    assert parse_since("2024-04-30T10:00+02:00", now) == datetime(2024, 4, 30, 8, tzinfo=UTC)
    assert parse_since("2024-04-30", now) == datetime(2024, 4, 30).astimezone().astimezone(UTC)
    today = parse_since("today", now).astimezone()
    assert (today.date(), today.hour, today.minute) == (now.astimezone().date(), 0, 0)
    assert parse_since("yesterday", now) < parse_since("today", now)


@pytest.mark.parametrize("bad", ["soon", "10 minutes", "-5m", "2024-13-01", "99999999999d"])
def test_since_refuses_what_is_not_a_time(bad: str):
    with pytest.raises(ValueError, match="is not a time: use ISO 8601"):
        parse_since(bad)


def test_bad_since_is_a_usage_error_in_one_line(data_dir: Path):
    cli = pytest.importorskip("messengerd.cli", reason="messengerd.cli not importable yet")
    with pytest.raises(cli.UsageError, match=r"^--since 'soon' is not a time"):
        history.cmd_history(parse(data_dir, "--since", "soon"))


@pytest.mark.parametrize(
    "argv",
    [["--limit", "0"], ["--follow", "--export", "x.jsonl"], ["--mark-read", "x"]],
)
def test_option_values_that_cannot_work_are_refused_by_the_parser(tmp_path: Path, argv):
    with pytest.raises(SystemExit) as caught:
        parse(tmp_path, *argv)
    assert caught.value.code == 2
