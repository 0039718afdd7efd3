"""What every tray window shares: its window class, its icon, and being raised when asked for.

Tk names a Toplevel's WM_CLASS after the widget (`!toplevel2`, `Toplevel`), which no
desktop can match to an application. Each window here is a Toplevel named `messengerd`
of class `Messengerd` (WM_CLASS "messengerd", "Messengerd", as the root window's), made
inside a frame of its own so that the names do not clash; the frame goes with it.
"""

from __future__ import annotations

import base64
import io
import itertools
import tkinter as tk

from messengerd.tray.icon import WINDOW_ICON_SIZES, draw_icon

WM_NAME = "messengerd"
"""The WM_CLASS instance (res_name) of every window: what `xdotool search --classname` finds."""

WM_CLASS = "Messengerd"
"""The WM_CLASS class (res_class): what desktops group windows by (StartupWMClass)."""

_holders = itertools.count(1)


def app_toplevel(root: tk.Misc, role: str) -> tk.Toplevel:
    """A new top-level window with the application's WM_CLASS; close it with destroy()."""
    holder = tk.Frame(root, name=f"{role}{next(_holders)}")
    window = tk.Toplevel(holder, name=WM_NAME, class_=WM_CLASS)
    # The holder (never shown) goes when its window does.
    window.bind("<Destroy>", lambda event: _drop_holder(event, window, holder), add="+")
    return window


def _drop_holder(event: tk.Event, window: tk.Toplevel, holder: tk.Frame) -> None:
    if event.widget is window:
        holder.after_idle(holder.destroy)


def set_window_icon(root: tk.Tk) -> None:
    """Give every window made from now on the tray's icon (_NET_WM_ICON, the taskbar's)."""
    photos = []
    for size in WINDOW_ICON_SIZES:
        png = io.BytesIO()
        draw_icon(0, size).save(png, format="PNG")
        photos.append(tk.PhotoImage(master=root, data=base64.b64encode(png.getvalue())))
    root.iconphoto(True, *photos)
    # Tk forgets an image whose Python object goes.
    root.window_icons = photos  # type: ignore[attr-defined]


def raise_window(window: tk.Toplevel) -> None:
    """Show `window` in front of everything, popups included, and give it the keyboard.

    Popups stay above other windows (-topmost: the window manager's "above" layer), so
    a window asked for from the menu joins that layer, or it would open behind them.
    """
    window.deiconify()
    window.attributes("-topmost", True)
    window.lift()
    window.focus_force()


Rectangle = tuple[int, int, int, int]
"""x, y, width, height on the screen."""


def menu_position(
    anchor: Rectangle, menu: tuple[int, int], cascade_width: int, screen: tuple[int, int]
) -> tuple[int, int]:
    """Where a menu opened from the tray icon at `anchor` goes: beside it, not over it.

    Above an icon in the lower half of the screen, below one in the upper half, so the
    pointer that clicked the icon rests on no item (a second click there would choose it).
    Its left edge is the icon's, moved left as far as it takes for a submenu
    `cascade_width` wide to open on its right: Tk pushes a submenu that would leave the
    screen back over its parent's items.
    """
    x, y, _width, height = anchor
    menu_width, menu_height = menu
    screen_width, screen_height = screen
    top = y - menu_height if y + height / 2 > screen_height / 2 else y + height
    left = min(x, screen_width - menu_width - cascade_width)
    return max(0, left), max(0, min(top, screen_height - menu_height))
