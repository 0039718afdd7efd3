"""`messengerd doctor`: check what receiving needs here and say what to do about each failure.

Takes `run`'s options (and its settings file), so it checks what `run` with them would meet.
Prints one line per check, or with --json one object `{"checks": [{name, ok, detail}]}`;
exits 0 when every check passes, 1 otherwise. On Windows, --fix-netbt ADAPTER disables
NetBIOS over TCP/IP on one adapter (after asking) and --restore-netbt ADAPTER undoes it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, EXIT_USAGE, UsageError
from messengerd.commands.run import add_daemon_options, daemon_config
from messengerd.config.options import default_data_dir
from messengerd.config.settings import find_settings
from messengerd.delivery.routing import SINK_TYPES
from messengerd.doctor import Environment, run_checks
from messengerd.tray.text import visible_text

NO_NETBT = "messengerd: --fix-netbt and --restore-netbt change Windows' NetBT; there is none here"


def add_parser(subparsers: Any) -> None:
    """Add `doctor` to the `messengerd` subcommands (the object add_subparsers returned)."""
    doctor = subparsers.add_parser(
        "doctor",
        help="check ports, NetBT, firewall, data directory and service; say what to fix",
        description="Check what `messengerd run` with the same options would meet: who holds "
        "each port, NetBIOS over TCP/IP per adapter and the firewall (Windows), the data "
        "directory and control channel, the service. Every failed check says what to do. "
        "Exit 0 when all pass, 1 otherwise.",
    )
    add_daemon_options(doctor)
    doctor.add_argument("--json", action="store_true", help='print {"checks": [...]} as JSON')
    netbt = doctor.add_mutually_exclusive_group()
    netbt.add_argument(
        "--fix-netbt",
        metavar="ADAPTER",
        help="Windows: disable NetBIOS over TCP/IP on ADAPTER (NetbiosOptions=2), recording "
        "the old value; SMB file sharing over 445 keeps working",
    )
    netbt.add_argument(
        "--restore-netbt",
        metavar="ADAPTER",
        help="Windows: put back ADAPTER's NetbiosOptions from before --fix-netbt",
    )
    doctor.add_argument("--yes", action="store_true", help="do not ask before --fix-netbt")
    doctor.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, environment: Environment | None = None) -> int:
    """Run the checks (or the NetBT fix); the exit code as the module docstring says."""
    settings = find_settings(args.config, sink_types=SINK_TYPES)
    config = daemon_config(args, settings)
    if args.fix_netbt or args.restore_netbt:
        environment = environment or Environment.here()
        if not environment.windows:
            print(NO_NETBT, file=sys.stderr)
            return EXIT_USAGE
        return _netbt(args, environment, config.data_dir or default_data_dir())
    checks = run_checks(config, environment)
    if args.json:
        print(json.dumps({"checks": [check.to_json() for check in checks]}, ensure_ascii=False))
    else:
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            print(f"{mark}  {visible_text(check.name)}: {visible_text(check.detail)}")
    return EXIT_OK if all(check.ok for check in checks) else EXIT_FAILED


def _netbt(args: argparse.Namespace, environment: Environment, data_dir: Any) -> int:
    from messengerd.windows import registry

    wanted = args.fix_netbt or args.restore_netbt
    try:
        adapter = registry.find_adapter(environment.registry, wanted)
        if args.restore_netbt:
            value = registry.restore_netbios_options(environment.registry, adapter, data_dir)
            print(f'"{adapter.name}": NetbiosOptions is {value} again; {_takes_effect()}')
            return EXIT_OK
        if adapter.netbios_options == registry.NETBT_DISABLED:
            print(f'"{adapter.name}": NetBIOS over TCP/IP is already disabled')
            return EXIT_OK
        if not args.yes and not _confirm(adapter):
            print("nothing changed")
            return EXIT_FAILED
        previous = registry.set_netbios_options(
            environment.registry, adapter, registry.NETBT_DISABLED, data_dir
        )
    except registry.RegistryError as exc:
        raise UsageError(str(exc)) from None
    print(
        f'"{adapter.name}": NetbiosOptions {previous} -> 2 (NetBIOS over TCP/IP disabled); '
        f'{_takes_effect()}; undo with `messengerd doctor --restore-netbt "{adapter.name}"`'
    )
    return EXIT_OK


def _takes_effect() -> str:
    return "it takes effect once the adapter restarts (disable and enable it) or after a reboot"


def _confirm(adapter: Any) -> bool:
    if not sys.stdin.isatty():
        raise UsageError(
            "--fix-netbt asks before it changes anything: add --yes to run it without a terminal"
        )
    answer = input(
        f'Disable NetBIOS over TCP/IP on "{adapter.name}" ({adapter.describe()})? SMB file '
        "sharing over port 445 keeps working. [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")
