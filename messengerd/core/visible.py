"""Text a sender controls, made safe to show on a terminal, in a log or in a window.

A From name, a To name or a message's text can hold anything its sender put there: ESC
sequences that clear a screen or retitle a terminal, CR that hides a line, bidi overrides
that reorder one, zero-width characters that make two names look alike. Wherever such text
is shown it goes through visible_text() first; what is stored, and what JSON carries,
stays exact.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

KEEP_LINES = "\n\t"
"""What a multi-line view (the popup, the history window) keeps as it is."""

# fmt: off
C0_NAMES = (
    "NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL",
    "BS", "HT", "LF", "VT", "FF", "CR", "SO", "SI",
    "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB",
    "CAN", "EM", "SUB", "ESC", "FS", "GS", "RS", "US",
)
# fmt: on
"""The C0 control characters' abbreviations (ISO 646, ECMA-48 §8.2), by code."""

_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
"""Controls, format characters (bidi overrides and isolates, zero-width), surrogates, line
and paragraph separators."""


def visible_text(text: str, keep: str = "") -> str:
    """`text` with every control made visible; the characters in `keep` stay as they are.

    C0 controls and DEL show as their abbreviations, `<ESC>`, `<BEL>`, `<DEL>` (Unicode's
    control pictures would be tidier, but few fonts have them, and a missing glyph is an
    empty box); C1 controls, bidi overrides and isolates, zero-width and separator
    characters as `<U+202E>`. One line by default, for a log or a terminal line; a window
    showing the whole text keeps KEEP_LINES.
    """
    if text.isprintable():
        # str.isprintable() is False for every category made visible here: nothing to do.
        return text
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in keep:
            out.append(char)
        elif code < 0x20:
            out.append(f"<{C0_NAMES[code]}>")
        elif code == 0x7F:
            out.append("<DEL>")
        elif unicodedata.category(char) in _INVISIBLE:
            out.append(f"<U+{code:04X}>")
        else:
            out.append(char)
    return "".join(out)


def json_line(document: Any) -> str:
    """`document` as one line of JSON that is safe to print on a terminal.

    JSON escapes C0 controls itself; what json.dumps(ensure_ascii=False) leaves raw that a
    terminal acts on or hides (C1 controls, bidi overrides, zero-width characters) becomes
    `\\uXXXX` escapes too, so the data read back is exactly the same.
    """
    text = json.dumps(document, ensure_ascii=False)
    if text.isprintable():
        return text
    return "".join(
        _json_escape(char) if char >= "\x7f" and unicodedata.category(char) in _INVISIBLE else char
        for char in text
    )


def _json_escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    # Beyond the BMP JSON escapes a character as its UTF-16 surrogate pair (RFC 8259 §7).
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
