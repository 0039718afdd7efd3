"""The control channel's wire format, shared by the server (in the daemon) and the client.

UTF-8 JSON, one object per line, each way. A request is
`{"op": OP, ...params, "id": ID, "token": "..." (TCP only)}` (a string or number ID is
echoed); each gets one reply line, `{"ok": true, ...}` or `{"ok": false, "code": N,
"error": "NERR_...", "message": "...", "detail": "..."}` with the lmerr code (PROTOCOL.md
§7). Several requests may follow one another on a connection. Ops:
- `status` -> pid, version, bind, broadcast, ports, aliases, data_dir, register,
  messages_received, started_at (ISO 8601, UTC), uptime (seconds), messages_allowed (let
  in by the policy), refused ({reason: count}, refusals only), store ({path, bytes,
  messages}, or null without a store). Keys are only ever added.
- `names.add` {name} / `names.del` {name} -> {name}: NetMessageNameAdd / NetMessageNameDel.
- `names.list` {level 0|1, prefmaxlen -1, resume_handle 0} -> {entries, total_entries,
  resume_handle, status}: NetMessageNameEnum; status 234 (ERROR_MORE_DATA) says to ask
  again from resume_handle.
- `names.info` {name, level 0|1} -> {entry}: NetMessageNameGetInfo.
- `subscribe` -> {ok}, then `{"event": "message", "message": {...}}` for each new message
  (the keys of `messengerd run --json`) until the client closes the connection; before a
  message, `{"event": "dropped", "count": N}` when N older ones were dropped unsent.

Where a daemon is found, in its data directory: the Unix socket CONTROL_SOCKET, or where
the platform has no Unix sockets, loopback TCP announced in CONTROL_TCP_FILE (mode 0600)
as `{"host": "127.0.0.1", "port": N, "token": "<hex>", "pid": N}`; every TCP request must
carry that token.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from messengerd.core import lmerr
from messengerd.core.aliases import MessageInfo
from messengerd.core.lmerr import NetError

CONTROL_SOCKET = "control.sock"
"""The Unix socket's file name in the data directory."""
CONTROL_TCP_FILE = "control.tcp"
"""Where the TCP port and token are written when there are no Unix sockets."""
LOOPBACK = "127.0.0.1"

MAX_REQUEST_BYTES = 4096
"""Longest request line. A request names one alias of at most 15 bytes; 4 KiB leaves room
for JSON escapes and the token, and bounds what a peer can make the daemon buffer."""
MAX_REPLY_BYTES = 1 << 20
"""Longest reply line a client reads: a full table of 256 names is about 16 KiB."""
TOKEN_BYTES = 32
"""Random bytes in the TCP token (256 bits)."""
PROBE_TIMEOUT = 2.0
"""Seconds to wait when checking whether a daemon answers on a control address."""

OPS = ("status", "names.add", "names.del", "names.list", "names.info", "subscribe")
"""Every op a request may name."""


class ControlError(Exception):
    """The control channel cannot be opened or used; the message says why, in one line."""


class NoDaemonError(ControlError):
    """No daemon runs for the data directory."""


def encode(document: dict[str, Any]) -> bytes:
    """One line of the protocol: `document` as JSON and a newline."""
    # ASCII escapes: a lone surrogate a client sent (valid JSON) has no UTF-8 form.
    return json.dumps(document).encode("ascii") + b"\n"


def error_reply(code: int, detail: str = "") -> dict[str, Any]:
    """The reply for a failed request: lmerr code, its name and net name's sentence."""
    return {
        "ok": False,
        "code": code,
        "error": lmerr.NAMES.get(code, f"error {code}"),
        "message": lmerr.describe(code),
        "detail": detail,
    }


def info_document(info: MessageInfo, level: int) -> dict[str, Any]:
    """MSG_INFO_0 or MSG_INFO_1 as a `names.list` entry or the `names.info` entry."""
    if level == 0:
        return {"name": info.name}
    return {"name": info.name, "forward_flag": info.forward_flag, "forward": info.forward}


def int_param(request: dict[str, Any], key: str, default: int) -> int:
    """A whole-number parameter of `request`; NetError ERROR_INVALID_PARAMETER if not one."""
    value = request.get(key, default)
    # bool is an int in Python; `"level": true` is a mistake, not level 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise NetError(lmerr.ERROR_INVALID_PARAMETER, f"{key} must be a whole number")
    return value


def name_param(request: dict[str, Any]) -> str:
    """The `name` parameter of `request`; NetError ERROR_INVALID_PARAMETER if not a string."""
    name = request.get("name")
    if not isinstance(name, str):
        raise NetError(lmerr.ERROR_INVALID_PARAMETER, "name must be a string")
    return name


def read_tcp_file(path: Path) -> dict[str, Any] | None:
    """The TCP address and token `path` announces; None when it is absent or not one."""
    try:
        with path.open("rb") as file:
            document = json.loads(file.read(MAX_REQUEST_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise ControlError(f"cannot read {path}: permission denied (another user's?)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if (
        not isinstance(document, dict)
        or not isinstance(document.get("port"), int)
        or not isinstance(document.get("token"), str)
    ):
        return None
    return document
