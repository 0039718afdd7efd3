"""`messengerd run`: receive messages until Ctrl-C or SIGTERM, and print them.

Its options (add_daemon_options) configure a daemon; `messengerd tray --standalone` takes
them too. Each option given wins over the settings file's value, which wins over the
default (daemon_config).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from messengerd.commands.arguments import ipv4, listen_port
from messengerd.commands.exits import EXIT_OK, UsageError
from messengerd.config.options import BACKENDS, DaemonConfig, default_data_dir
from messengerd.config.settings import (
    Settings,
    default_config_path,
    find_settings,
)
from messengerd.control.server import MAX_CONNECTIONS
from messengerd.core.datadir import DataDirError
from messengerd.core.limits import MAX_SESSIONS
from messengerd.core.lmerr import NetError
from messengerd.core.policy import Policy
from messengerd.core.store.inbox import InboxError
from messengerd.daemon import Daemon
from messengerd.delivery.routing import SINK_TYPES, build_sinks
from messengerd.wire.text import DEFAULT_CODEPAGE, check_codepage

log = logging.getLogger("messengerd")

OPEN_FILES_RESERVE = 64
"""Descriptors beside sessions and control connections: the listeners, the inbox's SQLite
files, the log, and the pipes of message commands running at once."""
OPEN_FILES_NEEDED = MAX_SESSIONS + MAX_CONNECTIONS + OPEN_FILES_RESERVE
"""Open files a daemon at its limits holds; `run` raises its soft limit this far when the
hard limit allows (service/messengerd.service sets LimitNOFILE above it)."""

_CLI_OPTIONS = {
    "bind": "bind",
    "broadcast": "broadcast",
    "name_port": "name_port",
    "datagram_port": "datagram_port",
    "session_port": "session_port",
    "rpc_port": "rpc_port",
    "aliases": "alias",
    "workgroups": "workgroup",
    "codepage": "codepage",
    "data_dir": "data_dir",
    "store": "store",
    "control_group": "control_group",
    "backend": "backend",
    "interfaces": "interface",
}
"""DaemonConfig field -> the argparse destination of its option (add_daemon_options)."""

_SETTINGS_ONLY = ("session_idle_timeout",)
"""DaemonConfig fields only the settings file's `[daemon]` sets."""


def add_parser(subparsers: Any) -> None:
    """Add `run` to the `messengerd` subcommands (the object add_subparsers returned)."""
    run = subparsers.add_parser("run", help="receive messages and print them")
    add_daemon_options(run)
    run.add_argument("--json", action="store_true", help="print one JSON object per message")
    run.set_defaults(handler=cmd_run)


def add_daemon_options(parser: argparse.ArgumentParser) -> None:
    """The options of `messengerd run`, shared with `messengerd tray --standalone`."""
    parser.add_argument(
        "--bind",
        type=ipv4,
        metavar="ADDR",
        help="address to listen on (default 0.0.0.0: every interface)",
    )
    parser.add_argument(
        "--interface",
        action="append",
        metavar="NAME|NET",
        help="with the default --bind, register names on this interface only (repeatable; "
        "a name, shell wildcards allowed, or an address or network such as 10.0.0.0/8; "
        "default: every interface that broadcasts, followed as they come and go)",
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
        "--rpc-port",
        type=listen_port,
        metavar="N",
        help="UDP port of the RPC path, MS-MSRP NetrSendMessage (default 135; off on Windows, "
        "where RPCSS holds 135)",
    )
    parser.add_argument(
        "--no-rpc",
        dest="rpc",
        action="store_false",
        default=None,
        help="no RPC listener",
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
        "--backend",
        choices=BACKENDS,
        help="sockets: NetBIOS over TCP/IP of our own (default); netbios: Windows' NetBIOS "
        "API beside Windows' own NetBT (experimental; see service/README.md)",
    )
    parser.add_argument(
        "--no-store",
        dest="store",
        action="store_false",
        default=None,
        help="keep no inbox: acknowledge and show messages without storing them",
    )
    parser.add_argument(
        "--control-group",
        metavar="GROUP",
        help="let members of GROUP use the control channel (names, status, the tray) and "
        "read the history (Unix; default: this user and root only)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file (default {default_config_path()}, if it exists); "
        "options given here override it",
    )


def daemon_config(args: argparse.Namespace, settings: Settings | None = None) -> DaemonConfig:
    """A DaemonConfig: each option given on the command line (not None in `args`), else
    the settings file's value, else DaemonConfig's default. UsageError for a bad --codepage."""
    daemon = (settings or Settings()).daemon
    values: dict[str, Any] = {}
    for name, option in _CLI_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None or value == []:
            value = getattr(daemon, name)
        if value is not None:
            values[name] = value
    # --no-rpc, or `rpc = false` in the file unless --rpc-port asks for it here.
    if getattr(args, "rpc", None) is False or (
        getattr(args, "rpc_port", None) is None and daemon.rpc is False
    ):
        values["rpc_port"] = None
    for name in _SETTINGS_ONLY:
        if getattr(daemon, name) is not None:
            values[name] = getattr(daemon, name)
    values["retention"] = (settings or Settings()).store
    if "codepage" in values:
        try:
            values["codepage"] = check_codepage(values["codepage"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return DaemonConfig(**values)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the daemon until Ctrl-C or SIGTERM."""
    settings = find_settings(args.config, sink_types=SINK_TYPES)
    for note in settings.notes:
        log.warning("%s", note)
    config = daemon_config(args, settings)
    try:
        sinks = build_sinks(settings, json_lines=args.json)
        daemon = Daemon(config, sinks, policy=Policy(**settings.policy_arguments()))
    except NetError as exc:
        raise UsageError(f"bad alias: {exc}") from None
    except (DataDirError, InboxError) as exc:
        # The data directory or the inbox in it: for the user to fix, like a taken port.
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _raise_open_files_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_daemon(daemon))
    return EXIT_OK


def _raise_open_files_limit() -> None:
    """Let the soft limit on open files reach OPEN_FILES_NEEDED where the hard limit allows
    (a login session's soft limit is often 1024, under MAX_SESSIONS); warn where it does not."""
    if sys.platform == "win32":
        return  # no such limit on sockets there
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= OPEN_FILES_NEEDED:
        return
    wanted = OPEN_FILES_NEEDED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_NEEDED)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < OPEN_FILES_NEEDED:
        log.warning(
            "open files limited to %d (%d needed for %d sessions): raise it (ulimit -Hn, "
            "or LimitNOFILE= in a systemd unit)",
            wanted,
            OPEN_FILES_NEEDED,
            MAX_SESSIONS,
        )


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
