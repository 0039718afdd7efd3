"""The tray app: tkinter on the main thread, pystray's icon beside it, the presenter between.

Threads: tkinter owns the main thread (macOS requires it; Tk windows belong to the thread
that made them). pystray's loop runs in its own thread (win32, xorg, gtk, appindicator),
or on macOS through run_detached() on the main thread's Cocoa loop, which Tk drives. The
daemon (standalone) or the control-channel reader (attached) runs in a third. Every one
of them hands work to the GUI thread through one bounded queue that Tk polls; only the
GUI thread touches the presenter and the windows.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import sys
import threading
import tkinter as tk
from collections.abc import Callable
from typing import Any

from messengerd.commands.exits import UsageError
from messengerd.core.message import Message
from messengerd.tray.aliases import AliasesWindow
from messengerd.tray.history import HistoryWindow
from messengerd.tray.icon import draw_icon
from messengerd.tray.notify import DesktopNotifications, Notifier, PystrayNotifications
from messengerd.tray.popup import PopupWindow
from messengerd.tray.presenter import (
    BackendTraits,
    Effect,
    MenuEntry,
    Notify,
    Presenter,
    RaisePopup,
    ShowPopup,
    UnreadChanged,
)
from messengerd.tray.windows import WM_CLASS, menu_position, set_window_icon

log = logging.getLogger(__name__)

ICON_NAME = "messengerd"

GUI_POLL_MS = 50
"""Milliseconds between looks at the queue: a popup shows within a blink, and Python's
signal handlers (Ctrl-C, SIGTERM) get to run while Tk waits."""

GUI_BATCH = 64
"""Queued calls run per look, so a burst of messages cannot freeze the windows."""

MAX_GUI_BACKLOG = 4096
"""Calls waiting for the GUI thread; past that a message is only in the inbox (logged)."""


def open_display() -> tk.Tk:
    """The hidden Tk root every window hangs from; UsageError when there is no display."""
    try:
        root = tk.Tk(className=WM_CLASS)
    except tk.TclError as exc:
        raise UsageError(
            f"cannot open a window ({exc}): `messengerd tray` needs a desktop session; "
            "on a machine without one use `messengerd run`"
        ) from None
    root.withdraw()
    set_window_icon(root)
    # A failing window callback is logged like everything else, not printed raw by Tk.
    root.report_callback_exception = lambda *exc_info: log.error(
        "tray: a window callback failed", exc_info=exc_info
    )
    return root


def load_pystray() -> Any:
    """pystray, its backend chosen the usual way (PYSTRAY_BACKEND, else by platform)."""
    try:
        import pystray
    except Exception as exc:
        # pystray's xorg backend raises Xlib's own errors, not ImportError, without X.
        raise UsageError(
            f"no system tray backend ({exc}): set PYSTRAY_BACKEND to one of "
            "appindicator, gtk, xorg (Linux), win32, darwin"
        ) from None
    return pystray


def backend_name(pystray: Any) -> str:
    """`xorg`, `gtk`, `appindicator`, `win32`, `darwin` or `dummy`: which pystray picked."""
    name = pystray.Icon.__module__.rsplit("._", 1)[-1]
    # The dummy backend hands out the abstract base Icon itself.
    return "dummy" if name == "base" else name


class _IconUpdater:
    """Applies icon changes on a thread of its own, the newest change winning.

    pystray's xorg backend makes the calling thread wait until its own loop has run a
    change; the Tk thread must never wait on that, or one stalled X round trip would stop
    every popup.
    """

    def __init__(self) -> None:
        self._latest: Callable[[], None] | None = None
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="messengerd-tray-icon-updates", daemon=True
        )
        self._thread.start()

    def submit(self, change: Callable[[], None]) -> None:
        """Apply `change` soon, replacing any change not yet applied."""
        self._latest = change
        self._wake.set()

    def stop(self) -> None:
        """Apply nothing more."""
        self._stopping = True
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stopping:
                return
            change, self._latest = self._latest, None
            if change is None:
                continue
            try:
                change()
            except Exception:
                log.exception("tray: the icon could not be updated")


class TraySink:
    """The delivery sink (DESIGN.md, delivery): every stored message goes to the tray."""

    name = "tray"

    def __init__(self, app: TrayApp) -> None:
        self.app = app

    async def deliver(self, message: Message) -> None:
        self.app.post(lambda: self.app.receive(message))


class TrayApp:
    """The icon, its menu, the popups and windows, all over one Presenter."""

    def __init__(
        self,
        root: tk.Tk,
        presenter: Presenter,
        pystray: Any | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.root = root
        self.presenter = presenter
        self.pystray = pystray
        self.notifier = notifier
        self.icon: Any = None
        self._redocker: Any = None
        self.popups: dict[int, PopupWindow] = {}
        self.history: HistoryWindow | None = None
        self.aliases: AliasesWindow | None = None
        self.on_quit: list[Callable[[], None]] = []
        self._calls: queue.Queue[Callable[[], None]] = queue.Queue(MAX_GUI_BACKLOG)
        self._menu: list[MenuEntry] = presenter.menu()
        self._shown_menu: tk.Menu | None = None
        self._quitting = False
        self._icon_updates = _IconUpdater()

    @staticmethod
    def notifications(pystray: Any) -> Notifier | None:
        """The desktop's notifications, else the pystray backend's own, else None."""
        notifier = DesktopNotifications.start()
        if notifier is not None:
            return notifier
        name = "none" if pystray is None else backend_name(pystray)
        if name not in ("none", "dummy") and pystray.Icon.HAS_NOTIFICATION:
            return PystrayNotifications(markup=name in ("gtk", "appindicator"))
        return None

    @staticmethod
    def traits(pystray: Any, notifier: Notifier | None = None) -> BackendTraits:
        """What the chosen pystray backend and notification service can do."""
        name = "none" if pystray is None else backend_name(pystray)
        has_menu = name not in ("none", "dummy") and pystray.Icon.HAS_MENU
        return BackendTraits.of(
            name,
            has_notification=notifier is not None,
            has_menu=has_menu,
            notification_markup=notifier is not None and notifier.markup,
        )

    # -- from any thread -----------------------------------------------------------------

    def post(self, call: Callable[[], None]) -> None:
        """Run `call` on the GUI thread soon; safe from any thread."""
        try:
            self._calls.put_nowait(call)
        except queue.Full:
            log.error("tray: %d calls wait for the GUI; one dropped", MAX_GUI_BACKLOG)

    def background(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run `work()` in a new thread, then `then(result)` on the GUI thread."""

        def run() -> None:
            try:
                result = work()
            except Exception:
                log.exception("tray: background work failed")
                return
            self.post(lambda: then(result))

        threading.Thread(target=run, name="messengerd-tray-work", daemon=True).start()

    def request_quit(self) -> None:
        """Quit from any thread or a signal handler."""
        self.post(self.quit)

    # -- on the GUI thread ---------------------------------------------------------------

    def run(self) -> None:
        """Show the icon and run until Quit, on the main thread.

        Call `apply(presenter.load())` first, before messages can arrive.
        """
        if self.pystray is not None:
            self._start_icon()
        self.root.after(GUI_POLL_MS, self._tick)
        try:
            self.root.mainloop()
        finally:
            self._shutdown()

    def receive(self, message: Message) -> None:
        """A new message from the daemon."""
        log.debug("tray: message from %s to %s", message.sender, message.recipient)
        self.apply(self.presenter.receive(message))

    def apply(self, effects: list[Effect]) -> None:
        """Carry out what the presenter decided."""
        for effect in effects:
            if isinstance(effect, ShowPopup):
                window = PopupWindow(self.root, effect.popup, self._popup_closed)
                self.popups[effect.popup.id] = window
                log.info(
                    "tray: popup %d: %s",
                    effect.popup.id,
                    effect.popup.header,
                )
            elif isinstance(effect, RaisePopup):
                if effect.popup_id in self.popups:
                    self.popups[effect.popup_id].lift()
            elif isinstance(effect, Notify):
                self._notify(effect)
            elif isinstance(effect, UnreadChanged):
                self._refresh()

    def do(self, action: tuple[object, ...]) -> None:
        """What a menu item (tray menu or Tk menu) asks for."""
        match action:
            case ("open", int(key)):
                self.apply(self.presenter.open(key))
            case ("history",):
                self.show_history()
            case ("aliases",):
                self.show_aliases()
            case ("dnd",):
                self.apply(self.presenter.set_dnd(not self.presenter.dnd))
                self._refresh()
            case ("popups",):
                self.apply(self.presenter.set_popups(not self.presenter.popups))
                self._refresh()
            case ("quit",):
                self.quit()

    def show_history(self) -> None:
        """Open the History window, or raise it."""
        if self.history is None:
            self.history = HistoryWindow(
                self.root, self.presenter, self.apply, self._history_closed
            )
        else:
            self.history.lift()

    def show_aliases(self) -> None:
        """Open the Aliases window, or raise it."""
        if self.aliases is None:
            self.aliases = AliasesWindow(
                self.root, self.presenter, self.background, self._aliases_closed
            )
        else:
            self.aliases.lift()

    def show_menu(self) -> None:
        """The tray menu as a Tk menu beside the icon, for backends without menus (xorg)."""
        if self._shown_menu is not None:
            self._shown_menu.destroy()
        menu = self._shown_menu = self._tk_menu(self.root, self._menu)
        anchor = getattr(self.icon, "clicked_at", None)
        if anchor is None:
            x, y = self.root.winfo_pointerxy()
            anchor = (x, y, 1, 1)
        menu.update_idletasks()
        last = menu.index("end")
        cascades = [menu.nametowidget(menu.entrycget(index, "menu"))
                    for index in range(0 if last is None else last + 1)
                    if menu.type(index) == "cascade"]  # fmt: skip
        for cascade in cascades:
            cascade.update_idletasks()
        x, y = menu_position(
            anchor,
            (menu.winfo_reqwidth(), menu.winfo_reqheight()),
            max((cascade.winfo_reqwidth() for cascade in cascades), default=0),
            (self.root.winfo_screenwidth(), self.root.winfo_screenheight()),
        )
        try:
            menu.tk_popup(x, y)
        finally:
            # On Windows tk_popup returns once the menu is gone and may leave its grab; on
            # X11 it returns at once, and the grab is what closes the menu on a click beside.
            if self.root.tk.call("tk", "windowingsystem") != "x11":
                menu.grab_release()

    def quit(self) -> None:
        """Leave the main loop; run() then stops the icon and the daemon."""
        if not self._quitting:
            self._quitting = True
            self.root.quit()

    def _tick(self) -> None:
        for _ in range(GUI_BATCH):
            try:
                call = self._calls.get_nowait()
            except queue.Empty:
                break
            try:
                call()
            except Exception:
                log.exception("tray: a GUI call failed")
        if not self._quitting:
            self.root.after(GUI_POLL_MS, self._tick)

    def _popup_closed(self, popup_id: int) -> None:
        self.popups.pop(popup_id, None)
        self.apply(self.presenter.popup_closed(popup_id))

    def _history_closed(self) -> None:
        self.history = None

    def _aliases_closed(self) -> None:
        self.aliases = None

    def _refresh(self) -> None:
        """Badge, tooltip and menu after any change."""
        self._menu = self.presenter.menu()
        if self.history is not None:
            self.history.refresh()
        if self.icon is None:
            return
        unread = self.presenter.unread
        icon, image, title = self.icon, draw_icon(unread), self.presenter.tooltip()
        has_menu = self.presenter.traits.has_menu

        def update() -> None:
            if hasattr(icon, "draw"):  # the xorg icon draws itself for its window's size
                icon.draw = lambda size: draw_icon(unread, size)
            icon.icon = image
            icon.title = title
            if has_menu:
                icon.update_menu()

        self._icon_updates.submit(update)

    def _notify(self, effect: Notify) -> None:
        if self.notifier is None:
            return
        key = effect.key
        self.notifier.notify(
            effect.title,
            effect.body,
            on_clicked=lambda: self.post(lambda: self.apply(self.presenter.open(key))),
            on_failed=lambda: self.post(
                lambda: self.apply(self.presenter.notification_failed(key))
            ),
        )

    # -- the pystray icon ----------------------------------------------------------------

    def _start_icon(self) -> None:
        pystray: Any = self.pystray
        if self.presenter.traits.name == "dummy":
            log.info("tray: no icon (PYSTRAY_BACKEND=dummy); messages still pop up")
            return
        options: dict[str, Any] = {}
        icon_class = pystray.Icon
        if self.presenter.traits.name == "xorg":
            from messengerd.tray.xorg import OneLineDockError, xorg_icon_class

            logging.getLogger("pystray._base").addFilter(OneLineDockError())
            icon_class = xorg_icon_class(pystray.Icon)
            unread = self.presenter.unread
            options["draw"] = lambda size: draw_icon(unread, size)
        self.icon = icon_class(
            ICON_NAME,
            icon=draw_icon(self.presenter.unread),
            title=self.presenter.tooltip(),
            menu=self._pystray_menu(),
            **options,
        )
        if isinstance(self.notifier, PystrayNotifications):
            self.notifier.icon = self.icon
        if self.presenter.traits.name == "xorg":
            from messengerd.tray.xorg import Redocker

            self._redocker = Redocker(self.icon)

        def setup(icon: Any) -> None:
            icon.visible = True

        if sys.platform == "darwin":
            # Cocoa wants its loop on the main thread, and Tk's mainloop already runs it.
            self.icon.run_detached(setup)
        else:
            threading.Thread(
                target=self.icon.run, args=(setup,), name="messengerd-tray-icon", daemon=True
            ).start()
        log.info("tray: icon shown with pystray's %s backend", self.presenter.traits.name)

    def _pystray_menu(self) -> Any:
        pystray: Any = self.pystray
        if not self.presenter.traits.has_menu:
            # No menu here (xorg): a click is the default action, which opens a Tk menu.
            return pystray.Menu(
                pystray.MenuItem(
                    "Menu", lambda: self.post(self.show_menu), default=True, visible=False
                )
            )

        def items(entries: list[MenuEntry] | tuple[MenuEntry, ...]):
            for entry in entries:
                if entry.separator:
                    yield pystray.Menu.SEPARATOR
                elif entry.submenu:
                    yield pystray.MenuItem(entry.label, pystray.Menu(*items(entry.submenu)))
                else:
                    checked = entry.checked
                    yield pystray.MenuItem(
                        entry.label,
                        self._menu_action(entry.action),
                        checked=None if checked is None else (lambda _item, c=checked: c),
                        enabled=entry.enabled,
                        default=entry.action == ("history",),
                    )

        # Called by pystray's thread: it reads the snapshot the GUI thread last made.
        return pystray.Menu(lambda: tuple(items(self._menu)))

    def _menu_action(self, action: tuple[object, ...]) -> Callable[[], None]:
        return lambda: self.post(lambda: self.do(action))

    def _tk_menu(
        self, parent: tk.Misc, entries: list[MenuEntry] | tuple[MenuEntry, ...]
    ) -> tk.Menu:
        menu = tk.Menu(parent, tearoff=False)
        # Tk unsets a variable's Tcl side when the Python object goes: keep them with the menu.
        menu.variables = []  # type: ignore[attr-defined]
        for entry in entries:
            if entry.separator:
                menu.add_separator()
            elif entry.submenu:
                menu.add_cascade(label=entry.label, menu=self._tk_menu(menu, entry.submenu))
            elif entry.checked is not None:
                variable = tk.BooleanVar(menu, value=entry.checked)
                menu.variables.append(variable)  # type: ignore[attr-defined]
                menu.add_checkbutton(
                    label=entry.label,
                    variable=variable,
                    command=functools.partial(self.do, entry.action),
                )
            else:
                menu.add_command(
                    label=entry.label,
                    command=functools.partial(self.do, entry.action),
                    state="normal" if entry.enabled else "disabled",
                )
        return menu

    def _shutdown(self) -> None:
        self._icon_updates.stop()
        if self.notifier is not None:
            self.notifier.stop()
        if self._redocker is not None:
            self._redocker.stop()
        if self.icon is not None:
            try:
                self.icon.stop()
            except Exception:
                log.exception("tray: the icon did not stop cleanly")
        for call in self.on_quit:
            call()
        with contextlib.suppress(tk.TclError):
            self.root.destroy()
