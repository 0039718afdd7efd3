"""What the tray may show of a message: controls made visible, lines cut, rows counted.

Pure functions over str, shared by the presenter and the windows; the sender's text is
never interpreted (no markup, no terminal codes), only made safe to look at.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from messengerd.core import visible
from messengerd.core.message import Message

POPUP_TEXT_COLUMNS = 60
"""Characters per line in a popup's text box; Windows' popup was about as wide."""

POPUP_MAX_ROWS = 12
"""Rows the popup's text box grows to before it scrolls, so it never runs off screen."""

MENU_LABEL_CHARS = 48
"""Characters of a message's first line in the Recent menu and the history list."""

ELLIPSIS = "…"


def visible_text(text: str) -> str:
    """`text` as the tray shows it: newline and tab kept, every other control made visible
    (messengerd.core.visible, shared with the terminal and the log), so a sender cannot
    ring, reorder, hide or spoof anything in the popup."""
    return visible.visible_text(text, visible.KEEP_LINES)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def first_line(text: str, limit: int = MENU_LABEL_CHARS) -> str:
    """The first line with something on it, made visible and cut to `limit` characters."""
    for line in text.split("\n"):
        if line.strip():
            return shorten(visible_text(line.strip()), limit)
    return ""


def popup_rows(
    text: str,
    width: float = POPUP_TEXT_COLUMNS,
    measure: Callable[[str], float] = len,
    most: int = POPUP_MAX_ROWS,
) -> int:
    """Rows `text` takes word-wrapped at `width`, at least 1, at most `most`.

    `measure` gives a piece of text's width in the unit of `width`: characters by
    default; the popup passes its font's pixel measure, as Tk wraps by pixels.
    """
    rows = 0
    for line in text.split("\n"):
        rows += 1
        used = 0.0
        for word in _WORDS.findall(line):
            ink = measure(word.rstrip())  # spaces at the end of a row may hang past it
            if used and used + ink > width:
                rows += 1
                used = 0.0
            if ink > width:
                # A word wider than the box is broken wherever it reaches the edge.
                rows += math.ceil(ink / width) - 1
                used = ink % width
            else:
                used += measure(word)
        if rows >= most:
            return most
    return max(1, rows)


_WORDS = re.compile(r"\S+\s*|\s+")


LOCALE_FORMAT = "%x %X"
"""The date and time in the desktop's format (LC_TIME), as Windows' popup wrote them."""

ISO_FORMAT = "%Y-%m-%d %H:%M:%S"
"""ISO 8601's date and time, as `run` and `history` print them (`tray --iso-dates`)."""


def when_text(message: Message, iso: bool = False) -> str:
    """The local date and time a message arrived, in the locale's format or ISO's.

    The locale's is what the process' LC_TIME category says: `messengerd tray` sets it
    from the environment (LC_ALL, LC_TIME, LANG) at start.
    """
    return message.received_at.astimezone().strftime(ISO_FORMAT if iso else LOCALE_FORMAT)
