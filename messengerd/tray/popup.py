"""The classic popup: "Messenger Service", who sent what to whom and when, and OK."""

from __future__ import annotations

import tkinter as tk
from collections.abc import Callable
from tkinter import font as tkfont
from tkinter import ttk
from typing import Any

from messengerd.tray.presenter import Popup
from messengerd.tray.text import POPUP_MAX_ROWS, POPUP_TEXT_COLUMNS, popup_rows
from messengerd.tray.windows import app_toplevel

PADDING = 12
"""Pixels between the window's edge and its contents, as a Windows dialog has."""


def dialog_background(root: tk.Misc) -> str:
    """The colour ttk frames are drawn in, so a text box can blend into its dialog."""
    return ttk.Style(root).lookup("TFrame", "background") or root.cget("background")


def select_all(text: tk.Text) -> str:
    """Ctrl+A in a read-only text box: select everything (Tk's default moves the cursor)."""
    text.tag_add("sel", "1.0", "end-1c")
    return "break"


def read_only_text(parent: tk.Misc, **options: Any) -> tk.Text:
    """A Text that shows, selects and copies but cannot be typed into."""
    text = tk.Text(parent, wrap="word", undo=False, **options)
    text.bind("<Control-a>", lambda _event: select_all(text))
    text.bind("<Control-A>", lambda _event: select_all(text))
    # A disabled Text takes no focus from a click, and without focus Ctrl+C copies nothing.
    text.bind("<Button-1>", lambda _event: text.focus_set(), add="+")
    return text


def show_text(text: tk.Text, content: str) -> None:
    """Replace what a read-only text box shows; `content` is inserted literally."""
    text.configure(state="normal")
    text.delete("1.0", "end")
    text.insert("1.0", content)
    text.configure(state="disabled")


class PopupWindow:
    """One popup window; `on_close(popup.id)` is called once, when it goes."""

    def __init__(self, root: tk.Tk, popup: Popup, on_close: Callable[[int], None]) -> None:
        self.popup = popup
        self._on_close = on_close
        self._closed = False
        window = self.window = app_toplevel(root, "popup")
        window.withdraw()
        window.title(popup.title)
        window.resizable(False, False)
        window.attributes("-topmost", True)
        window.protocol("WM_DELETE_WINDOW", self.close)

        frame = ttk.Frame(window, padding=PADDING)
        frame.pack(fill="both", expand=True)
        font = tkfont.nametofont("TkDefaultFont")
        # Tk wraps by pixels; count the rows the same way, so none is hidden unscrolled.
        box_width = POPUP_TEXT_COLUMNS * font.measure("0")
        rows = popup_rows(popup.text, box_width, font.measure)
        heading = ttk.Label(frame, text=popup.header, font=font, anchor="w", justify="left")
        heading.pack(fill="x", pady=(0, PADDING))

        body = ttk.Frame(frame)
        body.pack(fill="both", expand=True)
        self.text = read_only_text(
            body,
            width=POPUP_TEXT_COLUMNS,
            height=rows,
            font=font,
            relief="flat",
            borderwidth=0,
            highlightthickness=0,
            background=dialog_background(root),
            cursor="xterm",
        )
        show_text(self.text, popup.text)
        if rows >= POPUP_MAX_ROWS:
            scroll = ttk.Scrollbar(body, orient="vertical", command=self.text.yview)
            self.text.configure(yscrollcommand=scroll.set)
            scroll.pack(side="right", fill="y")
        self.text.pack(side="left", fill="both", expand=True)
        heading.configure(wraplength=self.text.winfo_reqwidth())

        ok = ttk.Button(frame, text="OK", width=10, command=self.close, default="active")
        ok.pack(pady=(PADDING, 0))
        for key in ("<Return>", "<KP_Enter>", "<Escape>"):
            window.bind(key, lambda _event: self.close())
        # Keys go to the text box, so Ctrl+A and Ctrl+C work as soon as the window has focus.
        self.text.focus_set()
        self._place(root)
        window.deiconify()

    def _place(self, root: tk.Tk) -> None:
        """Centre the first popup on screen; each stacked one cascades down and right."""
        self.window.update_idletasks()
        width, height = self.window.winfo_reqwidth(), self.window.winfo_reqheight()
        x = max(0, (root.winfo_screenwidth() - width) // 2 + self.popup.offset)
        y = max(0, (root.winfo_screenheight() - height) // 3 + self.popup.offset)
        self.window.geometry(f"+{x}+{y}")

    def lift(self) -> None:
        """Bring the window to the front (its message was asked for again)."""
        self.window.deiconify()
        self.window.lift()
        self.text.focus_set()

    def close(self) -> None:
        """OK: close the window and tell the presenter."""
        if self._closed:
            return
        self._closed = True
        self.window.destroy()
        self._on_close(self.popup.id)
