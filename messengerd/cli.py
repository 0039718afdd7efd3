"""The `messengerd` command: a thin layer over the same objects a library user gets.

Each subcommand is a module in messengerd.commands with `add_parser(subparsers)`; this
module only builds the top-level parser and runs the chosen command.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from messengerd import __version__
from messengerd.commands import config as config_command
from messengerd.commands import decode, doctor, history, names, run, send, service, status, tray
from messengerd.commands.exits import EXIT_USAGE, UsageError
from messengerd.config.settings import SettingsError
from messengerd.daemon import ListenError

COMMANDS = (run, status, history, send, decode, config_command, names, tray, doctor, service)
"""The subcommands, in the order `messengerd --help` lists them."""
VERBOSE_HELP = "log debug detail"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="messengerd",
        description="Receive Windows Messenger-service messages (net send, WinPopup).",
    )
    parser.add_argument("--version", action="version", version=f"messengerd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    _accept_verbose_after(parser)
    return parser


def _accept_verbose_after(parser: argparse.ArgumentParser) -> None:
    """Let `-v` follow any subcommand too (`messengerd run -v`, `messengerd names list -v`).

    SUPPRESS as the default: a subcommand's parser without -v given leaves the top-level
    one's value alone.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                subparser.add_argument(
                    "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                    help=VERBOSE_HELP,
                )  # fmt: skip
                _accept_verbose_after(subparser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="messengerd: %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.handler(args)
    except (UsageError, ListenError) as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SettingsError as exc:
        # A settings file's problems, one line each, naming the file, key and line.
        for line in exc.lines():
            print(f"messengerd: {line}", file=sys.stderr)
        return EXIT_USAGE
