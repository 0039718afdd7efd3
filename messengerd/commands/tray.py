"""`messengerd tray`: the icon, the popups and the history for the person at the desk.

Attached (the default) it talks to the daemon for the data directory over its control
channel; `--standalone` runs the daemon in the same process, with every `run` option.
The GUI modules are imported only when the command runs, so `messengerd --help` works
on a Python without tkinter, and a machine without a display gets one line, not a trace.
"""

from __future__ import annotations

import argparse
import contextlib
import locale
import signal
import sys
from pathlib import Path
from typing import Any

from messengerd.commands.exits import EXIT_FAILED, EXIT_OK, UsageError
from messengerd.commands.run import add_daemon_options, daemon_config
from messengerd.config.options import front_end_data_dir
from messengerd.control.protocol import CONTROL_SOCKET

DAEMON_ONLY = (
    "bind",
    "broadcast",
    "name_port",
    "datagram_port",
    "session_port",
    "alias",
    "workgroup",
    "codepage",
    "store",
    "control_group",
)
"""`run` options that only mean something with --standalone (--data-dir means both)."""


def add_parser(subparsers: Any) -> None:
    """Add `tray` to the `messengerd` subcommands (the object add_subparsers returned)."""
    tray = subparsers.add_parser(
        "tray",
        help="show messages as they arrive: tray icon, notifications, the classic popup",
        description="A tray icon for the person at the desk: each new message pops up (a "
        "notification where the desktop has them, else the classic Messenger Service "
        "window), with the recent ones, a searchable history and the aliases in its menu. "
        "It attaches to the daemon running for --data-dir, or with --standalone runs one "
        "itself, taking every `messengerd run` option. The tray backend is pystray's "
        "choice, or PYSTRAY_BACKEND (appindicator, gtk, xorg, win32, darwin).",
    )
    tray.add_argument(
        "--standalone",
        action="store_true",
        help="run the daemon in this process instead of attaching to a running one",
    )
    tray.add_argument(
        "--popup",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the classic popup window for each message (default: only where the "
        "desktop has no notifications)",
    )
    tray.add_argument(
        "--iso-dates",
        action="store_true",
        help="write dates and times as ISO 8601 (2003-05-14 10:22:17) instead of in the "
        "desktop's locale format (LC_TIME)",
    )
    tray.add_argument(
        "--autostart",
        choices=("on", "off"),
        help="start the tray when you log on, or no longer, and exit (Windows: the Run key; "
        "Linux: ~/.config/autostart)",
    )
    tray.add_argument(
        "--dnd",
        action="store_true",
        help="start in do-not-disturb: keep messages (unread) without popping them up",
    )
    add_daemon_options(tray)
    tray.set_defaults(handler=cmd_tray)


def cmd_tray(args: argparse.Namespace) -> int:
    """Run the tray until Quit, Ctrl-C or SIGTERM."""
    if args.autostart is not None:
        return _autostart(args.autostart == "on")
    if not args.standalone:
        _check_attach_options(args)
    from messengerd.tray.app import TrayApp, load_pystray, open_display

    # Dates as the desktop writes them (LC_ALL, LC_TIME, LANG); only the time category, so
    # nothing else (numbers, encodings) changes for the daemon in this process.
    with contextlib.suppress(locale.Error):
        locale.setlocale(locale.LC_TIME, "")
    root = open_display()
    notifier = None
    try:
        pystray = load_pystray()
        notifier = TrayApp.notifications(pystray)
        if args.standalone:
            app = _standalone(args, root, pystray, notifier)
        else:
            app = _attached(args, root, pystray, notifier)
    except BaseException:
        if notifier is not None:
            notifier.stop()
        root.destroy()
        raise
    if app is None:
        if notifier is not None:
            notifier.stop()
        root.destroy()
        return EXIT_FAILED
    _quit_on_signals(app)
    app.run()
    return EXIT_OK


def _autostart(enabled: bool) -> int:
    from messengerd.tray.autostart import set_autostart

    try:
        print(set_autostart(enabled))
    except NotImplementedError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(
            f"cannot change the autostart entry: {exc.strerror or exc}; check that your "
            "configuration directory is writable"
        ) from None
    return EXIT_OK


def _check_attach_options(args: argparse.Namespace) -> None:
    defaults = argparse.ArgumentParser(add_help=False)
    add_daemon_options(defaults)
    given = [
        dest
        for dest in DAEMON_ONLY
        if hasattr(args, dest) and getattr(args, dest) != defaults.get_default(dest)
    ]
    if given:
        options = ", ".join("--" + dest.replace("_", "-") for dest in given)
        raise UsageError(
            f"{options} configure a daemon: add --standalone to run one here, or give them "
            "to the `messengerd run` this tray attaches to"
        )


def _standalone(args: argparse.Namespace, root: Any, pystray: Any, notifier: Any) -> Any:
    from messengerd.background import DaemonThread, LocalAliases
    from messengerd.config.settings import find_settings
    from messengerd.core.lmerr import NetError
    from messengerd.core.policy import Policy
    from messengerd.core.store.inbox import Inbox, InboxError
    from messengerd.daemon import Daemon
    from messengerd.delivery.routing import SINK_TYPES, build_sinks
    from messengerd.tray.app import TrayApp, TraySink
    from messengerd.tray.presenter import Presenter

    settings = find_settings(args.config, sink_types=SINK_TYPES)
    config = daemon_config(args, settings)
    try:
        # The tray shows every message itself: only the sinks the file names, no console.
        sinks = build_sinks(settings) if settings.sinks else []
        daemon = Daemon(config, sinks, policy=Policy(**settings.policy_arguments()))
        store = Inbox(config.data_dir, create=False) if config.store else None
    except NetError as exc:
        raise UsageError(f"bad --alias: {exc}") from None
    except InboxError as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    runner = DaemonThread(daemon)
    presenter = Presenter(
        store=store,
        aliases=LocalAliases(runner),
        traits=TrayApp.traits(pystray, notifier),
        popups=args.popup,
        dnd=args.dnd,
        iso_dates=args.iso_dates,
    )
    app = TrayApp(root, presenter, pystray, notifier)
    daemon.add_sink(TraySink(app))
    # Read the inbox before the daemon takes messages, so none is both loaded and new.
    app.apply(presenter.load())
    runner.start()
    app.on_quit.append(runner.stop)
    return app


def _attached(args: argparse.Namespace, root: Any, pystray: Any, notifier: Any) -> Any:
    from messengerd.control.protocol import ControlError
    from messengerd.core.store.inbox import Inbox, InboxError
    from messengerd.tray.app import TrayApp
    from messengerd.tray.attach import ControlAliases, Subscription
    from messengerd.tray.presenter import Presenter

    data_dir: Path = args.data_dir or front_end_data_dir(CONTROL_SOCKET)
    try:
        store = Inbox(data_dir, create=False)
    except FileNotFoundError:
        store = None  # a daemon with --no-store: the tray keeps what it saw in memory
    except InboxError as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return None
    presenter = Presenter(
        store=store,
        aliases=ControlAliases(data_dir),
        traits=TrayApp.traits(pystray, notifier),
        popups=args.popup,
        dnd=args.dnd,
        iso_dates=args.iso_dates,
    )
    app = TrayApp(root, presenter, pystray, notifier)
    subscription = Subscription(
        data_dir,
        on_message=lambda message: app.post(lambda: app.receive(message)),
        on_connected=lambda: app.post(lambda: app.apply(presenter.catch_up())),
    )
    try:
        subscription.start()
    except ControlError as exc:
        raise UsageError(f"{exc}, or run `messengerd tray --standalone`") from None
    # Subscribed first, then the inbox read: a message in between pops up (not lost).
    app.apply(presenter.load())
    app.on_quit.append(subscription.stop)
    return app


def _quit_on_signals(app: Any) -> None:
    """Ctrl-C and SIGTERM quit cleanly: the daemon stops and the inbox commits."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda _signum, _frame: app.request_quit())
