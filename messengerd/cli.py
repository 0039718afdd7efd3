"""The `messengerd` command: a thin layer over the same objects a library user gets."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from messengerd import __version__
from messengerd.commands import config as config_command
from messengerd.commands import decode, doctor, history, names, send, service, tray
from messengerd.commands.arguments import ipv4, listen_port
from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from messengerd.config.options import DaemonConfig, default_data_dir
from messengerd.config.settings import (
    Settings,
    SettingsError,
    default_config_path,
    find_settings,
    merge_daemon_config,
)
from messengerd.core.lmerr import NetError
from messengerd.core.policy import Policy
from messengerd.core.store.inbox import InboxError
from messengerd.daemon import Daemon, ListenError
from messengerd.delivery.routing import build_sinks
from messengerd.wire.text import DEFAULT_CODEPAGE

log = logging.getLogger("messengerd")


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    """The options of `messengerd run`, shared with `messengerd tray --standalone`."""
    parser.add_argument(
        "--bind",
        type=ipv4,
        metavar="ADDR",
        help="address to listen on (default 0.0.0.0: every interface)",
    )
    parser.add_argument(
        "--broadcast",
        type=ipv4,
        metavar="ADDR",
        help="broadcast address for name registrations (default: that of "
        "the --bind interface, 127.255.255.255 for 127.0.0.1)",
    )
    parser.add_argument(
        "--name-port",
        type=listen_port,
        metavar="N",
        help="NetBIOS name service UDP port (default 137)",
    )
    parser.add_argument(
        "--datagram-port",
        type=listen_port,
        metavar="N",
        help="NetBIOS datagram service UDP port (default 138)",
    )
    parser.add_argument(
        "--session-port",
        type=listen_port,
        metavar="N",
        help="NetBIOS session service TCP port (default 139)",
    )
    parser.add_argument(
        "--alias",
        action="append",
        metavar="NAME",
        help="a name to receive messages under (repeatable; default: the "
        "host name and the logged-in user)",
    )
    parser.add_argument(
        "--workgroup",
        action="append",
        metavar="NAME",
        help="a workgroup whose broadcast messages to take (default WORKGROUP)",
    )
    parser.add_argument(
        "--codepage",
        help=f"senders' OEM code page (default {DEFAULT_CODEPAGE})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help=f"where state is kept (default {default_data_dir()})",
    )
    parser.add_argument(
        "--no-store",
        dest="store",
        action="store_false",
        default=None,
        help="keep no inbox: acknowledge and show messages without storing them",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file (default {default_config_path()}, if it exists); "
        "options given here override it",
    )


def daemon_config(args: argparse.Namespace, settings: Settings | None = None) -> DaemonConfig:
    """A DaemonConfig: the options given, else the settings file's, else the defaults."""
    return merge_daemon_config(settings or Settings(), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="messengerd",
        description="Receive Windows Messenger-service messages (net send, WinPopup).",
    )
    parser.add_argument("--version", action="version", version=f"messengerd {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="receive messages and print them")
    add_daemon_options(run)
    run.add_argument("--json", action="store_true", help="print one JSON object per message")
    run.set_defaults(handler=cmd_run)

    for command in (history, send, decode, config_command, names, tray, doctor, service):
        command.add_parser(commands)
    return parser


async def _run_daemon(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    await daemon.start()
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await daemon.stop()


def cmd_run(args: argparse.Namespace) -> int:
    try:
        settings = find_settings(args.config)
    except SettingsError as exc:
        for line in exc.lines():
            print(f"messengerd: {line}", file=sys.stderr)
        return EXIT_USAGE
    config = daemon_config(args, settings)
    try:
        sinks = build_sinks(settings, json_lines=args.json)
        daemon = Daemon(config, sinks, policy=Policy(**settings.policy_arguments()))
    except NetError as exc:
        raise UsageError(f"bad alias: {exc}") from None
    except InboxError as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_daemon(daemon))
    return EXIT_OK


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
