"""The console sink: one line per message, or one JSON object per line."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from messengerd.core.message import Message


class ConsoleSink:
    """Prints `[time] FROM -> TO (path, peer): text`, or JSON with `json_lines`."""

    name = "console"

    def __init__(self, stream: TextIO | None = None, *, json_lines: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.json_lines = json_lines

    async def deliver(self, message: Message) -> None:
        if self.json_lines:
            line = json.dumps(message.to_json(), ensure_ascii=False)
        else:
            line = message.one_line()
        self.stream.write(line + "\n")
        self.stream.flush()
