"""pystray's xorg icon, mended: it stays docked, hears clicks, and has see-through corners.

pystray 0.19.5's xorg backend (the XEmbed system tray protocol: trayer, stalonetray, the
trays of xfce4-panel, LXDE, MATE, Openbox setups) has four faults a person meets:
- Every icon change sends the tray another SYSTEM_TRAY_REQUEST_DOCK for a window it has
  embedded already; trayer answers by re-embedding it, and after a few messages the icon
  is a 1x22-pixel sliver (issue 16). Here an embedded icon is only redrawn.
- Its window never asks X for button presses, so a click does nothing (pystray #151).
- It pastes the icon onto black, without its alpha, so rounded corners show black. Here
  the window's background is its parent's (ParentRelative), read back and the icon laid
  over it, so the tray's own colour shows through.
- It scales one large picture down to the tray's size, blurring the badge's digits. Here
  the icon is drawn for the window's size (`draw(size)`).
It also sends its one dock request when the icon is shown; a tray that starts later, or
that restarts, never learns of the icon. Redocker asks again whenever no tray holds it.

Everything here leans on pystray's private xorg internals, hence the pin on pystray in
pyproject.toml.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)

REDOCK_INTERVAL = 1.0
"""Seconds between checks that the icon sits in a system tray."""

SYSTEM_TRAY_REQUEST_DOCK = 0
"""The system tray protocol's dock opcode (freedesktop System Tray Protocol 0.3, "Docking")."""

NEUTRAL_BACKGROUND = (192, 192, 192)
"""The colour under the icon when the tray's own cannot be read back (a deeper visual)."""

Anchor = tuple[int, int, int, int]
"""A rectangle on the screen: x, y, width, height."""


class OneLineDockError(logging.Filter):
    """pystray's xorg backend logs a traceback each time it finds no tray to dock into."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() == "Failed to dock icon":
            record.msg = (
                "no system tray to dock the icon into (start one, e.g. trayer); "
                "messages still pop up"
            )
            record.args = ()
            record.exc_info = None
        return True


def xorg_icon_class(base: type) -> type:
    """pystray's xorg Icon class `base` (pystray.Icon under the xorg backend), mended."""
    import Xlib.error
    import Xlib.X

    class XorgIcon(base):
        """The icon window; `draw(size)` paints it, `clicked_at` is where it was last clicked."""

        def __init__(self, *args: Any, draw: Callable[[int], Image.Image], **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.draw = draw
            self.clicked_at: Anchor | None = None
            self._icon_data: Image.Image | None = None
            self._size = (0, 0)
            self._drawn_for: tuple[int, int, int] | None = None
            self._window.change_attributes(
                event_mask=Xlib.X.ExposureMask
                | Xlib.X.StructureNotifyMask
                | Xlib.X.ButtonPressMask,
                background_pixmap=Xlib.X.ParentRelative,
            )
            self._display.flush()

        def embedded(self) -> bool:
            """A tray holds the window (it is no longer a child of the root window)."""
            return self._parent() != self._display.screen().root.id

        def _parent(self) -> int:
            return self._window.query_tree().parent.id

        def _update_icon(self) -> None:
            # Runs on pystray's loop thread (its dispatcher sends it there).
            if self.embedded():
                self._icon_data = None
                self._draw()
                self._icon_valid = True
            else:
                super()._update_icon()

        def _on_destroy_notify(self, event: Any) -> None:
            # pystray's own reads _systray_manager.id, None once the tray has gone.
            if self._systray_manager is not None:
                super()._on_destroy_notify(event)

        def _on_button_press(self, event: Any) -> None:
            self.clicked_at = (
                event.root_x - event.event_x,
                event.root_y - event.event_y,
                *self._size,
            )
            super()._on_button_press(event)

        def _draw(self) -> None:
            try:
                geometry = self._window.get_geometry()
                self._size = (geometry.width, geometry.height)
                # Drawn again for a new size, and for a new tray (its background may differ).
                drawn_for = (*self._size, self._parent())
                if self._icon_data is None or self._drawn_for != drawn_for:
                    self._drawn_for = drawn_for
                    self._icon_data = self._compose(geometry)
                self._window.put_pil_image(self._gc, 0, 0, self._icon_data)
            except (Xlib.error.BadDrawable, Xlib.error.BadWindow, Xlib.error.BadMatch):
                pass  # the window went (hidden, stopped) or is not viewable yet

        def _compose(self, geometry: Any) -> Image.Image:
            """The icon drawn for the window's size over what the tray shows behind it."""
            width, height = geometry.width, geometry.height
            background = Image.new("RGB", (width, height), NEUTRAL_BACKGROUND)
            if geometry.depth == 24 and self.embedded():
                # The background is ParentRelative: clearing paints the tray's own pixels.
                self._window.clear_area(0, 0, width, height)
                raw = self._window.get_image(0, 0, width, height, Xlib.X.ZPixmap, 0xFFFFFFFF)
                background = Image.frombytes("RGB", (width, height), raw.data, "raw", "BGRX")
            side = max(1, min(width, height))
            icon = self.draw(side)
            background.paste(icon, ((width - side) // 2, (height - side) // 2), icon)
            return background

    return XorgIcon


class Redocker:
    """Asks the system tray to take the icon whenever no tray holds it.

    Checks every REDOCK_INTERVAL, on an X connection of its own, whether the icon's window
    sits in a tray (it is then no longer a child of the root window). If not, and a tray
    owns the selection (one started after the icon, or restarted), it has the icon's own
    loop send the dock request (pystray's _show), so the icon knows its tray again.
    """

    def __init__(self, icon: Any) -> None:
        self.icon = icon
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="messengerd-tray-dock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Check no more."""
        self._stopping.set()

    def _run(self) -> None:
        import Xlib.display
        import Xlib.error

        try:
            display = Xlib.display.Display()
        except Exception as exc:  # Xlib raises its own errors, not OSError
            log.warning("tray: cannot watch the icon's docking: %s", exc)
            return
        try:
            selection = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
            window = display.create_resource_object("window", self.icon._window.id)
            root = display.screen().root.id
            while not self._stopping.wait(REDOCK_INTERVAL):
                if window.query_tree().parent.id != root:
                    continue  # embedded in a tray (and kept watching: a tray can restart)
                if isinstance(display.get_selection_owner(selection), int):
                    continue  # no tray yet (X.NONE comes as a plain 0)
                self.icon._show()
                log.info("tray: asked the system tray again to show the icon")
        except Xlib.error.XError as exc:
            log.debug("tray: stopped watching the icon's docking: %s", exc)
        except Exception:
            if not self._stopping.is_set():
                log.exception("tray: stopped watching the icon's docking")
        finally:
            display.close()
