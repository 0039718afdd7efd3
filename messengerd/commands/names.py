"""`messengerd names add|del|list|info`: the running daemon's message aliases, as `net name`.

Each acts on the daemon for --data-dir through its control channel (messengerd.control.client).
Success prints net name's "The command completed successfully."; a refusal prints the
lmerr name, code and net name's sentence on stderr and exits 1, as net name failed. With
no daemon running it says so in one line and exits 2: that is for the user to fix (start
the daemon), not a refusal, and scripts can tell the two apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from messengerd.commands.exits import EXIT_OK, control_failure
from messengerd.config.options import front_end_data_dir
from messengerd.control.client import ControlClient
from messengerd.control.protocol import CONTROL_SOCKET, ControlError
from messengerd.core import lmerr
from messengerd.core.lmerr import NetError

SUCCESS = lmerr.describe(lmerr.NERR_Success)
"""What net name printed when it worked."""
RULE = "-" * 79
"""The line net name draws under its heading (79 dashes)."""
LIST_LEVEL = 1
"""names list asks for MSG_INFO_1, so --json shows the forward fields too."""


def add_parser(subparsers: Any) -> None:
    """Add `names` to the `messengerd` subcommands (the object add_subparsers returned)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="the data directory of the daemon to act on (default: your own daemon's, "
        "else the system service's)",
    )
    names = subparsers.add_parser(
        "names",
        help="add, delete and list the running daemon's message aliases (net name)",
        description="Manage the message aliases of the running daemon, as `net name` did. "
        "Added aliases are registered on the network and kept across restarts.",
    )
    actions = names.add_subparsers(dest="names_action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add", parents=[common], help="add an alias (registered on the network first)"
    )
    add.add_argument("name", metavar="NAME", help="up to 15 characters; stored upper case")
    delete = actions.add_parser(
        "del", parents=[common], help="delete an alias (released on the network)"
    )
    delete.add_argument("name", metavar="NAME")
    listing = actions.add_parser("list", parents=[common], help="list the aliases")
    listing.add_argument("--json", action="store_true", help="print a JSON array of entries")
    info = actions.add_parser("info", parents=[common], help="show one alias")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="print the entry as JSON")
    names.set_defaults(handler=cmd_names)


def cmd_names(args: argparse.Namespace) -> int:
    """Run `messengerd names ACTION`; the exit code as described in the module docstring."""
    data_dir: Path = args.data_dir or front_end_data_dir(CONTROL_SOCKET)
    try:
        with ControlClient(data_dir) as client:
            if args.names_action == "add":
                client.request("names.add", name=args.name)
                print(SUCCESS)
            elif args.names_action == "del":
                client.request("names.del", name=args.name)
                print(SUCCESS)
            elif args.names_action == "list":
                _list(client, args.json)
            else:
                reply = client.request("names.info", name=args.name, level=1)
                _info(reply["entry"], args.json)
    except (NetError, ControlError) as exc:
        return control_failure(exc)
    return EXIT_OK


def _list(client: ControlClient, json_output: bool) -> None:
    entries: list[dict[str, Any]] = []
    handle = 0
    # Walk with the resume handle as a NetMessageNameEnum caller would; one reply holds a
    # full table, so this ends after one request unless the daemon says otherwise.
    while True:
        reply = client.request("names.list", level=LIST_LEVEL, resume_handle=handle)
        entries += reply["entries"]
        if reply["status"] != lmerr.ERROR_MORE_DATA:
            break
        handle = reply["resume_handle"]
    if json_output:
        print(json.dumps(entries, ensure_ascii=False))
        return
    print("Name")
    print()
    print(RULE)
    for entry in entries:
        print(entry["name"])
    print(SUCCESS)


def _info(entry: dict[str, Any], json_output: bool) -> None:
    if json_output:
        print(json.dumps(entry, ensure_ascii=False))
        return
    print(f"{'Message alias':<20} {entry['name']}")
    print(f"{'Forwarded to':<20} {entry.get('forward') or '(not forwarded)'}")
    print(SUCCESS)
