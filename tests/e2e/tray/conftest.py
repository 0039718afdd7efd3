"""A desktop to run `messengerd tray` on: Xvfb, a window manager, a system tray, a session bus.

Every part is a real program from Debian (Xvfb, openbox, trayer, dbus-daemon, dunst,
status-notifier-watcher), started on a display and a bus of the test's own, so nothing
reaches the developer's desktop. The X server is read with python-xlib and xdotool,
the screen through Pillow's ImageGrab over XCB.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import need, need_tool
from tests.daemon_process import READY, ready_ports

WAIT = 15.0
"""Seconds to wait for a window, a process or a tray to appear; never reached when it works."""

SCREEN = (1024, 768)
POPUP_NAME = "^Messenger Service$"
ICON_CLASS = "messengerdSystemTrayIcon"
"""The icon window's WM_CLASS instance: pystray's xorg backend names it `<name>SystemTrayIcon`."""

TRAY_HEIGHT = 24
"""trayer's panel height in pixels, and so its icons'."""


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = WAIT, log: list[str] | None = None
) -> object:
    """Poll `condition` until it returns something true; fail naming `what` after `timeout`,
    with the last lines of `log` (the tray's stderr) when given."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(["", "tray log:", *log[-30:]]) if log is not None else ""
            pytest.fail(f"gave up waiting for {what}{tail}")
        time.sleep(0.1)


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A helper program, stopped (SIGTERM, then SIGKILL) when the block ends."""
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL if that is not enough within WAIT seconds; the exit code."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb on a display number it picks itself (-displayfd), so none is shared."""
    xvfb = need_tool("Xvfb", "xvfb")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", f"{SCREEN[0]}x{SCREEN[1]}x24",
         "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], WAIT)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number:
            pytest.fail("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(10)


@pytest.fixture
def x_env(display) -> dict[str, str]:
    """The environment of a program on the test's display: no session bus unless one is
    started (session_bus), so nothing reaches the developer's own notifications."""
    env = {k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "LC_ALL")}
    env.update(DISPLAY=display, PYSTRAY_BACKEND="xorg", PYTHONUNBUFFERED="1")
    return env


class X:
    """The test's X server as a person's tools see it (python-xlib, xdotool, screenshots)."""

    def __init__(self, display: str) -> None:
        import Xlib.display

        self.name = display
        self.display = Xlib.display.Display(display)
        self.root = self.display.screen().root

    def close(self) -> None:
        self.display.close()

    def atom(self, name: str) -> int:
        return self.display.intern_atom(name)

    def window(self, window_id: int):
        return self.display.create_resource_object("window", window_id)

    def find(self, *search: str) -> list[int]:
        """xdotool search --onlyvisible SEARCH...: the matching windows' ids."""
        xdotool = need_tool("xdotool", "xdotool")
        result = subprocess.run(
            [xdotool, "search", "--onlyvisible", *search],
            env=dict(os.environ, DISPLAY=self.name),
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        return [int(line) for line in result.stdout.split()]

    def xdotool(self, *args: str) -> None:
        subprocess.run(
            [need_tool("xdotool", "xdotool"), *args],
            env=dict(os.environ, DISPLAY=self.name),
            capture_output=True,
            timeout=WAIT,
            check=True,
        )

    def geometry(self, window_id: int) -> tuple[int, int, int, int]:
        """x, y on the screen, width, height."""
        window = self.window(window_id)
        geometry = window.get_geometry()
        origin = window.translate_coords(self.root, 0, 0)
        return -origin.x, -origin.y, geometry.width, geometry.height

    def size(self, window_id: int) -> tuple[int, int]:
        geometry = self.window(window_id).get_geometry()
        return geometry.width, geometry.height

    def parent(self, window_id: int) -> int:
        return self.window(window_id).query_tree().parent.id

    def viewable(self, window_id: int) -> bool:
        import Xlib.X

        return self.window(window_id).get_attributes().map_state == Xlib.X.IsViewable

    def wm_class(self, window_id: int) -> tuple[str, str] | None:
        return self.window(window_id).get_wm_class()

    def icon_sizes(self, window_id: int) -> list[tuple[int, int]]:
        """The sizes in the window's _NET_WM_ICON (what taskbars and switchers draw)."""
        prop = self.window(window_id).get_full_property(self.atom("_NET_WM_ICON"), 0)
        data = list(prop.value) if prop is not None else []
        sizes = []
        while len(data) >= 2:
            width, height = data[0], data[1]
            sizes.append((width, height))
            data = data[2 + width * height :]
        return sizes

    def stacking(self) -> list[int]:
        """The window manager's client windows, bottom to top (_NET_CLIENT_LIST_STACKING)."""
        prop = self.root.get_full_property(self.atom("_NET_CLIENT_LIST_STACKING"), 0)
        return list(prop.value) if prop is not None else []

    def screenshot(self):
        from PIL import ImageGrab, features

        need(features.check("xcb"), "Pillow without XCB cannot take screenshots of X")
        return ImageGrab.grab(xdisplay=self.name)


@pytest.fixture
def x(display) -> Iterator[X]:
    screen = X(display)
    try:
        yield screen
    finally:
        screen.close()


def tray_owner(x: X) -> int:
    """The window that owns the system tray selection (0: no tray yet)."""
    owner = x.display.get_selection_owner(x.atom("_NET_SYSTEM_TRAY_S0"))
    return owner if isinstance(owner, int) else owner.id  # X.NONE comes as a plain 0


@contextlib.contextmanager
def running_trayer(x: X, x_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """trayer at the bottom right, from ready to embed an icon until stopped."""
    trayer = need_tool("trayer", "trayer")
    command = [trayer, "--edge", "bottom", "--align", "right", "--widthtype", "pixel",
               "--width", "100", "--height", str(TRAY_HEIGHT), "--expand", "false",
               "--SetDockType", "true"]  # fmt: skip
    with started(command, x_env) as process:
        wait_for(lambda: tray_owner(x), "trayer to own the system tray")
        # Owning the selection comes before trayer can embed: a dock request sent in
        # between is lost. Its panel is mapped once it is ready.
        wait_for(lambda: x.find("--class", "trayer"), "trayer's panel to be mapped")
        yield process


LXPANEL_PROFILE = """Global {
  edge=bottom
  align=left
  widthtype=percent
  width=100
  height=26
  iconsize=24
  setdocktype=1
}
Plugin {
  type=space
  expand=1
  Config {
    Size=2
  }
}
Plugin {
  type=tray
  Config {
  }
}
"""
"""A panel as LXDE's desktop has it: a spacer, then the system tray (lxpanel's `tray`
plugin), 24-pixel icons."""


@contextlib.contextmanager
def running_lxpanel(x: X, x_env: dict[str, str], config: Path) -> Iterator[subprocess.Popen]:
    """LXDE's panel with its own system tray, on a session bus of its own, until stopped."""
    lxpanel = need_tool("lxpanel", "lxpanel")
    session = need_tool("dbus-run-session", "dbus-bin")
    panels = config / "lxpanel" / "messengerd-test" / "panels"
    panels.mkdir(parents=True, exist_ok=True)
    (panels / "panel").write_text(LXPANEL_PROFILE)
    env = dict(x_env, XDG_CONFIG_HOME=str(config))
    with started([session, "--", lxpanel, "--profile", "messengerd-test"], env) as process:
        wait_for(lambda: tray_owner(x), "lxpanel's tray to own the system tray")
        wait_for(lambda: x.find("--class", "lxpanel"), "lxpanel's panel to be mapped")
        yield process


@pytest.fixture
def system_tray(x, x_env) -> Iterator[subprocess.Popen]:
    """trayer: a stand-alone system tray, so the icon has somewhere to dock."""
    with running_trayer(x, x_env) as process:
        yield process


@pytest.fixture
def window_manager(x, x_env) -> Iterator[None]:
    """openbox, which keeps _NET_CLIENT_LIST_STACKING and honours "above" (-topmost)."""
    openbox = need_tool("openbox", "openbox")
    with started([openbox, "--sm-disable"], x_env):
        check = x.atom("_NET_SUPPORTING_WM_CHECK")
        wait_for(lambda: x.root.get_full_property(check, 0), "openbox to manage the screen")
        yield


@pytest.fixture
def session_bus(x_env, tmp_path) -> Iterator[dict[str, str]]:
    """A D-Bus session bus of the test's own (dbus-daemon --session): x_env pointed at it."""
    dbus_daemon = need_tool("dbus-daemon", "dbus-daemon")
    address = f"unix:path={tmp_path / 'bus'}"
    command = [dbus_daemon, "--session", "--nofork", "--nopidfile", f"--address={address}"]
    with started(command, x_env):
        wait_for(lambda: (tmp_path / "bus").exists(), "the session bus")
        x_env["DBUS_SESSION_BUS_ADDRESS"] = address
        yield x_env


def bus_name_owned(env: dict[str, str], name: str) -> bool:
    """Whether `name` has an owner on the bus of `env` (dbus-send NameHasOwner)."""
    dbus_send = need_tool("dbus-send", "dbus-bin")
    result = subprocess.run(
        [dbus_send, "--session", "--print-reply", "--dest=org.freedesktop.DBus",
         "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}"],
        env=env, capture_output=True, text=True, timeout=WAIT, check=False,
    )  # fmt: skip
    return "boolean true" in result.stdout


class Tray:
    """A running `messengerd tray --standalone`: its ports, its log, its inbox."""

    def __init__(self, env: dict[str, str], data_dir: Path, *options: str) -> None:
        self.env = env
        self.data_dir = data_dir
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "messengerd", "-v", "tray", "--standalone",
             "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
             "--name-port", "0", "--datagram-port", "0", "--session-port", "0", "--rpc-port", "0",
             "--alias", "BOB", "--data-dir", str(data_dir), *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.ports: dict[str, int] = {}
        ready = threading.Event()

        def read_log() -> None:
            # Read to the end, so that the tray never blocks on a full pipe.
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.log.append(line.rstrip("\n"))
                if match := READY.search(line):
                    self.ports = ready_ports(match)
                    ready.set()
            ready.set()

        threading.Thread(target=read_log, daemon=True).start()
        ready.wait(WAIT)
        if not self.ports:
            self.stop()
            pytest.fail("messengerd tray did not start:\n" + "\n".join(self.log))

    def send(self, text: str, sender: str = "ALICE", to: str = "BOB") -> None:
        """One message over the mailslot path (a datagram to the tray's datagram port)."""
        from messengerd.sender import prepare_message, send_mailslot

        message = prepare_message(to, text, fromname=sender, via="mailslot")
        send_mailslot(message, "127.0.0.1", self.ports["datagram"])

    def unread(self) -> int:
        from messengerd.core.store.inbox import Inbox

        return Inbox(self.data_dir, create=False).count(unread_only=True)

    def stop(self) -> int:
        return stop(self.process)


@contextlib.contextmanager
def running_tray(env: dict[str, str], data_dir: Path, *options: str) -> Iterator[Tray]:
    tray = Tray(env, data_dir, *options)
    try:
        yield tray
    finally:
        tray.stop()


def docked_icon(x: X, tray: Tray) -> int:
    """The icon's window, once a tray has embedded it and it is on screen."""
    (icon,) = wait_for(lambda: x.find("--classname", ICON_CLASS), "the icon to dock", log=tray.log)
    wait_for(lambda: x.parent(icon) != x.root.id and x.viewable(icon), "the icon to be embedded")
    return icon


def badge_box_on_screen(x: X, icon: int) -> tuple[int, int, int, int]:
    """The square the icon is drawn in, centred in its window, as a crop box."""
    ix, iy, width, height = x.geometry(icon)
    side = min(width, height)
    left, top = ix + (width - side) // 2, iy + (height - side) // 2
    return left, top, left + side, top + side
