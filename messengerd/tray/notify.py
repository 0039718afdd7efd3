"""Desktop notifications: the desktop's own, each one clickable to open its message.

desktop-notifier speaks to the freedesktop Notifications service on D-Bus (Linux and the
BSDs: GNOME, KDE, dunst, mako, xfce4-notifyd), to Windows' toast notifications (WinRT) and
to macOS' Notification Center (from an app bundle only). It runs on an asyncio loop of its
own thread here, which also hears the click (D-Bus ActionInvoked "default", a toast's
activation). Where it has nothing to offer (macOS outside a bundle, Windows before 10), a
pystray backend's own notifications are used if it has them, without clicks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from messengerd.tray.icon import draw_icon

log = logging.getLogger(__name__)

APP_NAME = "messengerd"
"""The application name notification servers group and filter by (dunst's `appname`)."""

NOTIFICATIONS_BUS_NAME = "org.freedesktop.Notifications"
NOTIFICATIONS_PATH = "/org/freedesktop/Notifications"
"""The service every freedesktop notification server owns (Desktop Notifications Spec 1.2)."""

BODY_MARKUP = "body-markup"
"""The capability of a server that reads <b>, <i>, <a> and entities in the body (spec 1.2)."""

PROBE_TIMEOUT = 3.0
"""Seconds to find the notification service at start (D-Bus may start it on the call)."""

SEND_TIMEOUT = 10.0
"""Seconds one notification may take to hand over; a hung server loses no message: it pops up."""

MAX_PENDING = 32
"""Notifications handed over at once; past that a message pops up as a window instead."""


class Notifier(Protocol):
    """What the tray needs of a notification service."""

    markup: bool
    """The service reads markup in the body, so a sender's text must be escaped for it."""

    def notify(
        self, title: str, body: str, on_clicked: Callable[[], None], on_failed: Callable[[], None]
    ) -> None:
        """Show a notification; `on_clicked` or `on_failed` may follow, from any thread."""

    def stop(self) -> None:
        """Show no more."""


class DesktopNotifications:
    """desktop-notifier's DesktopNotifier on a loop thread of its own."""

    markup = False

    def __init__(self) -> None:
        from desktop_notifier import DesktopNotifier, Icon

        self._icon_dir = Path(tempfile.mkdtemp(prefix="messengerd-icon-"))
        icon_path = self._icon_dir / "messengerd.png"
        draw_icon(0).save(icon_path)
        self._notifier = DesktopNotifier(app_name=APP_NAME, app_icon=Icon(path=icon_path))
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="messengerd-tray-notify", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(cls) -> DesktopNotifications | None:
        """The desktop's notifications, or None (the reason logged) where there are none."""
        try:
            from desktop_notifier.main import get_backend_class
        except ImportError as exc:
            log.info("tray: no desktop notifications (%s); messages pop up as windows", exc)
            return None
        if get_backend_class().__name__ == "DummyNotificationCenter":
            log.info(
                "tray: this system offers desktop-notifier no notifications (macOS only "
                "from an app bundle); messages pop up as windows"
            )
            return None
        notifications = cls()
        if sys.platform.startswith("win") or sys.platform == "darwin":
            return notifications
        try:
            capabilities = notifications._run(_server_capabilities()).result(PROBE_TIMEOUT)
        except Exception as exc:
            notifications.stop()
            log.info(
                "tray: no desktop notification service (%s on the session bus: %s); "
                "messages pop up as windows",
                NOTIFICATIONS_BUS_NAME,
                exc or type(exc).__name__,
            )
            return None
        notifications.markup = BODY_MARKUP in capabilities
        log.info("tray: desktop notifications through %s", NOTIFICATIONS_BUS_NAME)
        return notifications

    def notify(
        self, title: str, body: str, on_clicked: Callable[[], None], on_failed: Callable[[], None]
    ) -> None:
        if not self._pending.acquire(blocking=False):
            log.warning("tray: %d notifications still on their way; one pops up", MAX_PENDING)
            on_failed()
            return
        future = self._run(self._send(title, body, on_clicked))

        def done(future: Future[bool]) -> None:
            self._pending.release()
            try:
                shown = future.result()
            except Exception as exc:
                log.warning("tray: notification not shown (%s); it pops up", exc)
                shown = False
            if not shown:
                on_failed()

        future.add_done_callback(done)

    async def _send(self, title: str, body: str, on_clicked: Callable[[], None]) -> bool:
        from desktop_notifier import Notification

        dispatched = asyncio.Event()
        notification = Notification(
            title=title, message=body, on_dispatched=dispatched.set, on_clicked=on_clicked
        )
        # desktop-notifier logs a failure and returns; on_dispatched says it went.
        await asyncio.wait_for(self._notifier.send_notification(notification), SEND_TIMEOUT)
        return dispatched.is_set()

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        shutil.rmtree(self._icon_dir, ignore_errors=True)


async def _server_capabilities() -> list[str]:
    """GetCapabilities of the session bus' notification server (D-Bus starts one if it can)."""
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    bus = await MessageBus().connect()
    try:
        reply = await bus.call(
            Message(
                destination=NOTIFICATIONS_BUS_NAME,
                path=NOTIFICATIONS_PATH,
                interface=NOTIFICATIONS_BUS_NAME,
                member="GetCapabilities",
            )
        )
    finally:
        bus.disconnect()
    if reply is None or reply.message_type.name != "METHOD_RETURN":
        error = None if reply is None else reply.error_name
        raise OSError(error or "no answer")
    return list(reply.body[0])


class PystrayNotifications:
    """A pystray backend's own notify() (win32 balloons, gtk and appindicator's libnotify,
    macOS): shown, never clicked (pystray reports no click)."""

    def __init__(self, markup: bool) -> None:
        self.markup = markup
        self.icon: Any = None

    def notify(
        self, title: str, body: str, on_clicked: Callable[[], None], on_failed: Callable[[], None]
    ) -> None:
        if self.icon is None:
            on_failed()
            return
        try:
            self.icon.notify(body, title)
        except Exception as exc:
            log.warning("tray: notification not shown (%s); it pops up", exc)
            on_failed()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.icon is not None:
                self.icon.remove_notification()
