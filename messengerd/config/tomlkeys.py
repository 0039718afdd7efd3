"""Where each key of a TOML document was written: tomllib reports no positions, so the
settings reader finds a problem's line by scanning the text for its key.

key_lines() is a small scanner that follows table headers, dotted and quoted keys, inline
tables and arrays, and skips strings and comments; it never parses a value. A key is a
path of names, with an index after each array of tables (`[[sink]]`) or array item.
"""

from __future__ import annotations

import re
import tomllib

Key = tuple[str | int, ...]
"""A key's full path: ("sink", 0, "command") is the first `[[sink]]`'s `command`."""

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_text(key: Key) -> str:
    """("sink", 0, "command") -> "sink[1].command"; ("routing", "aliases", "A B") quoted."""
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            bare = _BARE_KEY.fullmatch(part) is not None
            part_text = part if bare else '"' + part.replace('"', '\\"') + '"'
            text += f".{part_text}" if text else part_text
    return text


def line_of(lines: dict[Key, int], key: Key) -> int:
    """The line `key` was written on; else its nearest enclosing table's; else 1."""
    for end in range(len(key), 0, -1):
        if key[:end] in lines:
            return lines[key[:end]]
    return 1


def key_lines(text: str) -> dict[Key, int]:
    """The line (from 1) of every key and table header in valid TOML `text`.

    Array-of-tables entries get their index: `[[sink]]` twice gives ("sink", 0) and
    ("sink", 1); keys in an inline table or an array of inline tables get their full path.
    """
    return _KeyScanner(text).scan()


class _KeyScanner:
    """Walks TOML text once, noting where each key starts; values are skipped, not parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Key, int] = {}
        self.arrays: dict[Key, int] = {}

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def peek(self, size: int = 1) -> str:
        return self.text[self.pos : self.pos + size]

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces, comments and, with `newlines`, line breaks."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def scan(self) -> dict[Key, int]:
        table: Key = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.peek() != "[":
                self.key_value(table)
                continue
            closing = "]]" if self.peek(2) == "[[" else "]"
            self.pos += len(closing)
            keys = self.dotted_key()
            end = self.text.find(closing, self.pos)
            if not keys or end < 0:
                return self.lines  # not valid TOML (tomllib says where): stop, not raise
            table = self.resolve(keys)
            self.lines.setdefault(table, line)
            if closing == "]]":
                index = self.arrays.get(table, 0)
                self.arrays[table] = index + 1
                table = (*table, index)
                self.lines.setdefault(table, line)
            self.pos = end + len(closing)

    def resolve(self, keys: Key) -> Key:
        """A header's path, with the current index after each array of tables in it."""
        path: Key = ()
        for key in keys[:-1]:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return (*path, keys[-1])

    def dotted_key(self) -> Key:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char in "\"'":
                parts.append(self.string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    return tuple(parts)
                parts.append(match[0])
                self.pos = match.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def key_value(self, table: Key) -> None:
        line = self.line()
        keys = self.dotted_key()
        if not keys:
            # Not valid TOML (tomllib would have said); stop scanning rather than loop.
            self.pos = len(self.text)
            return
        path = (*table, *keys)
        for end in range(len(table) + 1, len(path) + 1):
            self.lines.setdefault(path[:end], line)
        self.skip_blank(newlines=False)
        self.pos += 1  # "="
        self.skip_blank(newlines=False)
        self.value(path)

    def value(self, path: Key) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            match = re.compile(r"[^,\]}\s#]+").match(self.text, self.pos)
            if match:
                self.pos = match.end()
                # Dates may hold one space: `1979-05-27 07:32:00`.
                if re.match(r" \d\d:", self.text[self.pos : self.pos + 4]):
                    self.pos += 1
                    self.value(path)

    def array(self, path: Key) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("]", ""):
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            self.lines.setdefault((*path, index), self.line())
            before = self.pos
            self.value((*path, index))
            if self.pos == before:
                self.pos = len(self.text)  # not valid TOML: stop rather than loop
                return
            index += 1

    def inline_table(self, path: Key) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("}", ""):
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            before = self.pos
            self.key_value(path)
            if self.pos == before:
                self.pos = len(self.text)  # not valid TOML: stop rather than loop
                return

    def string(self) -> str:
        """Skip a string of any of TOML's four kinds; return its text (escapes as written)."""
        quote = self.peek()
        if not quote:
            return ""  # the end of the text (invalid TOML): "" is `in` every string
        if self.peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.pos + 3)
            while quote == '"' and end > 0 and _escaped(self.text, end):
                end = self.text.find(quote * 3, end + 1)
            end = len(self.text) if end < 0 else end
            # Up to two quotes may close the string's content right before the delimiter.
            while self.text[end + 3 : end + 4] == quote:
                end += 1
            body = self.text[self.pos + 3 : end]
            self.pos = end + 3
            return body
        start = self.pos
        end = start + 1
        while end < len(self.text) and self.text[end] != quote:
            end += 2 if quote == '"' and self.text[end] == "\\" else 1
        self.pos = end + 1
        if quote == "'":
            return self.text[start + 1 : end]
        # A basic string's escapes (`"caf\u00e9"`) are decoded by tomllib itself.
        try:
            return tomllib.loads("k = " + self.text[start : end + 1])["k"]
        except tomllib.TOMLDecodeError:
            return self.text[start + 1 : end]  # not valid TOML: the text as written


def _escaped(text: str, index: int) -> bool:
    """True when the character at `index` follows an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1
