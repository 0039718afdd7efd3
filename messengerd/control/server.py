"""The control channel's server: how front ends (CLI, tray) act on a running daemon.

Where it listens, in the daemon's data directory (mode 0700):
- `control.sock`, a Unix socket with mode 0600. A connection is served only when the peer's
  uid (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS) is the daemon's own or root's; the
  file mode keeps everyone else from connecting at all. With a control group (Unix; see
  messengerd.core.datadir) the socket is 0660 and that group's, and a peer in the group
  (SO_PEERCRED's gid, or its supplementary groups) is served too.
- where the platform has no Unix sockets (Windows' Python): loopback TCP on a free port,
  announced in `control.tcp` (mode 0600, readable by the owner only) with a token every
  request must carry; knowing the port is not enough.
The requests and replies are messengerd.control.protocol's JSON lines.

A subscriber that reads too slowly loses its oldest unsent messages, not its connection:
past SUBSCRIBER_QUEUE waiting (control/hub.py, the SubscriberHub feeding every `subscribe`
connection), the oldest is dropped and counted, and the count goes out as a `dropped` event
ahead of the next message. A stored message is in the inbox before it is sent here, so the
subscriber catches up from there (the tray does, as after a reconnect); cutting it off
instead would only make it reconnect and catch up the same way, losing more meanwhile.
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
from pathlib import Path
from typing import Any, Protocol

from messengerd.control.client import tcp_daemon_answers
from messengerd.control.hub import SubscriberHub, Subscription, TooManySubscribers
from messengerd.control.protocol import (
    CONTROL_SOCKET,
    CONTROL_TCP_FILE,
    LOOPBACK,
    MAX_REQUEST_BYTES,
    OPS,
    PROBE_TIMEOUT,
    TOKEN_BYTES,
    ControlError,
    encode,
    error_reply,
    info_document,
    int_param,
    name_param,
)
from messengerd.core import lmerr
from messengerd.core.aliases import MAX_PREFERRED_LENGTH, EnumResult, MessageInfo
from messengerd.core.datadir import (
    PRIVATE_SOCKET_MODE,
    SHARED_SOCKET_MODE,
    ControlGroup,
    DataDirError,
    share,
)
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.wire.names import NetBIOSName

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
"""Control connections open at once; the next gets an error reply and is closed."""
IDLE_TIMEOUT = 300.0
"""Seconds a connection that has not subscribed may sit without sending a request."""
WRITE_TIMEOUT = 30.0
"""Seconds a reply or event may wait for the peer to read before the connection is closed."""
STOP_GRACE = 5.0
"""Seconds stop() lets a request under way (a registration takes about one) finish."""
MODES = ("auto", "unix", "tcp", "none")
"""Where the control channel listens: "unix", "tcp", "auto" (unix where there is AF_UNIX)
or "none" (no control channel)."""


class ControlHandler(Protocol):
    """What the control channel acts on: the daemon's API for front ends."""

    @property
    def codepage(self) -> str:
        """The OEM code page alias names are read in."""
        ...

    async def add_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameAdd, registered on the network first."""
        ...

    async def delete_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameDel, released on the network."""
        ...

    def enum_aliases(
        self, level: int = 0, prefmaxlen: int = MAX_PREFERRED_LENGTH, resume_handle: int = 0
    ) -> EnumResult:
        """NetMessageNameEnum over the alias table."""
        ...

    def alias_info(self, name: str, level: int = 0) -> MessageInfo:
        """NetMessageNameGetInfo for one alias."""
        ...

    async def status(self) -> dict[str, Any]:
        """What `status` reports (JSON-ready)."""
        ...


def resolve_mode(mode: str) -> str:
    """The mode "auto" stands for here ("unix" wherever there are Unix sockets); ValueError."""
    if mode not in MODES:
        raise ValueError(f"control mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "auto":
        return "unix" if hasattr(socket, "AF_UNIX") else "tcp"
    return mode


def peer_credentials(sock: Any) -> tuple[int | None, int, int | None] | None:
    """(pid, uid, gid) of the process at the other end of a Unix socket, pid and gid None
    where the OS does not say them; None where it says nothing."""
    if hasattr(socket, "SO_PEERCRED"):
        # struct ucred: pid, uid, gid (Linux, socket(7)).
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", creds)
        return pid, uid, gid
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:
        # struct xucred: cr_version, cr_uid, ... at SOL_LOCAL (0) (macOS, FreeBSD unix(4)).
        creds = sock.getsockopt(0, local_peercred, 76)
        return None, struct.unpack_from("=II", creds)[1], None
    return None


class ControlServer:
    """Serves the control protocol for one daemon; also the Sink feeding `subscribe`,
    through its hub (a SubscriberHub, one Subscription per `subscribe` connection)."""

    name = "control"

    def __init__(
        self,
        handler: ControlHandler,
        data_dir: Path,
        *,
        mode: str = "auto",
        group: ControlGroup | None = None,
    ) -> None:
        """`group`: also serve its members (the Unix socket only; the TCP token file stays
        the owner's)."""
        self.handler = handler
        self.data_dir = Path(data_dir)
        self.mode = resolve_mode(mode)
        self.group = group
        self.address = ""
        self.token = ""
        self._server: asyncio.Server | None = None
        self._created: Path | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.hub = SubscriberHub(name=self.name, max_subscribers=MAX_CONNECTIONS)
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
        self._created = path
        try:
            if self.group is None:
                os.chmod(path, PRIVATE_SOCKET_MODE)
            else:
                share(path, self.group, SHARED_SOCKET_MODE)
        except DataDirError as exc:
            raise ControlError(str(exc)) from None
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
        if await asyncio.to_thread(tcp_daemon_answers, path):
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
            credentials = peer_credentials(sock)
        except OSError as exc:
            log.warning("control connection refused: no peer credentials (%s)", exc)
            return False
        if credentials is None or self._uid is None:
            # No way to ask here; the socket's mode is the guard.
            return True
        pid, uid, gid = credentials
        if uid in (self._uid, 0):
            return True
        group = self.group
        if group and pid is not None and gid is not None and group.admits(pid, uid, gid):
            return True
        allowed = f"uid {self._uid}, root" + (f" or group {group.name}" if group else "")
        log.warning("control connection from uid %d refused: not %s", uid, allowed)
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
        handler = self.handler
        try:
            if op == "status":
                return {"ok": True, **(await handler.status())}
            if op == "names.add":
                alias = await handler.add_alias(name_param(request))
                return {"ok": True, "name": alias.text(handler.codepage)}
            if op == "names.del":
                alias = await handler.delete_alias(name_param(request))
                return {"ok": True, "name": alias.text(handler.codepage)}
            if op == "names.list":
                level = int_param(request, "level", 0)
                result = handler.enum_aliases(
                    level,
                    prefmaxlen=int_param(request, "prefmaxlen", MAX_PREFERRED_LENGTH),
                    resume_handle=int_param(request, "resume_handle", 0),
                )
                return {
                    "ok": True,
                    "entries": [info_document(entry, level) for entry in result.entries],
                    "total_entries": result.total_entries,
                    "resume_handle": result.resume_handle,
                    "status": result.status,
                }
            if op == "names.info":
                level = int_param(request, "level", 0)
                info = handler.alias_info(name_param(request), level)
                return {"ok": True, "entry": info_document(info, level)}
        except NetError as exc:
            return error_reply(exc.code, exc.detail)
        known = ", ".join(OPS)
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
        writer.write(encode(document))
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
    """Write `document` to `path` readable by the owner only, atomically.

    On Windows, which ignores POSIX modes, an explicit DACL says who that is
    (messengerd.windows.acl).
    """
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file 0600 already; say so for platforms where it might not.
        os.chmod(temporary, 0o600)
        if sys.platform == "win32":
            from messengerd.windows.acl import protect_token_file

            protect_token_file(temporary)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
