"""The tray as GNOME and KDE show it: pystray's appindicator backend, a StatusNotifierItem.

A desktop's SNI host reads the item over D-Bus; here the test is that host. The watcher
is status-notifier-watcher (Debian's haskell-status-notifier-item-utils), on a session bus
and display of the test's own; the item's properties, its icon file and its menu
(com.canonical.dbusmenu) are read with dbus-fast, and a menu item is clicked the way a
panel clicks it (dbusmenu Event "clicked").
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from PIL import Image

from messengerd.tray.icon import read_badge
from tests.conftest import need, need_tool
from tests.e2e.tray.conftest import WAIT, bus_name_owned, running_tray, started, wait_for

WATCHER = "org.kde.StatusNotifierWatcher"
ITEM = "org.kde.StatusNotifierItem"
DBUSMENU = "com.canonical.dbusmenu"
MENU_LABELS = [
    "Recent messages", "History…", "Aliases…", "Popup window", "Do not disturb", "Quit",
]  # fmt: skip


def appindicator_available() -> bool:
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        gi.require_version("AyatanaAppIndicator3", "0.1")
        from gi.repository import AyatanaAppIndicator3, Gtk  # noqa: F401
    except (ImportError, ValueError):
        return False
    return True


async def call(address: str, destination: str, path: str, interface: str, member: str,
               signature: str = "", body: list[Any] | None = None) -> list[Any]:  # fmt: skip
    """One D-Bus method call on the test's session bus; its reply's body."""
    from dbus_fast import Message, MessageType
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    try:
        reply = await bus.call(
            Message(destination=destination, path=path, interface=interface, member=member,
                    signature=signature, body=body or [])
        )  # fmt: skip
    finally:
        bus.disconnect()
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    return reply.body


def get(address: str, destination: str, path: str, interface: str, name: str) -> Any:
    body = asyncio.run(
        call(address, destination, path, "org.freedesktop.DBus.Properties", "Get", "ss",
             [interface, name])
    )  # fmt: skip
    return body[0].value


def registered_items(address: str) -> list[str]:
    return get(address, WATCHER, "/StatusNotifierWatcher", WATCHER, "RegisteredStatusNotifierItems")


async def item_path(address: str, service: str) -> str:
    """Where `service` serves its StatusNotifierItem (this watcher keeps only bus names)."""
    from dbus_fast.aio import MessageBus

    bus = await MessageBus(bus_address=address).connect()
    try:
        paths = ["/"]
        while paths:
            path = paths.pop()
            node = await bus.introspect(service, path)
            if any(interface.name == ITEM for interface in node.interfaces):
                return path
            paths += [path.rstrip("/") + "/" + child.name for child in node.nodes]
    finally:
        bus.disconnect()
    raise AssertionError(f"{service} serves no {ITEM}")


def menu_items(address: str, service: str, menu_path: str) -> dict[str, int]:
    """The menu's top-level labels (mnemonic marks removed) and their dbusmenu ids."""
    (_revision, layout) = asyncio.run(
        call(address, service, menu_path, DBUSMENU, "GetLayout", "iias", [0, -1, []])
    )
    _root_id, _props, children = layout
    items = {}
    for child in children:
        item_id, props, _ = child.value
        if "label" in props:
            items[props["label"].value.replace("_", "")] = item_id
    return items


@pytest.mark.interop
def test_the_status_notifier_item_shows_the_badge_and_its_menu_works(x, session_bus, tmp_path):
    need(appindicator_available(), "PyGObject and AyatanaAppIndicator3 (pip install "
         "'.[appindicator]', apt-get install gir1.2-ayatanaappindicator3-0.1)")  # fmt: skip
    watcher = need_tool("status-notifier-watcher", "haskell-status-notifier-item-utils")
    env = dict(session_bus, PYSTRAY_BACKEND="appindicator", NO_AT_BRIDGE="1")
    address = env["DBUS_SESSION_BUS_ADDRESS"]
    with started([watcher], env):
        wait_for(lambda: bus_name_owned(env, WATCHER), "the StatusNotifierWatcher")
        with running_tray(env, tmp_path, "--popup") as tray:
            (item,) = wait_for(lambda: registered_items(address), "the item", log=tray.log)
            service, _, path = item.partition("/")
            path = "/" + path if path else asyncio.run(item_path(address, service))

            def prop(name: str) -> Any:
                return get(address, service, path, ITEM, name)

            assert prop("Id") == "messengerd"
            assert prop("Status") == "Active"
            assert prop("Category") == "ApplicationStatus"

            def badge() -> str | None:
                # pystray writes each icon to a new file and removes the one before.
                try:
                    return read_badge(Image.open(prop("IconName")))
                except OSError:
                    return None

            assert badge() == ""

            tray.send("hello")
            wait_for(lambda: badge() == "1", "the badge on the item's icon", log=tray.log)

            menu = prop("Menu")
            items = wait_for(lambda: menu_items(address, service, menu), "the menu")
            assert [label for label in items if label in MENU_LABELS] == MENU_LABELS

            # The panel's click on History…: the window opens on the desktop.
            asyncio.run(
                call(address, service, menu, DBUSMENU, "Event", "isvu",
                     [items["History…"], "clicked", _empty_variant(), int(time.time())])
            )  # fmt: skip
            wait_for(lambda: x.find("--name", "^Messenger Service: History$"), "History",
                     timeout=WAIT, log=tray.log)  # fmt: skip


def _empty_variant():
    from dbus_fast import Variant

    return Variant("s", "")
