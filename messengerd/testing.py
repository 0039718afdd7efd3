"""A loopback test target for software that sends Messenger messages (DESIGN.md, use 3).

`MessengerController` runs a real messengerd Daemon on free loopback ports in a background
thread, the way aiosmtpd's Controller runs an SMTP server: `start()`, `stop()` or a `with`
block, then read `messages` or `wait_for(...)`. Its `faults` make the receiver misbehave on
purpose, so a sender's error handling can be tested too. The pytest fixtures are in
messengerd.pytest_plugin.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from messengerd.background import DaemonThread
from messengerd.config.options import DEFAULT_WORKGROUP, DaemonConfig
from messengerd.core.message import Message, Outcome
from messengerd.daemon import Daemon, Hooks
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, alias_name
from messengerd.wire.text import DEFAULT_CODEPAGE

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
LOOPBACK_BROADCAST = "127.255.255.255"
"""Where the controller listens: loopback only, broadcasts included (the daemon binds both)."""

DEFAULT_ALIASES = ("RECEIVER",)
"""The name a controller receives under unless told otherwise."""

START_TIMEOUT = 10.0
"""Seconds start() waits for the three listeners before it gives up."""
STOP_TIMEOUT = 10.0
"""Seconds stop() waits for the daemon to close its sessions and listeners."""
DEFAULT_WAIT_TIMEOUT = 5.0
"""Seconds wait_for() waits for a matching message unless told otherwise."""


@dataclass
class Faults:
    """What the receiver does wrong on purpose; change the fields at any time.

    - `refused_names`: aliases whose SESSION REQUEST gets a NEGATIVE SESSION RESPONSE,
      "called name not present" (RFC 1002 §4.3.4), and whose RPC calls get NERR_NameNotFound;
      name queries are still answered.
    - `smb_error`: answer each completed session message (D0, D6) with ERRSRV/ERRnoroom, and
      each RPC call with NERR_NoRoom, instead of success; the message is not kept.
    - `reply_delay`: seconds to wait before answering each completed session message or RPC
      call.
    - `drop_datagrams`: lose every mailslot message, as a busy network loses UDP.
    """

    refused_names: set[str] = field(default_factory=set)
    smb_error: bool = False
    reply_delay: float = 0.0
    drop_datagrams: bool = False

    def reset(self) -> None:
        """Back to a receiver that works."""
        self.refused_names = set()
        self.smb_error = False
        self.reply_delay = 0.0
        self.drop_datagrams = False


class _FaultHooks(Hooks):
    """The daemon's hooks, doing what a Faults says."""

    def __init__(self, faults: Faults, codepage: str) -> None:
        self.faults = faults
        self.codepage = codepage

    async def before_store(self, message: Message) -> Outcome | None:
        faults = self.faults
        if message.path == "mailslot" and faults.drop_datagrams:
            log.info("dropped a mailslot message from %s on purpose", message.peer)
            return Outcome("refused", reason="dropped on purpose (Faults.drop_datagrams)")
        if message.path not in ("session", "rpc"):
            return None
        if faults.reply_delay > 0:
            await asyncio.sleep(faults.reply_delay)
        if faults.smb_error:
            log.info("refusing a %s message from %s on purpose", message.path, message.peer)
            return Outcome("error", reason="refused on purpose (Faults.smb_error)")
        return None

    def refuses_session(self, name: NetBIOSName) -> bool:
        # Name queries and datagrams still see every alias, so a sender resolves the name
        # and is then refused.
        for text in list(self.faults.refused_names):
            try:
                if alias_name(text, self.codepage) == NetBIOSName(name.name, name.suffix):
                    return True
            except WireError:
                continue
        return False


class _Collector:
    """The sink that hands each message to the controller's thread-safe list."""

    name = "messengerd.testing"

    def __init__(self, controller: MessengerController) -> None:
        self.controller = controller

    async def deliver(self, message: Message) -> None:
        self.controller._received(message)


class MessengerController:
    """A messengerd receiver on free loopback ports, in a thread of its own.

    The daemon keeps no inbox (store=False): every message that arrives is reported, where
    the inbox would fold a repeated message into its first, and nothing waits on the disk.
    Its data directory is a temporary one, with no alias file and no control channel. It
    does not register its aliases by broadcast (register=False): that would cost every start
    the RFC's three 250 ms rounds, and on loopback there is nobody to defend against. Two
    controllers answering for one alias both answer a name query, so tests that resolve by
    name give each controller its own alias.
    """

    def __init__(
        self,
        aliases: Iterable[str] = DEFAULT_ALIASES,
        *,
        workgroups: Iterable[str] = (DEFAULT_WORKGROUP,),
        codepage: str = DEFAULT_CODEPAGE,
        host: str = LOOPBACK,
        broadcast: str = LOOPBACK_BROADCAST,
    ) -> None:
        self.config = DaemonConfig(
            bind=host,
            broadcast=broadcast,
            name_port=0,
            datagram_port=0,
            session_port=0,
            rpc_port=0,
            aliases=list(aliases),
            workgroups=list(workgroups),
            codepage=codepage,
            store=False,
            keep_aliases=False,
            register=False,
            control="none",
        )
        self.faults = Faults()
        self.daemon: Daemon | None = None
        self._runner: DaemonThread | None = None
        self._data_dir: tempfile.TemporaryDirectory[str] | None = None
        self._messages: list[Message] = []
        self._arrived = threading.Condition()

    # Running.

    def start(self) -> MessengerController:
        """Open the listeners; return once they accept. Raises ListenError or NetError."""
        if self._runner is not None:
            raise RuntimeError("this controller is already running")
        self._data_dir = tempfile.TemporaryDirectory(prefix="messengerd-controller-")
        self.config.data_dir = Path(self._data_dir.name)
        daemon = Daemon(self.config, hooks=_FaultHooks(self.faults, self.config.codepage))
        daemon.add_sink(_Collector(self))
        runner = DaemonThread(daemon, start_timeout=START_TIMEOUT, stop_timeout=STOP_TIMEOUT)
        try:
            runner.start()
        except BaseException:
            self._cleanup()
            raise
        self.daemon, self._runner = daemon, runner
        return self

    def stop(self) -> None:
        """Close every session and listener and end the thread; harmless when not running."""
        try:
            if self._runner is not None:
                self._runner.stop()
        finally:
            self._runner = self.daemon = None
            self._cleanup()

    def _cleanup(self) -> None:
        if self._data_dir is not None:
            self._data_dir.cleanup()
            self._data_dir = None

    def __enter__(self) -> MessengerController:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Where it listens.

    @property
    def host(self) -> str:
        """The loopback address every listener is bound to."""
        return self.config.bind

    @property
    def broadcast(self) -> str:
        """The broadcast address the UDP listeners also hear (127.255.255.255)."""
        return self.config.broadcast or LOOPBACK_BROADCAST

    @property
    def ports(self) -> dict[str, int]:
        """The bound ports: {"name": UDP, "datagram": UDP, "session": TCP, "rpc": UDP}."""
        if self.daemon is None:
            raise RuntimeError("the controller is not running: call start() first")
        return dict(self.daemon.ports)

    @property
    def name_port(self) -> int:
        return self.ports["name"]

    @property
    def datagram_port(self) -> int:
        return self.ports["datagram"]

    @property
    def session_port(self) -> int:
        return self.ports["session"]

    @property
    def rpc_port(self) -> int:
        return self.ports["rpc"]

    @property
    def send_options(self) -> dict[str, Any]:
        """Keywords for messengerd.sender.net_message_buffer_send that reach this receiver
        by address; drop `host` to make the sender resolve the name by broadcast query."""
        return {
            "host": self.host,
            "port": self.session_port,
            "datagram_port": self.datagram_port,
            "name_port": self.name_port,
            "rpc_port": self.rpc_port,
            "broadcast": self.broadcast,
        }

    # What arrived.

    def _received(self, message: Message) -> None:
        with self._arrived:
            self._messages.append(message)
            self._arrived.notify_all()

    @property
    def messages(self) -> list[Message]:
        """Every message received so far, oldest first (a copy)."""
        with self._arrived:
            return list(self._messages)

    def clear(self) -> None:
        """Forget the messages received so far."""
        with self._arrived:
            self._messages.clear()

    def wait_for(
        self,
        predicate: Callable[[Message], bool] | None = None,
        timeout: float = DEFAULT_WAIT_TIMEOUT,
    ) -> Message:
        """The first message received (already or within `timeout` seconds) for which
        `predicate` is true, or the first at all; TimeoutError when none comes."""
        match = predicate or (lambda _message: True)
        found: list[Message] = []

        def matched() -> bool:
            found[:] = [message for message in self._messages if match(message)][:1]
            return bool(found)

        with self._arrived:
            if not self._arrived.wait_for(matched, timeout):
                seen = "; ".join(message.one_line() for message in self._messages) or "none"
                raise TimeoutError(f"no matching message within {timeout:g} s (received: {seen})")
        return found[0]
