"""The classic popup on a real X server: smbclient -M sends, the popup shows it, OK closes it.

The text is read back the way a person copies it (Ctrl+A, Ctrl+C, then the clipboard
through xclip); the window's class, icon and place through the X server itself.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from messengerd.tray.icon import read_badge
from messengerd.tray.popup import PADDING
from messengerd.tray.windows import WM_CLASS, WM_NAME
from tests.conftest import need_tool
from tests.e2e.tray.conftest import (
    POPUP_NAME,
    WAIT,
    badge_box_on_screen,
    docked_icon,
    running_tray,
    running_trayer,
    wait_for,
)
from tests.interop.test_smbclient import smbclient_message

TEXT = "Disk C: is 95% full\n<b>not bold</b> & not an entity: &amp;\tthen a bell\a"
SHOWN = "Disk C: is 95% full\n<b>not bold</b> & not an entity: &amp;\tthen a bell<BEL>"
"""What the popup shows for TEXT: markup as typed, the bell made visible."""

GERMAN_DATE = re.compile(r" on \d\d\.\d\d\.\d{4} \d\d:\d\d:\d\d$")
"""A date and time as de_DE's LC_TIME writes them (%x %X): 14.05.2024 08:30:15."""


@pytest.mark.interop
def test_an_icon_shown_before_the_system_tray_started_docks_when_it_does(x, x_env, tmp_path):
    # As at a login where the tray app starts before the desktop's panel: the dock request
    # made when the icon was shown found no tray, and the icon must still appear once one
    # is there (whether the tray's announcement or the app's own retry brings it in).
    with running_tray(x_env, tmp_path) as tray:
        assert x.find("--classname", "messengerdSystemTrayIcon") == []
        with running_trayer(x, x_env):
            docked_icon(x, tray)


@pytest.mark.interop
def test_a_message_pops_up_reads_back_and_goes_on_ok(x, x_env, system_tray, tmp_path):
    xclip = need_tool("xclip", "xclip")
    x_env["LC_TIME"] = "de_DE.UTF-8"
    with running_tray(x_env, tmp_path) as tray:
        icon = docked_icon(x, tray)
        assert x.find("--name", POPUP_NAME) == []

        sent = smbclient_message(tray.ports["session"], TEXT.encode())
        assert sent.returncode == 0, sent.stderr

        (popup,) = wait_for(lambda: x.find("--name", POPUP_NAME), "the popup", log=tray.log)
        assert x.wm_class(popup) == (WM_NAME, WM_CLASS), "desktops can tell whose window it is"
        assert {(16, 16), (32, 32)} <= set(x.icon_sizes(popup)), "the window has our icon"
        (header,) = [line for line in tray.log if "tray: popup 1: " in line]
        assert header.split("tray: popup 1: ")[1].startswith("Message from ALICE to BOB on ")
        assert GERMAN_DATE.search(header), "the date as the desktop's locale writes it"

        px, py, width, height = x.geometry(popup)
        screen = x.screenshot()
        screen.save(tmp_path / "popup.png")
        window = screen.crop((px, py, px + width, py + height))
        colours = window.convert("RGB").getcolors(maxcolors=width * height)
        assert len(colours) > 16, "the popup is not blank: text and a button are drawn"
        ink = sum(count for count, (r, g, b) in colours if r + g + b < 150)
        assert ink > 200, "dark text on the light dialog"
        badge = screen.crop(badge_box_on_screen(x, icon))
        assert read_badge(badge) == "1", "the unread badge, readable in the tray"

        # What a person gets by selecting all and copying: the text, exactly as shown.
        x.xdotool("windowfocus", "--sync", str(popup))
        x.xdotool("key", "--clearmodifiers", "ctrl+a", "ctrl+c")
        copied = subprocess.run(
            [xclip, "-o", "-selection", "clipboard"],
            env=x_env,
            capture_output=True,
            text=True,
            timeout=WAIT,
        ).stdout
        assert copied == SHOWN

        # OK sits centred at the bottom, PADDING above the edge.
        x.xdotool("mousemove", "--window", str(popup), "--sync", str(width // 2),
                  str(height - PADDING - 12), "click", "1")  # fmt: skip
        wait_for(lambda: not x.find("--name", POPUP_NAME), "the popup to close on OK")
        assert tray.unread() == 0, "OK marks it read"
        wait_for(
            lambda: read_badge(x.screenshot().crop(badge_box_on_screen(x, icon))) == "",
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


def test_the_standalone_tray_applies_its_settings_file(x_env, tmp_path):
    from messengerd.core.store.inbox import Inbox

    settings = tmp_path / "messengerd.toml"
    settings.write_text('[policy]\ndeny_senders = ["SPAM*"]\n')
    with running_tray(x_env, tmp_path / "data", "--config", str(settings)) as tray:
        tray.send("Buy now", sender="SPAMMER")
        tray.send("The real one", sender="ALICE")
        wait_for(lambda: tray.unread() >= 1, "the allowed message to be stored", log=tray.log)
        stored = Inbox(tray.data_dir, create=False).query()
    assert [message.text for message in stored] == ["The real one"]
    assert any("SPAMMER" in line and "refused" in line for line in tray.log), tray.log
