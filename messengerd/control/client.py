"""A front end's side of the control channel: blocking connections to a running daemon.

ControlClient finds the daemon for a data directory (its Unix socket, else the TCP address
and token its control.tcp announces), sends requests and reads replies and `subscribe`
events (messengerd.control.protocol).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from messengerd.control.protocol import (
    CONTROL_SOCKET,
    CONTROL_TCP_FILE,
    LOOPBACK,
    MAX_REPLY_BYTES,
    PROBE_TIMEOUT,
    ControlError,
    NoDaemonError,
    encode,
    read_tcp_file,
)
from messengerd.core import lmerr
from messengerd.core.datadir import unreachable
from messengerd.core.lmerr import NetError

log = logging.getLogger(__name__)

CLIENT_TIMEOUT = 30.0
"""Seconds a client waits for a reply; registering a name takes about one second."""


class _Connection:
    """One blocking connection speaking the line protocol."""

    def __init__(self, sock: socket.socket, token: str = "") -> None:
        self.sock = sock
        self.token = token
        self.file = sock.makefile("rb")

    def send(self, request: dict[str, Any]) -> None:
        if self.token:
            request = {**request, "token": self.token}
        self.sock.sendall(encode(request))

    def receive(self) -> dict[str, Any]:
        line = self.file.readline(MAX_REPLY_BYTES + 1)
        if not line:
            raise ControlError("messengerd closed the control connection")
        if not line.endswith(b"\n"):
            raise ControlError(f"reply over {MAX_REPLY_BYTES} bytes or cut short")
        try:
            reply = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ControlError(f"reply is not JSON: {exc}") from None
        if not isinstance(reply, dict):
            raise ControlError("reply is not a JSON object")
        return reply

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        # A daemon that refused us as we connected may have closed already; its refusal is
        # still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send(request)
        return self.receive()

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _TcpConnection(_Connection):
    def __init__(self, document: dict[str, Any], timeout: float) -> None:
        sock = socket.create_connection(
            (document.get("host", LOOPBACK), document["port"]), timeout=timeout
        )
        super().__init__(sock, document["token"])


def tcp_daemon_answers(path: Path) -> bool:
    """True when the daemon `path` announces is alive: it answers `status` with its token."""
    document = read_tcp_file(path)
    if document is None:
        return False
    try:
        with _TcpConnection(document, PROBE_TIMEOUT) as connection:
            return bool(connection.request({"op": "status"}).get("ok"))
    except (OSError, ControlError):
        return False


class ControlClient:
    """A front end's connection to the daemon for `data_dir`; NoDaemonError if none runs.

    `request(op, **params)` returns the reply of a successful request and raises NetError
    (with the daemon's lmerr code) for a failed one.
    """

    def __init__(self, data_dir: Path, *, timeout: float = CLIENT_TIMEOUT) -> None:
        self.data_dir = Path(data_dir)
        self._connection = self._connect(timeout)

    def _connect(self, timeout: float) -> _Connection:
        denied = unreachable(self.data_dir)
        if denied is not None:
            raise ControlError(denied)
        unix_path = self.data_dir / CONTROL_SOCKET
        stale = False
        if hasattr(socket, "AF_UNIX") and os.path.lexists(unix_path):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(os.fspath(unix_path))
                return _Connection(sock)
            except (ConnectionRefusedError, FileNotFoundError):
                sock.close()
                stale = True
            except PermissionError:
                sock.close()
                raise ControlError(
                    f"cannot reach the messengerd for {self.data_dir}: permission denied "
                    "(it runs as another user: run this as that user or root, or ask for "
                    "its --control-group)"
                ) from None
            except OSError as exc:
                sock.close()
                raise ControlError(f"cannot connect to {unix_path}: {exc}") from None
        document = read_tcp_file(self.data_dir / CONTROL_TCP_FILE)
        if document is not None:
            try:
                return _TcpConnection(document, timeout)
            except OSError:
                stale = True
        why = "its control socket is stale" if stale else "no control socket"
        raise NoDaemonError(
            f"no messengerd is running for {self.data_dir} ({why}); start it with `messengerd run`"
        )

    def request(self, op: str, **params: Any) -> dict[str, Any]:
        """Send one request and return its reply; NetError when the daemon refuses it."""
        try:
            reply = self._connection.request({"op": op, **params})
        except TimeoutError:
            raise ControlError(f"messengerd did not answer {op} in time") from None
        except OSError as exc:
            raise ControlError(f"control connection failed: {exc}") from None
        if not reply.get("ok"):
            code = reply.get("code")
            if not isinstance(code, int):
                raise ControlError(f"malformed error reply: {reply}")
            raise NetError(code, str(reply.get("detail") or ""))
        return reply

    def subscribe(
        self, on_dropped: Callable[[int], None] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Subscribe now; the iterator yields each new message (the dicts of `run --json`).

        `on_dropped(count)` runs (in the iterating thread) when the daemon dropped `count`
        messages this client read too slowly for, before the next message is yielded; they
        are in the inbox. Without it, that is logged.
        """
        self.request("subscribe")
        self._connection.sock.settimeout(None)
        return self._messages(on_dropped)

    def _messages(self, on_dropped: Callable[[int], None] | None) -> Iterator[dict[str, Any]]:
        while True:
            event = self._connection.receive()
            if event.get("event") == "message":
                yield event["message"]
            elif event.get("event") == "dropped":
                count = event.get("count")
                if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                    raise ControlError(f"malformed dropped event: {event}")
                if on_dropped is not None:
                    on_dropped(count)
                else:
                    log.warning("messengerd dropped %d message(s) not read in time", count)
            elif event.get("ok") is False:
                code = event.get("code")
                raise NetError(code if isinstance(code, int) else lmerr.NERR_NetworkError,
                               str(event.get("detail") or ""))  # fmt: skip

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
