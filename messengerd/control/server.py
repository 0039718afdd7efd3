"""The local control channel: how front ends (CLI, tray) act on a running daemon.

Where it listens, in the daemon's data directory (mode 0700):
- `control.sock`, a Unix socket with mode 0600. A connection is served only when the peer's
  uid (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS) is the daemon's own or root's; the
  file mode keeps everyone else from connecting at all.
- where the platform has no Unix sockets (Windows' Python): loopback TCP on a free port,
  announced in `control.tcp` (mode 0600, readable by the owner only) as
  `{"host": "127.0.0.1", "port": N, "token": "<hex>", "pid": N}`. Every request must carry
  that token; knowing the port is not enough.

The protocol: UTF-8 JSON, one object per line, each way. A request is
`{"op": OP, ...params, "id": ID, "token": "..." (TCP only)}` (a string or number ID is
echoed); each gets one reply line, `{"ok": true, ...}` or `{"ok": false, "code": N,
"error": "NERR_...", "message": "...", "detail": "..."}` with the lmerr code (PROTOCOL.md
§7). Several requests may follow one another on a connection. Ops:
- `status` -> pid, version, bind, broadcast, ports, aliases, messages_received, data_dir.
- `names.add` {name} / `names.del` {name} -> {name}: NetMessageNameAdd / NetMessageNameDel.
- `names.list` {level 0|1, prefmaxlen -1, resume_handle 0} -> {entries, total_entries,
  resume_handle, status}: NetMessageNameEnum; status 234 (ERROR_MORE_DATA) says to ask
  again from resume_handle.
- `names.info` {name, level 0|1} -> {entry}: NetMessageNameGetInfo.
- `subscribe` -> {ok}, then `{"event": "message", "message": {...}}` for each new message
  (the keys of `messengerd run --json`) until the client closes the connection; before a
  message, `{"event": "dropped", "count": N}` when N older ones were dropped unsent.
A subscriber that reads too slowly loses its oldest unsent messages, not its connection:
past SUBSCRIBER_QUEUE waiting (delivery/notify.py, the hub feeding every subscriber), the
oldest is dropped and counted, and the count goes out as a `dropped` event ahead of the
next message. A stored message is in the inbox before it is sent here, so the subscriber
catches up from there (the tray does, as after a reconnect); cutting it off instead would
only make it reconnect and catch up the same way, losing more meanwhile.
A request from a peer that does not authenticate gets an error reply and the connection
is closed; a request over MAX_REQUEST_BYTES (skipped unread), bad JSON or an unknown op
gets an error reply and the connection serves on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import secrets
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from messengerd.control.hub import NotificationSink, Subscription, TooManySubscribers
from messengerd.core import lmerr
from messengerd.core.aliases import AliasTable, MessageInfo
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.wire.names import NetBIOSName

log = logging.getLogger(__name__)

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
MAX_CONNECTIONS = 64
"""Control connections open at once; the next gets an error reply and is closed."""
IDLE_TIMEOUT = 300.0
"""Seconds a connection that has not subscribed may sit without sending a request."""
WRITE_TIMEOUT = 30.0
"""Seconds a reply or event may wait for the peer to read before the connection is closed."""
CLIENT_TIMEOUT = 30.0
"""Seconds a client waits for a reply; registering a name takes about one second."""
TOKEN_BYTES = 32
"""Random bytes in the TCP token (256 bits)."""
STOP_GRACE = 5.0
"""Seconds stop() lets a request under way (a registration takes about one) finish."""
PROBE_TIMEOUT = 2.0
"""Seconds to wait when checking whether another daemon answers on our control address."""

MODES = ("auto", "unix", "tcp", "none")


class ControlError(Exception):
    """The control channel cannot be opened or used; the message says why, in one line."""


class NoDaemonError(ControlError):
    """No daemon runs for the data directory."""


class ControlHandler(Protocol):
    """What the control channel acts on: the daemon."""

    aliases: AliasTable

    async def add_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameAdd, registered on the network first."""
        ...

    async def delete_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameDel, released on the network."""
        ...

    def status(self) -> dict[str, Any]:
        """What `status` reports (JSON-ready)."""
        ...


def resolve_mode(mode: str) -> str:
    """The mode "auto" stands for here ("unix" wherever there are Unix sockets); ValueError."""
    if mode not in MODES:
        raise ValueError(f"control mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "auto":
        return "unix" if hasattr(socket, "AF_UNIX") else "tcp"
    return mode


def error_reply(code: int, detail: str = "") -> dict[str, Any]:
    """The reply for a failed request: lmerr code, its name and net name's sentence."""
    return {
        "ok": False,
        "code": code,
        "error": lmerr.NAMES.get(code, f"error {code}"),
        "message": lmerr.describe(code),
        "detail": detail,
    }


def _encode(document: dict[str, Any]) -> bytes:
    # ASCII escapes: a lone surrogate a client sent (valid JSON) has no UTF-8 form.
    return json.dumps(document).encode("ascii") + b"\n"


def _info_json(info: MessageInfo, level: int) -> dict[str, Any]:
    if level == 0:
        return {"name": info.name}
    return {"name": info.name, "forward_flag": info.forward_flag, "forward": info.forward}


def _int_param(request: dict[str, Any], key: str, default: int) -> int:
    value = request.get(key, default)
    # bool is an int in Python; `"level": true` is a mistake, not level 1.
    if not isinstance(value, int) or isinstance(value, bool):
        raise NetError(lmerr.ERROR_INVALID_PARAMETER, f"{key} must be a whole number")
    return value


def _name_param(request: dict[str, Any]) -> str:
    name = request.get("name")
    if not isinstance(name, str):
        raise NetError(lmerr.ERROR_INVALID_PARAMETER, "name must be a string")
    return name


def peer_uid(sock: Any) -> int | None:
    """The uid of the process at the other end of a Unix socket; None where the OS won't say."""
    if hasattr(socket, "SO_PEERCRED"):
        # struct ucred: pid, uid, gid (Linux, socket(7)).
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:
        # struct xucred: cr_version, cr_uid, ... at SOL_LOCAL (0) (macOS, FreeBSD unix(4)).
        creds = sock.getsockopt(0, local_peercred, 76)
        return struct.unpack_from("=II", creds)[1]
    return None


class ControlServer:
    """Serves the control protocol for one daemon; also the Sink feeding `subscribe`,
    through its hub (a NotificationSink, one Subscription per `subscribe` connection)."""

    name = "control"

    def __init__(self, handler: ControlHandler, data_dir: Path, *, mode: str = "auto") -> None:
        self.handler = handler
        self.data_dir = Path(data_dir)
        self.mode = resolve_mode(mode)
        self.address = ""
        self.token = ""
        self._server: asyncio.Server | None = None
        self._created: Path | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.hub = NotificationSink(name=self.name, max_subscribers=MAX_CONNECTIONS)
        self._uid = os.geteuid() if hasattr(os, "geteuid") else None

    # -- life --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Claim the control address (not serving yet); ControlError if another daemon has it."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.mode == "unix":
            await self._start_unix()
        elif self.mode == "tcp":
            await self._start_tcp()

    async def serve(self) -> None:
        """Start answering; connections made since start() wait in the backlog until now."""
        if self._server is not None:
            await self._server.start_serving()
            log.debug("control channel on %s", self.address)

    async def stop(self) -> None:
        """Close every connection and remove the socket or token file."""
        if self._server is not None:
            self._server.close()
        self.hub.close()
        # Closing a connection ends its reader; a request under way finishes first.
        for writer in self._connections.values():
            writer.close()
        tasks = list(self._connections)
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._created is not None:
            with contextlib.suppress(OSError):
                self._created.unlink()
            self._created = None

    async def _start_unix(self) -> None:
        path = self.data_dir / CONTROL_SOCKET
        if sys.platform == "win32":
            raise ControlError("Windows has no Unix control sockets here: use control mode tcp")
        await asyncio.to_thread(self._claim_unix, path)
        # The socket is born 0600: no moment in which another user could connect.
        umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=os.fspath(path), limit=MAX_REQUEST_BYTES, start_serving=False
            )
        except OSError as exc:
            raise ControlError(f"cannot open the control socket {path}: {exc}") from None
        finally:
            os.umask(umask)
        os.chmod(path, 0o600)
        self._created = path
        self.address = os.fspath(path)

    def _claim_unix(self, path: Path) -> None:
        if sys.platform == "win32":
            return  # _start_unix refused already
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{path} exists and is not a socket: remove it")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(PROBE_TIMEOUT)
            try:
                probe.connect(os.fspath(path))
            except (ConnectionRefusedError, FileNotFoundError):
                # Left by a daemon that did not stop cleanly.
                log.debug("removing stale control socket %s", path)
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                return
            except OSError as exc:
                raise ControlError(f"cannot take over {path}: {exc.strerror or exc}") from None
        raise ControlError(
            f"another messengerd is already running for {self.data_dir}: "
            "stop it, or give this one another --data-dir"
        )

    async def _start_tcp(self) -> None:
        path = self.data_dir / CONTROL_TCP_FILE
        if await asyncio.to_thread(_tcp_daemon_answers, path):
            raise ControlError(
                f"another messengerd is already running for {self.data_dir}: "
                "stop it, or give this one another --data-dir"
            )
        self._server = await asyncio.start_server(
            self._serve, LOOPBACK, 0, limit=MAX_REQUEST_BYTES, start_serving=False
        )
        port = self._server.sockets[0].getsockname()[1]
        self.token = secrets.token_hex(TOKEN_BYTES)
        _write_private(
            path, {"host": LOOPBACK, "port": port, "token": self.token, "pid": os.getpid()}
        )
        self._created = path
        self.address = f"{LOOPBACK}:{port}"

    # -- the Sink side -----------------------------------------------------------------------

    async def deliver(self, message: Message) -> None:
        """Queue `message` for every subscriber (never waits for one)."""
        await self.hub.deliver(message)

    # -- connections -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            if len(self._connections) >= MAX_CONNECTIONS:
                log.warning("control connection refused: %d open", MAX_CONNECTIONS)
                await self._write(writer, error_reply(lmerr.NERR_NetworkError, "too busy"))
                return
            self._connections[task] = writer
            if self.mode == "unix" and not self._peer_allowed(writer):
                await self._write(writer, error_reply(lmerr.ERROR_ACCESS_DENIED, "wrong user"))
                return
            await self._converse(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels a connection, and it awaits nothing from it. Ending the
            # task normally spares asyncio 3.11's stream callback a spurious error log.
            pass
        except Exception:
            log.exception("control connection failed")
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        sock = writer.get_extra_info("socket")
        try:
            uid = peer_uid(sock)
        except OSError as exc:
            log.warning("control connection refused: no peer credentials (%s)", exc)
            return False
        if uid is None or self._uid is None:
            # No way to ask here; the socket's mode 0600 is the guard.
            return True
        if uid in (self._uid, 0):
            return True
        log.warning("control connection from uid %d refused: not uid %d or root", uid, self._uid)
        return False

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                async with asyncio.timeout(IDLE_TIMEOUT):
                    line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError:
                return
            except asyncio.LimitOverrunError as exc:
                # Skip the rest of that line unread (bounded memory), answer, read on.
                async with asyncio.timeout(IDLE_TIMEOUT):
                    if not await _skip_line(reader, exc.consumed):
                        return
                detail = f"request longer than {MAX_REQUEST_BYTES} bytes"
                await self._write(writer, error_reply(lmerr.ERROR_INVALID_PARAMETER, detail))
                continue
            try:
                request = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
                detail = f"request is not a JSON line: {exc}"
                await self._write(writer, error_reply(lmerr.ERROR_INVALID_PARAMETER, detail))
                continue
            if not isinstance(request, dict):
                detail = "request is not a JSON object"
                await self._write(writer, error_reply(lmerr.ERROR_INVALID_PARAMETER, detail))
                continue
            if self.mode == "tcp" and not self._token_valid(request.get("token")):
                log.warning("control request refused: wrong or missing token")
                await self._write(writer, error_reply(lmerr.ERROR_ACCESS_DENIED, "bad token"))
                return
            op = request.get("op")
            if op == "subscribe":
                # Subscribed before the reply: every message after the reply reaches the client.
                try:
                    subscription = self.hub.subscribe()
                except TooManySubscribers as exc:
                    await self._write(
                        writer, self._tag(error_reply(lmerr.NERR_NetworkError, str(exc)), request)
                    )
                    continue
                with subscription:
                    await self._write(writer, self._tag({"ok": True}, request))
                    await self._stream(reader, writer, subscription)
                return
            await self._write(writer, self._tag(await self._dispatch(op, request), request))

    def _token_valid(self, token: object) -> bool:
        return isinstance(token, str) and hmac.compare_digest(
            token.encode("utf-8"), self.token.encode("utf-8")
        )

    @staticmethod
    def _tag(reply: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        # Only a plain id is echoed: a nested one could be deep enough to break json.dumps.
        if isinstance(request.get("id"), str | int | float | bool):
            reply["id"] = request["id"]
        return reply

    async def _dispatch(self, op: object, request: dict[str, Any]) -> dict[str, Any]:
        table = self.handler.aliases
        try:
            if op == "status":
                return {"ok": True, **self.handler.status()}
            if op == "names.add":
                alias = await self.handler.add_alias(_name_param(request))
                return {"ok": True, "name": alias.text(table.codepage)}
            if op == "names.del":
                alias = await self.handler.delete_alias(_name_param(request))
                return {"ok": True, "name": alias.text(table.codepage)}
            if op == "names.list":
                level = _int_param(request, "level", 0)
                result = table.enum(
                    level,
                    prefmaxlen=_int_param(request, "prefmaxlen", -1),
                    resume_handle=_int_param(request, "resume_handle", 0),
                )
                return {
                    "ok": True,
                    "entries": [_info_json(entry, level) for entry in result.entries],
                    "total_entries": result.total_entries,
                    "resume_handle": result.resume_handle,
                    "status": result.status,
                }
            if op == "names.info":
                level = _int_param(request, "level", 0)
                info = table.get_info(_name_param(request), level)
                return {"ok": True, "entry": _info_json(info, level)}
        except NetError as exc:
            return error_reply(exc.code, exc.detail)
        known = "status, names.add, names.del, names.list, names.info, subscribe"
        return error_reply(lmerr.ERROR_NOT_SUPPORTED, f"unknown op {op!r}; known: {known}")

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, subscription: Subscription
    ) -> None:
        loop = asyncio.get_running_loop()
        # Input after `subscribe` means nothing; read it only to see the client go.
        gone = loop.create_task(_read_until_eof(reader))
        try:
            while True:
                following = loop.create_task(subscription.get_with_dropped())
                await asyncio.wait({following, gone}, return_when=asyncio.FIRST_COMPLETED)
                if not following.done():
                    following.cancel()
                    return  # the client went
                try:
                    dropped, message = following.result()
                except EOFError:
                    return  # the hub closed: the daemon is stopping
                if gone.done():
                    return
                if dropped:
                    await self._write(writer, {"event": "dropped", "count": dropped})
                await self._write(writer, {"event": "message", "message": message.to_json()})
        finally:
            gone.cancel()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, document: dict[str, Any]) -> None:
        writer.write(_encode(document))
        async with asyncio.timeout(WRITE_TIMEOUT):
            await writer.drain()


async def _skip_line(reader: asyncio.StreamReader, buffered: int) -> bool:
    """Discard through the next newline, `buffered` bytes at first; False at end of input."""
    while True:
        try:
            await reader.readexactly(buffered)
            await reader.readuntil(b"\n")
            return True
        except asyncio.LimitOverrunError as exc:
            buffered = exc.consumed
        except asyncio.IncompleteReadError:
            return False


async def _read_until_eof(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(OSError):
        while await reader.read(MAX_REQUEST_BYTES):
            pass


def _write_private(path: Path, document: dict[str, Any]) -> None:
    """Write `document` to `path` readable by the owner only, atomically."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600 already; say so for platforms where it might not.
        os.chmod(temporary, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read_tcp_file(path: Path) -> dict[str, Any] | None:
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


def _tcp_daemon_answers(path: Path) -> bool:
    """True when the daemon `path` announces is alive: it answers `status` with its token."""
    document = _read_tcp_file(path)
    if document is None:
        return False
    try:
        with _TcpConnection(document, PROBE_TIMEOUT) as connection:
            return bool(connection.request({"op": "status"}).get("ok"))
    except (OSError, ControlError):
        return False


# --- the client ---------------------------------------------------------------------------


class _Connection:
    """One blocking connection speaking the line protocol."""

    def __init__(self, sock: socket.socket, token: str = "") -> None:
        self.sock = sock
        self.token = token
        self.file = sock.makefile("rb")

    def send(self, request: dict[str, Any]) -> None:
        if self.token:
            request = {**request, "token": self.token}
        self.sock.sendall(_encode(request))

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


class ControlClient:
    """A front end's connection to the daemon for `data_dir`; NoDaemonError if none runs.

    `request(op, **params)` returns the reply of a successful request and raises NetError
    (with the daemon's lmerr code) for a failed one.
    """

    def __init__(self, data_dir: Path, *, timeout: float = CLIENT_TIMEOUT) -> None:
        self.data_dir = Path(data_dir)
        self._connection = self._connect(timeout)

    def _connect(self, timeout: float) -> _Connection:
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
                    "(it runs as another user; run this as that user or root)"
                ) from None
            except OSError as exc:
                sock.close()
                raise ControlError(f"cannot connect to {unix_path}: {exc}") from None
        document = _read_tcp_file(self.data_dir / CONTROL_TCP_FILE)
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
