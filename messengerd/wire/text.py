"""Message text: OEM code pages and the Messenger line break 0x14 (PROTOCOL.md §8)."""

from __future__ import annotations

import codecs
import re

DEFAULT_CODEPAGE = "cp850"
"""The Western European OEM code page most senders used."""
MESSENGER_LINE_BREAK = b"\x14"
"""Windows turns CR, LF, CRLF and LFCR into this single byte before sending."""

_LINE_BREAKS = re.compile(rb"\r\n|\n\r|\x14|\r")


def check_codepage(name: str) -> str:
    """The canonical codec name for `name`; ValueError when Python has no such code page."""
    try:
        info = codecs.lookup(name)
    except LookupError:
        raise ValueError(f"unknown code page {name!r} (try cp850, cp437 or cp866)") from None
    return info.name


def normalize_line_breaks(raw: bytes) -> bytes:
    """Map 0x14, CRLF, LFCR and lone CR to LF, on the bytes, before decoding."""
    return _LINE_BREAKS.sub(b"\n", raw)


def decode_text(raw: bytes, codepage: str = DEFAULT_CODEPAGE) -> str:
    """Message bytes as text: line breaks to LF, trailing NULs dropped, OEM decoded."""
    return normalize_line_breaks(raw.rstrip(b"\x00")).decode(codepage, errors="replace")


def encode_text(
    text: str, codepage: str = DEFAULT_CODEPAGE, line_break: bytes = MESSENGER_LINE_BREAK
) -> bytes:
    """Text as a sender puts it on the wire: OEM encoded, each line break as `line_break`.

    Raises UnicodeEncodeError for characters the code page lacks.
    """
    lines = text.replace("\r\n", "\n").replace("\n\r", "\n").replace("\r", "\n").split("\n")
    return line_break.join(line.encode(codepage) for line in lines)
