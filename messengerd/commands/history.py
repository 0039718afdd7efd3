"""`messengerd history`: list, follow, export, mark read and prune the messages in the inbox.

It reads the inbox file directly, so it works whether the daemon runs or not.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from messengerd.config.options import front_end_data_dir
from messengerd.config.settings import default_config_path, find_settings
from messengerd.core.datadir import unreachable
from messengerd.core.store.inbox import DATABASE_NAME, Inbox, InboxError, StoredMessage
from messengerd.core.store.retention import BYTES_PER_MB
from messengerd.core.visible import json_line
from messengerd.delivery.routing import SINK_TYPES

FOLLOW_POLL_INTERVAL = 0.5
"""Seconds between looks for new messages with --follow; the daemon has no push channel yet."""

FOLLOW_BACKLOG = 10
"""Messages --follow shows before the new ones when --limit is not given (as `tail -f`)."""

UNREAD_MARKER = "*"

_AGE = re.compile(r"(\d+)\s*([smhdw])")
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE_FORMS = (
    "ISO 8601 (2024-05-01, 2024-05-01T14:30, 2024-05-01T12:30Z), "
    "an age (30s, 10m, 2h, 3d, 1w), today or yesterday"
)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """The UTC instant `--since TEXT` means; a time without a zone is local time. ValueError."""
    now = now or datetime.now(UTC)
    word = text.strip().lower()
    try:
        if age := _AGE.fullmatch(word):
            return now - timedelta(seconds=int(age[1]) * _AGE_UNITS[age[2]])
        if word in ("today", "yesterday"):
            midnight = now.astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
            if word == "yesterday":
                midnight -= timedelta(days=1)
            return midnight.astimezone(UTC)
        when = datetime.fromisoformat(text.strip())
        # A person typing a time means the clock on the wall, as `history` prints it.
        return when.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"--since {text!r} is not a time: use {_SINCE_FORMS}") from None


def _count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"{count} is not 1 or more")
    return count


def _message_id(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a message id") from None


def add_parser(subparsers: Any) -> None:
    """Add `history` to the `messengerd` subcommands (the object add_subparsers returned)."""
    history = subparsers.add_parser(
        "history",
        help="list the messages received so far",
        description="List, follow, export or mark read the messages in the inbox. "
        "Works with the daemon stopped.",
    )
    history.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the inbox is (default: your own, else the system service's)",
    )
    history.add_argument("--json", action="store_true", help="print one JSON object per message")
    history.add_argument(
        "--since",
        metavar="TIME",
        help="only messages received at or after TIME: 2024-05-01, 2024-05-01T14:30 "
        "(local time unless a zone is given), 10m, 2h, 3d, today, yesterday",
    )
    history.add_argument(
        "--from", dest="sender", metavar="NAME", help="only messages from NAME (any case)"
    )
    history.add_argument(
        "--to", dest="recipient", metavar="NAME", help="only messages to NAME (any case)"
    )
    history.add_argument("--grep", metavar="TEXT", help="only messages whose text contains TEXT")
    history.add_argument("--limit", type=_count, metavar="N", help="only the newest N messages")
    history.add_argument("--unread", action="store_true", help="only messages not marked read")
    mode = history.add_mutually_exclusive_group()
    mode.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help=f"show the last {FOLLOW_BACKLOG} (or --limit), then new messages as they "
        "arrive, until Ctrl-C",
    )
    mode.add_argument(
        "--export",
        type=Path,
        metavar="FILE.jsonl",
        help="write the messages to FILE, one JSON object a line, instead of printing them",
    )
    mode.add_argument(
        "--mark-read",
        nargs="*",
        type=_message_id,
        metavar="ID",
        help="mark these messages read; with no ID, every message shown",
    )
    mode.add_argument(
        "--prune",
        action="store_true",
        help="delete now the messages past the settings' [store] limits (oldest first) "
        "and give their space back to the disk; the daemon does this by itself as it runs",
    )
    history.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file whose [store] limits --prune applies (default "
        f"{default_config_path()}, if it exists; else the default limits)",
    )
    history.set_defaults(handler=cmd_history)


def cmd_history(args: argparse.Namespace) -> int:
    """Run `messengerd history`; UsageError for a bad --since."""
    data_dir: Path = args.data_dir or front_end_data_dir(DATABASE_NAME)
    filters = _filters(args)
    denied = unreachable(data_dir)
    if denied is not None:
        raise UsageError(denied)
    try:
        if args.follow:
            return _follow(data_dir, filters, args)
        try:
            inbox = Inbox(data_dir, create=False)
        except FileNotFoundError:
            # Not a failure: a fresh install has received nothing yet, and scripts that run
            # `history --json` should get an empty list, not an error.
            _note(f"no messages stored in {data_dir} yet")
            return EXIT_FAILED if args.mark_read else EXIT_OK
        if args.prune:
            return _prune(inbox, args)
        if args.export is not None:
            return _export(inbox, args.export, filters, args.limit)
        if args.mark_read:
            return _mark_ids(inbox, args.mark_read)
        shown = inbox.query(**filters, limit=args.limit)
        for message in shown:
            _print(message, args.json)
        if args.mark_read is not None:
            inbox.mark_read(message.id for message in shown if not message.read)
        return EXIT_OK
    except InboxError as exc:
        _note(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `messengerd history | head` closed the pipe: what was wanted has been shown.
        # Point stdout at devnull so the interpreter's last flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return {
        "since": since,
        "sender": args.sender,
        "recipient": args.recipient,
        "grep": args.grep,
        "unread_only": args.unread,
    }


def _print(message: StoredMessage, json_lines: bool) -> None:
    # For a terminal: JSON with what a terminal acts on escaped; text with it made visible.
    if json_lines:
        line = json_line(message.to_json())
    else:
        marker = " " if message.read else UNREAD_MARKER
        line = f"{message.id:>5} {marker} {message.one_line()}"
    print(line, flush=True)


def _note(text: str) -> None:
    """One line for the person, on stderr so that stdout stays the messages (or JSON)."""
    print(f"messengerd: {text}", file=sys.stderr)


def _export(inbox: Inbox, path: Path, filters: dict[str, Any], limit: int | None) -> int:
    try:
        written = inbox.export_jsonl(path, **filters, limit=limit)
    except OSError as exc:
        _note(f"cannot write {path}: {exc.strerror or exc}")
        return EXIT_FAILED
    _note(f"exported {written} message{'' if written == 1 else 's'} to {path}")
    return EXIT_OK


def _prune(inbox: Inbox, args: argparse.Namespace) -> int:
    given = [
        option
        for option, value in (
            ("--since", args.since),
            ("--from", args.sender),
            ("--to", args.recipient),
            ("--grep", args.grep),
            ("--limit", args.limit),
            ("--unread", args.unread),
        )
        if value
    ]
    if given:
        raise UsageError(f"--prune deletes by the [store] limits only; drop {', '.join(given)}")
    # A bad settings file is cli.main's to report (SettingsError: each problem, exit 2).
    settings = find_settings(args.config, sink_types=SINK_TYPES)
    result = inbox.prune(settings.store)
    left = inbox.count()
    _note(
        f"pruned {result.deleted} message{'' if result.deleted == 1 else 's'} past the "
        f"limits ({settings.store.describe()}); {left} left, "
        f"{result.bytes_before / BYTES_PER_MB:.1f} -> {result.bytes_after / BYTES_PER_MB:.1f} MiB"
    )
    return EXIT_OK


def _mark_ids(inbox: Inbox, ids: list[int]) -> int:
    unknown = [id for id in ids if inbox.get(id) is None]
    changed = inbox.mark_read(ids)
    _note(f"marked {changed} message{'' if changed == 1 else 's'} read")
    for id in unknown:
        _note(f"no message with id {id}")
    return EXIT_FAILED if unknown else EXIT_OK


def _follow(data_dir: Path, filters: dict[str, Any], args: argparse.Namespace) -> int:
    inbox = _wait_for_inbox(data_dir)
    # Ids only grow (AUTOINCREMENT, one writer committing in id order), so every row up to
    # `latest` has been looked at once `after(cursor)` has run: never shown twice, none missed.
    cursor = inbox.latest_id()
    shown = inbox.query(**filters, limit=FOLLOW_BACKLOG if args.limit is None else args.limit)
    while True:
        for message in shown:
            _print(message, args.json)
            cursor = max(cursor, message.id)
        time.sleep(FOLLOW_POLL_INTERVAL)
        latest = inbox.latest_id()
        shown = inbox.after(cursor, **filters)
        cursor = max(cursor, latest)


def _wait_for_inbox(data_dir: Path) -> Inbox:
    """The inbox, once the daemon has made it: `--follow` may well start first."""
    noted = False
    while True:
        try:
            return Inbox(data_dir, create=False)
        except FileNotFoundError:
            if not noted:
                _note(f"no messages stored in {data_dir} yet; waiting for the first")
                noted = True
            time.sleep(FOLLOW_POLL_INTERVAL)
