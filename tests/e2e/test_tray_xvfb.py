"""`messengerd tray --standalone` on a real X server: smbclient -M sends, the popup shows it.

Xvfb is the display, trayer the system tray pystray's xorg backend docks into; the text is
read back the way a person copies it (Ctrl+A, Ctrl+C, then the clipboard through xclip),
the screen through the X server itself (Pillow's ImageGrab over XCB).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from messengerd.core.store.inbox import Inbox
from messengerd.tray.popup import PADDING
from tests.conftest import need, need_tool
from tests.daemon_process import READY
from tests.interop.test_smbclient import smbclient_message

WAIT = 15.0
"""Seconds to wait for a window, a process or a tray to appear; never reached when it works."""

SCREEN = (1024, 768)
POPUP_NAME = "^Messenger Service$"
ICON_CLASS = "messengerdSystemTrayIcon"
"""The icon window's WM_CLASS instance: pystray's xorg backend names it `<name>SystemTrayIcon`."""

TEXT = "Disk C: is 95% full\n<b>not bold</b> & not an entity: &amp;\tthen a bell\a"
SHOWN = "Disk C: is 95% full\n<b>not bold</b> & not an entity: &amp;\tthen a bell<BEL>"
"""What the popup shows for TEXT: markup as typed, the bell made visible."""


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
    return dict(os.environ, DISPLAY=display, PYSTRAY_BACKEND="xorg", PYTHONUNBUFFERED="1")


def tray_owner(display: str) -> int:
    """The window that owns the system tray selection (0: no tray yet)."""
    import Xlib.display

    connection = Xlib.display.Display(display)
    try:
        atom = connection.intern_atom("_NET_SYSTEM_TRAY_S0")
        owner = connection.get_selection_owner(atom)
        return owner if isinstance(owner, int) else owner.id  # X.NONE comes as a plain 0
    finally:
        connection.close()


@pytest.fixture
def system_tray(display, x_env) -> Iterator[None]:
    """trayer: a stand-alone system tray, so the icon has somewhere to dock."""
    with running_trayer(display, x_env):
        yield


@contextlib.contextmanager
def running_trayer(display: str, x_env: dict[str, str]) -> Iterator[None]:
    """trayer, from started until it can embed an icon to stopped."""
    trayer = need_tool("trayer", "trayer")
    process = subprocess.Popen(
        [trayer, "--edge", "bottom", "--align", "right", "--widthtype", "pixel",
         "--width", "100", "--height", "24", "--expand", "false"],
        env=x_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: tray_owner(display), "trayer to own the system tray")
        # Owning the selection comes before trayer can embed: a dock request sent in
        # between is lost. Its panel is mapped once it is ready.
        xdotool = need_tool("xdotool", "xdotool")
        wait_for(
            lambda: subprocess.run(
                [xdotool, "search", "--onlyvisible", "--class", "trayer"],
                env=x_env, capture_output=True, timeout=WAIT, check=False,
            ).stdout.strip(),
            "trayer's panel to be mapped",
        )  # fmt: skip
        yield
    finally:
        process.terminate()
        process.wait(10)


class Tray:
    """A running `messengerd tray --standalone`: its ports, its log, its windows."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = env
        self.log: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "messengerd", "-v", "tray", "--standalone",
             "--bind", "127.0.0.1", "--broadcast", "127.255.255.255",
             "--name-port", "0", "--datagram-port", "0", "--session-port", "0",
             "--alias", "BOB", "--data-dir", str(data_dir)],
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
                    self.ports = {key: int(match[key]) for key in ("name", "datagram", "session")}
                    ready.set()
            ready.set()

        threading.Thread(target=read_log, daemon=True).start()
        ready.wait(WAIT)
        if not self.ports:
            self.stop()
            pytest.fail("messengerd tray did not start:\n" + "\n".join(self.log))

    def x(self, *args: str) -> list[str]:
        """Run an X tool on the tray's display; its output lines."""
        result = subprocess.run(
            args, env=self.env, capture_output=True, text=True, timeout=WAIT, check=False
        )
        return result.stdout.split()

    def windows(self, *search: str) -> list[str]:
        return self.x(need_tool("xdotool", "xdotool"), "search", "--onlyvisible", *search)

    def geometry(self, window: str) -> tuple[int, int, int, int]:
        lines = self.x(need_tool("xdotool", "xdotool"), "getwindowgeometry", "--shell", window)
        values = dict(line.split("=", 1) for line in lines)
        return int(values["X"]), int(values["Y"]), int(values["WIDTH"]), int(values["HEIGHT"])

    def screenshot(self):
        from PIL import ImageGrab

        return ImageGrab.grab(xdisplay=self.env["DISPLAY"])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.mark.interop
def test_an_icon_shown_before_the_system_tray_started_docks_when_it_does(display, x_env, tmp_path):
    # As at a login where the tray app starts before the desktop's panel: the dock request
    # made when the icon was shown found no tray, and the icon must still appear once one
    # is there (whether the tray's announcement or the app's own retry brings it in).
    running = Tray(x_env, tmp_path)
    try:
        assert running.windows("--classname", ICON_CLASS) == []
        with running_trayer(display, x_env):
            wait_for(
                lambda: running.windows("--classname", ICON_CLASS),
                "the icon to dock in a tray started after it",
                log=running.log,
            )
    finally:
        running.stop()


@pytest.fixture
def tray(x_env, system_tray, tmp_path) -> Iterator[Tray]:
    from PIL import features

    need(features.check("xcb"), "Pillow without XCB cannot take screenshots of X")
    running = Tray(x_env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def red_pixels(image) -> int:
    """Pixels of the unread badge's red in `image`."""
    rgb = image.convert("RGB")
    colours = rgb.getcolors(maxcolors=rgb.width * rgb.height) or []
    return sum(count for count, (r, g, b) in colours if r > 180 and g < 90 and b < 90)


@pytest.mark.interop
def test_a_message_pops_up_reads_back_and_goes_on_ok(tray, tmp_path):
    xdotool = need_tool("xdotool", "xdotool")
    xclip = need_tool("xclip", "xclip")
    (icon,) = wait_for(
        lambda: tray.windows("--classname", ICON_CLASS), "the icon to dock", log=tray.log
    )
    assert tray.windows("--name", POPUP_NAME) == []

    sent = smbclient_message(tray.ports["session"], TEXT.encode())
    assert sent.returncode == 0, sent.stderr

    (popup,) = wait_for(lambda: tray.windows("--name", POPUP_NAME), "the popup", log=tray.log)
    x, y, width, height = tray.geometry(popup)
    screen = tray.screenshot()
    screen.save(tmp_path / "popup.png")
    window = screen.crop((x, y, x + width, y + height))
    colours = window.convert("RGB").getcolors(maxcolors=width * height)
    assert len(colours) > 16, "the popup is not blank: text and a button are drawn"
    ink = sum(count for count, (r, g, b) in colours if r + g + b < 150)
    assert ink > 200, "dark text on the light dialog"
    ix, iy, iwidth, iheight = tray.geometry(icon)
    assert red_pixels(screen.crop((ix, iy, ix + iwidth, iy + iheight))) > 0, "unread badge"

    # What a person gets by selecting all and copying: the text, exactly as shown.
    tray.x(xdotool, "windowfocus", "--sync", popup)
    tray.x(xdotool, "key", "--clearmodifiers", "ctrl+a", "ctrl+c")
    copied = subprocess.run(
        [xclip, "-o", "-selection", "clipboard"],
        env=tray.env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    ).stdout
    assert copied == SHOWN

    # OK sits centred at the bottom, PADDING above the edge.
    tray.x(xdotool, "mousemove", "--window", popup, "--sync", str(width // 2),
           str(height - PADDING - 12), "click", "1")  # fmt: skip
    wait_for(lambda: not tray.windows("--name", POPUP_NAME), "the popup to close on OK")
    assert Inbox(tmp_path, create=False).count(unread_only=True) == 0, "OK marks it read"
    wait_for(
        lambda: red_pixels(tray.screenshot().crop((ix, iy, ix + iwidth, iy + iheight))) == 0,
        "the badge to go",
    )
    assert tray.stop() == 0, "\n".join(tray.log)


def test_without_a_display_the_tray_says_so_in_one_line(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DISPLAY"}
    result = subprocess.run(
        [sys.executable, "-m", "messengerd", "tray", "--data-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("messengerd: cannot open a window")
    assert len(result.stderr.splitlines()) == 1
