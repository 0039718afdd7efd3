"""The xorg tray icon stays docked and readable: a burst of messages, a tray that restarts.

pystray's xorg backend asked the tray to dock the icon again on every change, and trayer
shrank it to a 1x22 sliver after a few messages (issue 16). These tests watch the icon's
window through the X server while messages arrive, and read its badge off the screen.
"""

from __future__ import annotations

import time

import pytest

from messengerd.tray.icon import read_badge
from tests.e2e.tray.conftest import (
    TRAY_HEIGHT,
    badge_box_on_screen,
    docked_icon,
    running_lxpanel,
    running_tray,
    running_trayer,
    wait_for,
)

BURST = 30
"""Messages in the burst: past the badge's 9+, well past the 2-8 that used to lose the icon."""

SETTLE = 1.0
"""Seconds to let the last icon change reach the screen before it is judged."""


def icon_is_whole(x, icon: int, size: tuple[int, int]) -> bool:
    return x.size(icon) == size and x.parent(icon) != x.root.id and x.viewable(icon)


def sizes_through_a_burst(x, tray, icon: int) -> set[tuple[int, int]]:
    """Every size the icon's window had while BURST messages arrived, and after them."""
    sizes = set()
    for n in range(BURST):
        tray.send(f"burst {n}")
        sizes.add(x.size(icon))
        time.sleep(0.02)
    wait_for(lambda: tray.unread() == BURST, f"the {BURST} messages", log=tray.log)
    time.sleep(SETTLE)
    sizes.add(x.size(icon))
    return sizes


@pytest.mark.interop
def test_the_icon_keeps_its_size_through_a_burst_of_messages(x, x_env, system_tray, tmp_path):
    with running_tray(x_env, tmp_path, "--no-popup") as tray:
        icon = docked_icon(x, tray)
        size = x.size(icon)
        assert size[1] == TRAY_HEIGHT - 2 or size[1] == TRAY_HEIGHT, size
        assert size[0] >= size[1] - 2, "a whole icon, not a sliver"
        assert sizes_through_a_burst(x, tray, icon) == {size}, "the icon never changed size"
        assert icon_is_whole(x, icon, size), "still embedded in trayer and on screen"
        assert x.find("--classname", "messengerdSystemTrayIcon") == [icon], "one icon, the same"

        screen = x.screenshot()
        screen.save(tmp_path / "burst.png")
        box = badge_box_on_screen(x, icon)
        assert read_badge(screen.crop(box)) == "9+"
        # The rounded tile's corners show trayer's own background, not black.
        left, top, right, bottom = box
        behind = screen.getpixel((left - 3, top + (bottom - top) // 2))
        assert screen.getpixel((left, top)) == behind != (0, 0, 0)
        assert screen.getpixel((right - 1, top)) == behind


@pytest.mark.interop
def test_the_icon_comes_back_whole_when_the_tray_restarts(x, x_env, tmp_path):
    with running_tray(x_env, tmp_path, "--no-popup") as tray:
        with running_trayer(x, x_env):
            icon = docked_icon(x, tray)
            size = x.size(icon)
        for restart in range(2):
            with running_trayer(x, x_env):
                wait_for(
                    lambda: icon_is_whole(x, icon, size),
                    f"the icon back in the restarted tray ({restart + 1})",
                    log=tray.log,
                )
                for n in range(3):
                    tray.send(f"after restart {restart}: {n}")
                wait_for(lambda r=restart: tray.unread() == 3 * (r + 1), "the messages")
                time.sleep(SETTLE)
                assert icon_is_whole(x, icon, size)
                screen = x.screenshot()
                assert read_badge(screen.crop(badge_box_on_screen(x, icon))) == str(
                    3 * (restart + 1)
                )


@pytest.mark.interop
def test_the_icon_stays_whole_in_a_desktop_panels_own_tray(x, x_env, tmp_path):
    # LXDE's panel embeds tray icons itself, as a desktop's panel does, not trayer's way.
    with (
        running_lxpanel(x, x_env, tmp_path / "config"),
        running_tray(x_env, tmp_path / "data", "--no-popup") as tray,
    ):
        icon = docked_icon(x, tray)
        size = x.size(icon)
        assert min(size) >= 16, size
        assert sizes_through_a_burst(x, tray, icon) == {size}, "the icon never changed size"
        assert icon_is_whole(x, icon, size), "still embedded in lxpanel's tray, on screen"
        screen = x.screenshot()
        screen.save(tmp_path / "lxpanel.png")
        assert read_badge(screen.crop(badge_box_on_screen(x, icon))) == "9+"
