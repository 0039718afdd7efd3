"""`messengerd service install|remove|start|stop|status`: the Windows service, or systemd's.

On Windows each action goes to the service control manager (messengerd.windows.service); on
Linux to systemd (messengerd.service_linux); elsewhere the command says in one line where
the service instructions are and exits 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from messengerd.commands.exits import EXIT_OK, EXIT_USAGE

ACTIONS = ("install", "remove", "start", "stop", "status")
ELSEWHERE = (
    "messengerd: `messengerd service` manages the Windows service; on this system run "
    "messengerd as a service as service/README.md describes (systemd on Linux)"
)


def add_parser(subparsers: Any) -> None:
    """Add `service` to the `messengerd` subcommands (the object add_subparsers returned)."""
    service = subparsers.add_parser(
        "service",
        help="install, remove, start, stop or show the service (Windows; systemd on Linux)",
        description="The Windows service: delayed automatic start, restarted on failure, "
        "settings in %%PROGRAMDATA%%\\messengerd\\messengerd.toml, each message in the "
        "Application event log and shown in the console session. install, remove, start and "
        "stop need an elevated PowerShell. On Linux, systemd's messengerd.service: install "
        "(as root) creates the messengerd user and group, writes the unit and enables it "
        "(service/README.md).",
    )
    service.add_argument("action", choices=ACTIONS, metavar="ACTION", help=" | ".join(ACTIONS))
    service.set_defaults(handler=cmd_service)


def cmd_service(args: argparse.Namespace, control: Any = None) -> int:
    """Run one action; `control` is the ServiceControl to use (default: the real SCM)."""
    if control is None and sys.platform.startswith("linux"):
        from messengerd import service_linux

        return service_linux.cmd_service(args.action)
    if control is None and sys.platform != "win32":
        print(ELSEWHERE, file=sys.stderr)
        return EXIT_USAGE
    from messengerd.windows import service

    if control is None:
        control = service.Win32ServiceControl()
    try:
        action = getattr(service, args.action)
        print(action(control))
    except service.ServiceCommandError as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
