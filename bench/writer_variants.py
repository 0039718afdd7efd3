"""Receivers whose inbox writer process skips part of its work, for bench/storage_parts.py.

Not messengerd: each variant gives up what the inbox promises (a message durable before its
sender is told so) and exists only to measure what that part costs.

    python bench/writer_variants.py daemon VARIANT run ...    messengerd with that writer
    python bench/writer_variants.py writer VARIANT DATABASE FD [BUSY_TIMEOUT]
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from messengerd import cli, inbox_writer
from messengerd.core.store.inbox import WRITER_MODULE

VARIANTS = {
    "unsynced": "commits as the product does but with PRAGMA synchronous=OFF: no fdatasync",
    "answering": "answers every request at once and stores nothing: the process round trip",
}
"""Each variant, and what it leaves out."""


def daemon(variant: str, argv: list[str]) -> int:
    """messengerd's `main(argv)`, starting this file's `writer VARIANT` as its writer."""
    real = subprocess.Popen

    class Popen(real):  # type: ignore[misc,valid-type]
        def __init__(self, command, *args, **kwargs) -> None:
            if list(command[1:3]) == ["-m", WRITER_MODULE]:
                here = str(Path(__file__).resolve())
                command = [command[0], here, "writer", variant, *command[3:]]
            super().__init__(command, *args, **kwargs)

    subprocess.Popen = Popen  # type: ignore[misc]
    return cli.main(argv)


def writer(variant: str, argv: list[str]) -> int:
    """inbox_writer's `main(argv)`, with the variant's part left out."""
    if variant == "unsynced":
        connect = inbox_writer.connect

        def unsynced(path: str, **options) -> inbox_writer.sqlite3.Connection:
            conn = connect(path, **options)
            conn.execute("PRAGMA synchronous=OFF")
            return conn

        inbox_writer.connect = unsynced
    elif variant == "answering":

        def answer(self: inbox_writer.Writer, requests: list[inbox_writer.Request]) -> tuple:
            return ("stored", tuple((request[0], request[0], False) for request in requests))

        inbox_writer.Writer.commit = answer  # type: ignore[method-assign]
    return inbox_writer.main(argv)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("daemon", "writer") or argv[1] not in VARIANTS:
        print(__doc__, file=sys.stderr)
        return 2
    role, variant, rest = argv[0], argv[1], argv[2:]
    return daemon(variant, rest) if role == "daemon" else writer(variant, rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
