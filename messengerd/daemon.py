"""The daemon: owns the listeners, the alias table and the delivery of every message."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import uuid

from messengerd.aliases import AliasTable
from messengerd.config import DaemonConfig
from messengerd.delivery import Fanout, Sink
from messengerd.inbox import Inbox, InboxError, StoredMessage
from messengerd.message import Message
from messengerd.netif import broadcast_for
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import MessageReceived
from messengerd.protocol.nameservice import NameService
from messengerd.transport.tcp import SessionListener
from messengerd.transport.udp import DatagramServiceProtocol, NameServiceProtocol

log = logging.getLogger(__name__)

PORT_OPTIONS = "--name-port, --datagram-port and --session-port"


class ListenError(Exception):
    """A port could not be opened; the message says why and what to do, in one line."""


def _listen_error(service: str, host: str, port: int, exc: OSError) -> ListenError:
    where = f"port {port}/{'tcp' if service == 'session' else 'udp'} ({service} service) on {host}"
    if exc.errno == errno.EADDRINUSE:
        return ListenError(
            f"{where} is already in use (Samba's nmbd/smbd or another messengerd?): "
            f"stop that program, or choose free ports with {PORT_OPTIONS}"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ListenError(
            f"no permission to listen on {where}: run as root, allow it with "
            f"`setcap cap_net_bind_service=+ep $(readlink -f $(which python3))`, "
            f"or use high ports with {PORT_OPTIONS}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ListenError(f"{host} is not an address of this host: check --bind")
    return ListenError(f"cannot listen on {where}: {exc.strerror or exc}")


class Daemon:
    """One receiver: `await start()`, messages go to the sinks, `await stop()`."""

    def __init__(self, config: DaemonConfig, sinks: list[Sink] | None = None) -> None:
        self.config = config
        self.aliases = AliasTable(
            config.aliases, workgroups=config.workgroups, codepage=config.codepage
        )
        self.fanout = Fanout(list(sinks or []))
        self.inbox = Inbox(config.data_dir) if config.store else None
        self.broadcast = config.broadcast or broadcast_for(config.bind)
        self.ports: dict[str, int] = {}
        self.messages_received = 0
        self._sessions = SessionListener(self.aliases, self.deliver)
        self._udp: list[asyncio.DatagramTransport] = []
        self._datagram_protocols: list[DatagramServiceProtocol] = []
        self._stopped = asyncio.Event()

    def add_sink(self, sink: Sink) -> None:
        """Send every later message to `sink` too."""
        self.fanout.sinks.append(sink)

    async def start(self) -> None:
        """Open the three listeners; raise ListenError (one line, actionable) if one fails."""
        bind = self.config.bind
        try:
            self.ports["name"] = await self._open_udp(
                "name", self.config.name_port, lambda: NameServiceProtocol(self._names(), bind)
            )
            datagrams = DatagramService(self.aliases)
            self.ports["datagram"] = await self._open_udp(
                "datagram",
                self.config.datagram_port,
                lambda: self._datagram_protocol(datagrams),
            )
            try:
                self.ports["session"] = await self._sessions.start(bind, self.config.session_port)
            except OSError as exc:
                raise _listen_error("session", bind, self.config.session_port, exc) from None
        except BaseException:
            await self.stop()
            raise
        log.info(
            "listening on %s: name %d/udp, datagram %d/udp, session %d/tcp; aliases %s",
            bind,
            self.ports["name"],
            self.ports["datagram"],
            self.ports["session"],
            ", ".join(str(name) for name in self.aliases.names()) or "(none)",
        )

    def _names(self) -> NameService:
        return NameService(self.aliases, mac=uuid.getnode().to_bytes(6, "big"))

    def _datagram_protocol(self, service: DatagramService) -> DatagramServiceProtocol:
        protocol = DatagramServiceProtocol(service, self.deliver)
        self._datagram_protocols.append(protocol)
        return protocol

    async def _open_udp(self, service: str, port: int, factory) -> int:
        """Bind the service's UDP port on the bind address, and on its broadcast address too.

        A socket bound to a unicast address never sees broadcasts (Linux, BSD), so a
        daemon bound to one interface listens on that interface's broadcast address as
        well, the way nmbd does.
        """
        loop = asyncio.get_running_loop()
        hosts = [self.config.bind]
        if self.config.bind != "0.0.0.0" and self.broadcast != self.config.bind:
            hosts.append(self.broadcast)
        unicast = None
        for host in hosts:
            try:
                sock = _udp_socket(host, port)
            except OSError as exc:
                raise _listen_error(service, host, port, exc) from None
            port = sock.getsockname()[1]
            transport, protocol = await loop.create_datagram_endpoint(factory, sock=sock)
            self._udp.append(transport)
            # Answers go out from the unicast address: a reply from a socket bound to the
            # broadcast address would carry that as its source.
            unicast = unicast or transport
            protocol.transport = unicast
        return port

    async def deliver(self, event: MessageReceived, peer: str) -> bool:
        """Store a complete message, then hand it to the sinks.

        True once it is durable and may be acknowledged to its sender; False when it
        could not be stored (the sender gets an error reply and can try again).
        """
        message = Message.from_wire(
            event.sender,
            event.recipient,
            event.text,
            path=event.path,
            peer=peer,
            codepage=self.config.codepage,
        )
        if self.inbox is not None:
            try:
                result = await self.inbox.store(message)
            except InboxError as exc:
                log.error("refused a message from %s: %s", peer, exc)
                return False
            if result.duplicate:
                log.debug("message from %s is a copy of #%d; not shown again", peer, result.id)
                return True
            message = StoredMessage.from_message(message, id=result.id)
        self.messages_received += 1
        self.fanout.dispatch(message)
        return True

    async def stop(self) -> None:
        """Close every listener and session, and let deliveries under way finish."""
        await self._sessions.stop()
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        for protocol in self._datagram_protocols:
            await protocol.close()
        self._datagram_protocols.clear()
        if self.inbox is not None:
            await self.inbox.aclose()
        await self.fanout.drain()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once stop() has run."""
        await self._stopped.wait()


def _udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # No SO_REUSEADDR: on Linux it would let us share a UDP port with nmbd silently.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
