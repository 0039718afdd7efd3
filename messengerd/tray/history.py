"""The History window: every message, searchable, with its full text and a read flag."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from datetime import UTC, datetime
from tkinter import font as tkfont
from tkinter import ttk

from messengerd.core.message import Message
from messengerd.tray.popup import PADDING, read_only_text, show_text
from messengerd.tray.presenter import WINDOW_TITLE, Entry, Presenter
from messengerd.tray.text import first_line, visible_text
from messengerd.tray.windows import app_toplevel, raise_window

SEARCH_DELAY_MS = 250
"""Milliseconds after the last key in the search box before the list is searched again."""

SAMPLE_TIME = Message("", "", "", "session", "", datetime(2000, 12, 28, 22, 58, 58, tzinfo=UTC))
"""A message whose date and time are about as wide as any, to size the Time column."""

COLUMNS = (("time", "Time", 0), ("from", "From", 12), ("to", "To", 12), ("text", "Text", 36))
"""The list's columns: key, heading, width in characters (0: as wide as a time)."""


class HistoryWindow:
    """A list (time, from, to, first line), a search box, the full text, mark read/unread."""

    def __init__(
        self,
        root: tk.Tk,
        presenter: Presenter,
        apply: Callable[[list], None],
        on_close: Callable[[], None],
    ) -> None:
        self.presenter = presenter
        self._apply = apply
        self._on_close = on_close
        self._entries: dict[str, Entry] = {}
        self._search_job: str | None = None
        window = self.window = app_toplevel(root, "history")
        window.title(f"{WINDOW_TITLE}: History")
        window.protocol("WM_DELETE_WINDOW", self.close)

        frame = ttk.Frame(window, padding=PADDING)
        frame.pack(fill="both", expand=True)
        bar = ttk.Frame(frame)
        bar.pack(fill="x", pady=(0, PADDING // 2))
        ttk.Label(bar, text="Search:").pack(side="left")
        self.search = tk.StringVar()
        entry = ttk.Entry(bar, textvariable=self.search)
        entry.pack(side="left", fill="x", expand=True, padx=(PADDING // 2, 0))
        self.search.trace_add("write", lambda *_: self._search_soon())

        panes = ttk.PanedWindow(frame, orient="vertical")
        panes.pack(fill="both", expand=True)
        listing = ttk.Frame(panes)
        self.tree = ttk.Treeview(
            listing, columns=[key for key, _, _ in COLUMNS], show="headings", height=10
        )
        bold = tkfont.nametofont("TkDefaultFont").copy()
        bold.configure(weight="bold")
        # Measured in the bold (unread) font, so that no row's time is cut.
        time_width = bold.measure(presenter.when(SAMPLE_TIME)) + PADDING
        for key, heading, chars in COLUMNS:
            width = bold.measure("M" * chars) * 3 // 4 if chars else time_width
            self.tree.heading(key, text=heading, anchor="w")
            self.tree.column(key, width=width, minwidth=width // 2, stretch=key == "text")
        self.tree.tag_configure("unread", font=bold)
        scroll = ttk.Scrollbar(listing, orient="vertical", command=self.tree.yview)
        self.tree.configure(yscrollcommand=scroll.set)
        scroll.pack(side="right", fill="y")
        self.tree.pack(side="left", fill="both", expand=True)
        self.tree.bind("<<TreeviewSelect>>", lambda _event: self._show_selected())
        self.tree.bind("<Double-1>", lambda _event: self._open_selected())
        panes.add(listing, weight=3)

        reading = ttk.Frame(panes)
        self.text = read_only_text(reading, height=6, font="TkDefaultFont")
        text_scroll = ttk.Scrollbar(reading, orient="vertical", command=self.text.yview)
        self.text.configure(yscrollcommand=text_scroll.set)
        text_scroll.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        panes.add(reading, weight=2)

        buttons = ttk.Frame(frame)
        buttons.pack(fill="x", pady=(PADDING // 2, 0))
        ttk.Button(buttons, text="Close", command=self.close).pack(side="right")
        ttk.Button(buttons, text="Mark unread", command=lambda: self._mark(False)).pack(
            side="right", padx=(0, PADDING // 2)
        )
        ttk.Button(buttons, text="Mark read", command=lambda: self._mark(True)).pack(
            side="right", padx=(0, PADDING // 2)
        )
        ttk.Button(buttons, text="Open", command=self._open_selected).pack(side="left")
        window.bind("<Escape>", lambda _event: self.close())
        entry.focus_set()
        self.refresh()
        raise_window(window)

    def refresh(self) -> None:
        """List the messages matching the search box again, keeping the selection."""
        selected = set(self.tree.selection())
        self.tree.delete(*self.tree.get_children())
        self._entries.clear()
        for entry in self.presenter.history(self.search.get()):
            iid = str(entry.key)
            self._entries[iid] = entry
            message = entry.message
            self.tree.insert(
                "",
                "end",
                iid=iid,
                values=(
                    self.presenter.when(message),
                    visible_text(message.sender),
                    visible_text(message.recipient),
                    first_line(message.text),
                ),
                tags=() if entry.read else ("unread",),
            )
        keep = [iid for iid in selected if iid in self._entries]
        if keep:
            self.tree.selection_set(keep)
        self._show_selected()

    def _search_soon(self) -> None:
        if self._search_job is not None:
            self.window.after_cancel(self._search_job)
        self._search_job = self.window.after(SEARCH_DELAY_MS, self._search_now)

    def _search_now(self) -> None:
        self._search_job = None
        self.refresh()

    def _selected(self) -> list[Entry]:
        return [self._entries[iid] for iid in self.tree.selection() if iid in self._entries]

    def _show_selected(self) -> None:
        chosen = self._selected()
        show_text(self.text, visible_text(chosen[0].message.text) if chosen else "")

    def _mark(self, read: bool) -> None:
        chosen = self._selected()
        if chosen:
            self._apply(self.presenter.mark_read([entry.key for entry in chosen], read))
            self.refresh()

    def _open_selected(self) -> None:
        for entry in self._selected():
            self._apply(self.presenter.open(entry.key))

    def lift(self) -> None:
        """Bring the window to the front (History… chosen again)."""
        raise_window(self.window)

    def close(self) -> None:
        """Close the window."""
        self.window.destroy()
        self._on_close()
