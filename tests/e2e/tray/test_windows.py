"""The tray's menu and windows under a real window manager (openbox): where they open, what
stacks above what, as a person clicking the icon meets them."""

from __future__ import annotations

import pytest

from messengerd.tray.windows import WM_CLASS, WM_NAME
from tests.e2e.tray.conftest import POPUP_NAME, docked_icon, running_tray, wait_for

HISTORY_NAME = "^Messenger Service: History$"

TK_MENU_BORDER = 5
"""Pixels of a menu's edge a Tk submenu may lie over (its border and relief)."""


def overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two screen rectangles (x, y, width, height) share a pixel."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def inside(point: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    return overlap((*point, 1, 1), box)


def menus(x) -> list[int]:
    """Tk's posted menus (override-redirect windows of class Menu), outermost first."""
    return x.find("--class", "^Menu$")


@pytest.mark.interop
def test_the_menu_opens_beside_the_icon_and_history_opens_above_the_popups(
    x, x_env, window_manager, system_tray, tmp_path
):
    with running_tray(x_env, tmp_path) as tray:
        icon = docked_icon(x, tray)
        for n in range(3):
            tray.send(f"popup {n}")
        popups = wait_for(
            lambda: len(found := x.find("--name", POPUP_NAME)) == 3 and found, "three popups"
        )

        # A click on the icon: the menu opens above it, the pointer on no item.
        x.xdotool("mousemove", "--window", str(icon), "--sync", "10", "10", "click", "1")
        (menu,) = wait_for(lambda: menus(x), "the menu", log=tray.log)
        icon_box, menu_box = x.geometry(icon), x.geometry(menu)
        pointer = (icon_box[0] + 10, icon_box[1] + 10)
        assert not inside(pointer, menu_box), "a second click cannot hit an item (Quit)"
        assert not overlap(icon_box, menu_box)

        # "Recent messages", the first item: its submenu opens beside the menu, not over it.
        x.xdotool("mousemove", "--sync", str(menu_box[0] + 20), str(menu_box[1] + 8))
        submenu = wait_for(lambda: [m for m in menus(x) if m != menu], "the Recent submenu")
        sub_box = x.geometry(submenu[0])
        # Tk lays a submenu over its parent's border, a few pixels, as toolkits do.
        assert sub_box[0] >= menu_box[0] + menu_box[2] - TK_MENU_BORDER, (
            "the submenu opens on the right and covers none of its parent's items"
        )
        # A click beside the menu closes it (and reaches no popup: they are centred).
        x.xdotool("mousemove", "--sync", "5", "5", "click", "1")
        wait_for(lambda: not menus(x), "the menu to close")

        # History… from the menu (the keyboard: down to it, Enter): above every popup.
        x.xdotool("mousemove", "--window", str(icon), "--sync", "10", "10", "click", "1")
        wait_for(lambda: menus(x), "the menu again")
        x.xdotool("key", "Down", "Down", "Return")
        (history,) = wait_for(lambda: x.find("--name", HISTORY_NAME), "History", log=tray.log)
        assert x.wm_class(history) == (WM_NAME, WM_CLASS)
        wait_for(lambda: x.stacking()[-1:] == [history], "History on top of the stack")
        stacking = x.stacking()
        assert len(x.find("--name", POPUP_NAME)) == 3
        assert all(stacking.index(popup) < stacking.index(history) for popup in popups), (
            "History opens above the always-on-top popups, its title bar in view"
        )
        x.screenshot().save(tmp_path / "history.png")
