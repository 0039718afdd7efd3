"""Desktop notifications for real: dunst, the notification daemon, on a session bus of the
test's own; what it received is read back from its history (dunstctl), and its click
(dunstctl action, as a person's click on the bubble) opens the message."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from messengerd.tray.notify import APP_NAME, NOTIFICATIONS_BUS_NAME
from tests.conftest import need_tool
from tests.e2e.tray.conftest import (
    POPUP_NAME,
    WAIT,
    bus_name_owned,
    running_tray,
    started,
    wait_for,
)

DUNSTRC = """\
[global]
    markup = full
    history_length = 20
"""
"""dunst reading markup in bodies (as GNOME's and KDE's servers do), so escaping shows."""

SENDER = "EVE<u>"
TEXT = "<b>not bold</b> & <a href='http://example.invalid/'>a link</a> &amp; bell\a"
BODY = (
    "&lt;b&gt;not bold&lt;/b&gt; &amp; &lt;a href='http://example.invalid/'&gt;a link&lt;/a&gt;"
    " &amp;amp; bell&lt;BEL&gt;"
)
"""TEXT as the notification's body: markup and entities escaped, the bell made visible."""


def dunstctl(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [need_tool("dunstctl", "dunst"), *args],
        env=env, capture_output=True, text=True, timeout=WAIT, check=True,
    )  # fmt: skip
    return result.stdout


@pytest.fixture
def notification_daemon(x, session_bus, tmp_path) -> Iterator[dict[str, str]]:
    """dunst on the test's display and bus; yields the environment that reaches it."""
    dunst = need_tool("dunst", "dunst")
    config = tmp_path / "dunstrc"
    config.write_text(DUNSTRC)
    with started([dunst, "-config", str(config)], session_bus):
        wait_for(lambda: bus_name_owned(session_bus, NOTIFICATIONS_BUS_NAME), "dunst on the bus")
        yield session_bus


@pytest.mark.interop
def test_a_message_is_a_desktop_notification_and_a_click_opens_it(x, notification_daemon, tmp_path):
    env = notification_daemon
    with running_tray(env, tmp_path) as tray:
        tray.send(TEXT, sender=SENDER)
        wait_for(
            lambda: dunstctl(env, "count", "displayed").strip() == "1",
            "dunst to show it",
            log=tray.log,
        )
        assert x.find("--name", POPUP_NAME) == [], "a notification instead of the popup"
        x.screenshot().save(tmp_path / "notification.png")

        # A click on the bubble: dunst invokes its default action, the popup opens.
        dunstctl(env, "action", "0")
        wait_for(lambda: x.find("--name", POPUP_NAME), "the popup", log=tray.log)

        dunstctl(env, "close-all")  # into dunst's history, where it can be read back
        history = wait_for(lambda: json.loads(dunstctl(env, "history"))["data"][0], "history")
        (received,) = history
        assert received["appname"]["data"] == APP_NAME
        assert received["summary"]["data"] == f"Message from {SENDER} to BOB"
        assert received["body"]["data"] == BODY
        assert received["default_action_name"]["data"] == "default", "clickable"


def test_without_a_notification_service_messages_pop_up_instead(monkeypatch, tmp_path, caplog):
    from messengerd.tray.notify import DesktopNotifications

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'no-bus'}")
    caplog.set_level("INFO")
    assert DesktopNotifications.start() is None
    assert "messages pop up as windows" in caplog.text
