"""`messengerd config check [FILE]`: validate a settings file without starting anything."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from messengerd.commands.exits import EXIT_OK
from messengerd.config.settings import default_config_path, load_settings
from messengerd.delivery.routing import SINK_TYPES


def add_parser(subparsers: Any) -> None:
    """Add `config` (with its `check` action) to the `messengerd` subcommands."""
    config = subparsers.add_parser(
        "config",
        help="work with the settings file",
        description="Work with messengerd's settings file (TOML).",
    )
    actions = config.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate a settings file",
        description="Check a settings file: print 'FILE: OK' and exit 0, or print each bad "
        "key with its line and exit 2.",
    )
    check.add_argument(
        "file",
        nargs="?",
        type=Path,
        metavar="FILE",
        help=f"the file to check (default {default_config_path()})",
    )
    check.set_defaults(handler=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    """Run `messengerd config check`: EXIT_OK when the file is good, EXIT_USAGE if not."""
    path: Path = args.file or default_config_path()
    settings = load_settings(path, sink_types=SINK_TYPES)
    for note in settings.notes:
        print(f"messengerd: {note}", file=sys.stderr)
    print(f"{path}: OK")
    return EXIT_OK
