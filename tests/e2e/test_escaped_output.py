"""Terminal escapes from the LAN: what a sender puts in From, To and the text reaches
`messengerd run`'s output, `history` and the log with every control made visible, while
JSON and the store keep it exact (issue 12, item 3)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

from messengerd.wire import nbss
from messengerd.wire.names import NetBIOSName
from tests.daemon_process import DaemonProcess
from tests.e2e.test_run import recv_frame
from tests.e2e.test_start_and_stop import send_d0

SENDER = "EVIL\x1b]0;pwned\x07"
"""An OSC sequence that retitles the terminal, rung in with BEL."""
TEXT = "disk full\x1b[2J\r\x9b31mok \u202eexe.txt\u200b \u2066x\u2069"
"""ESC clears the screen, a C1 CSI colours what follows, a bidi override, a zero-width space
and an isolate reorder and hide it."""
RAW_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def history(data_dir, *options: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "messengerd", "history", "--data-dir", str(data_dir), *options],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_controls_from_the_lan_reach_no_terminal_or_log_raw(tmp_path):
    settings = tmp_path / "messengerd.toml"
    # The command prints the sender's name: its output goes to the log.
    settings.write_text(
        '[[sink]]\ntype = "console"\n\n[[sink]]\ntype = "command"\ncommand = "printf %%s %f"\n',
        encoding="utf-8",
    )
    daemon = DaemonProcess(
        "--alias", "BOB", "--codepage", "utf-8", "--config", str(settings),
        data_dir=tmp_path / "data", json_lines=False,
    )  # fmt: skip
    try:
        _, status = send_d0(
            daemon.ports["session"], b"BOB", TEXT.encode(), session_request=True,
            sender=SENDER.encode(),
        )  # fmt: skip
        assert status == 0
        line = daemon.next_message()
        # A session request for a name full of controls: its refusal is logged too.
        with socket.create_connection(("127.0.0.1", daemon.ports["session"])) as sock:
            sock.sendall(nbss.session_request(NetBIOSName(b"\x1b[2J", 3), NetBIOSName(b"A", 0)))
            recv_frame(sock)
    finally:
        daemon.stop()
    assert not RAW_CONTROLS.search(line), repr(line)
    assert "EVIL<ESC>]0;pwned<BEL> -> BOB" in line
    # (A lone CR is a line break on the wire: PROTOCOL.md §8.)
    assert "disk full<ESC>[2J | <U+009B>31mok <U+202E>exe.txt<U+200B> <U+2066>x<U+2069>" in line
    shown = history(daemon.data_dir)
    assert not RAW_CONTROLS.search(shown), repr(shown)
    assert "EVIL<ESC>]0;pwned<BEL>" in shown
    # JSON keeps the text exact, escaping what a terminal would act on.
    exported = history(daemon.data_dir, "--json")
    assert not RAW_CONTROLS.search(exported), repr(exported)
    stored = json.loads(exported)
    assert (stored["from"], stored["text"]) == (SENDER, TEXT.replace("\r", "\n"))
    log = "\n".join(daemon.log)
    assert not RAW_CONTROLS.search(log), repr(log)
    assert "command stdout: EVIL<ESC>]0;pwned<BEL>" in log
    assert "called name <ESC>[2J<03> not present" in log
