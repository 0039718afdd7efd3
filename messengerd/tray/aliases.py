"""The Aliases window: the names messages are received under; add, remove, errors in words."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import ttk
from typing import Any

from messengerd.tray.popup import PADDING
from messengerd.tray.presenter import WINDOW_TITLE, Presenter
from messengerd.tray.text import visible_text
from messengerd.tray.windows import app_toplevel, raise_window

ERROR_COLOUR = "#b00000"
WRAP = 320
"""Pixels the error line wraps at, so a long lmerr sentence does not widen the window."""


Background = Callable[[Callable[[], Any], Callable[[Any], None]], None]
"""Runs work off the GUI thread and its continuation back on it (TrayApp.background)."""


class AliasesWindow:
    """NetMessageNameEnum as a list, NetMessageNameAdd / Del as two buttons.

    The daemon is asked off the GUI thread (adding a name registers it on the network
    first, about a second), one request at a time, the buttons off meanwhile.
    """

    def __init__(
        self,
        root: tk.Tk,
        presenter: Presenter,
        background: Background,
        on_close: Callable[[], None],
    ) -> None:
        self.presenter = presenter
        self._background = background
        self._on_close = on_close
        self._busy = False
        self._buttons: list[ttk.Button] = []
        self._listed: list[str] = []
        window = self.window = app_toplevel(root, "aliases")
        window.title(f"{WINDOW_TITLE}: Aliases")
        window.protocol("WM_DELETE_WINDOW", self.close)

        frame = ttk.Frame(window, padding=PADDING)
        frame.pack(fill="both", expand=True)
        ttk.Label(frame, text="Messages are received under these names:").pack(anchor="w")
        self.names = tk.Listbox(frame, height=8, exportselection=False)
        self.names.pack(fill="both", expand=True, pady=(PADDING // 2, PADDING // 2))

        add_row = ttk.Frame(frame)
        add_row.pack(fill="x")
        self.new_name = tk.StringVar()
        entry = ttk.Entry(add_row, textvariable=self.new_name)
        entry.pack(side="left", fill="x", expand=True)
        entry.bind("<Return>", lambda _event: self._add())
        add = ttk.Button(add_row, text="Add", command=self._add)
        add.pack(side="left", padx=(PADDING // 2, 0))

        self.status = ttk.Label(frame, foreground=ERROR_COLOUR, wraplength=WRAP, justify="left")
        self.status.pack(fill="x", pady=(PADDING // 2, 0))

        buttons = ttk.Frame(frame)
        buttons.pack(fill="x", pady=(PADDING // 2, 0))
        remove = ttk.Button(buttons, text="Remove", command=self._remove)
        remove.pack(side="left")
        ttk.Button(buttons, text="Close", command=self.close).pack(side="right")
        self._buttons = [add, remove]
        window.bind("<Escape>", lambda _event: self.close())
        entry.focus_set()
        self.refresh()
        raise_window(window)

    def refresh(self, error: str | None = None) -> None:
        """List the aliases again; show `error` (or the listing's own) under them."""
        self._ask(self.presenter.alias_names, lambda listing: self._show(listing, error))

    def _show(self, listing: tuple[list[str], str | None], error: str | None) -> None:
        self._listed, listing_error = listing
        self.names.delete(0, "end")
        for name in self._listed:
            self.names.insert("end", visible_text(name))
        self.status.configure(text=error or listing_error or "", foreground=ERROR_COLOUR)

    def _ask(self, work: Callable[[], Any], then: Callable[[Any], None]) -> None:
        """Run `work` off the GUI thread, then `then(result)` on it, one at a time."""
        if self._busy:
            return
        self._set_busy(True)

        def guarded() -> Any:
            try:
                return work()
            except Exception as exc:
                return exc

        def finished(result: Any) -> None:
            self._set_busy(False)
            if not self.window.winfo_exists():
                return
            if isinstance(result, Exception):
                self.status.configure(
                    text=f"The daemon could not be asked: {result}", foreground=ERROR_COLOUR
                )
            else:
                then(result)

        self._background(guarded, finished)

    def _set_busy(self, busy: bool) -> None:
        self._busy = busy
        if self.window.winfo_exists():
            for button in self._buttons:
                button.state(["disabled"] if busy else ["!disabled"])
            if busy:
                self.status.configure(text="Asking the daemon…", foreground="")

    def _add(self) -> None:
        name = self.new_name.get()
        self._ask(lambda: self.presenter.add_alias(name), self._added)

    def _added(self, error: str | None) -> None:
        if error is None:
            self.new_name.set("")
        self.refresh(error)

    def _remove(self) -> None:
        chosen = [self._listed[index] for index in self.names.curselection()]
        if not chosen:
            self.status.configure(
                text="Choose a name in the list to remove.", foreground=ERROR_COLOUR
            )
            return

        def remove_all() -> str | None:
            errors = [error for name in chosen if (error := self.presenter.remove_alias(name))]
            return "\n".join(errors) or None

        self._ask(remove_all, self.refresh)

    def lift(self) -> None:
        """Bring the window to the front (Aliases… chosen again)."""
        raise_window(self.window)

    def close(self) -> None:
        """Close the window."""
        self.window.destroy()
        self._on_close()
