"""The daemon: owns the listeners, the alias table and the delivery of every message.

The alias table at start is the stored one (aliases.json in the data directory) plus the
configured aliases (`--alias`, or the host name and user by default), as Windows registered
the computer and user names at every start and kept nothing else. Every name is registered
on each subnet before it is answered for there (transport/subnets.py: every broadcasting
interface with the default bind); one another node holds is dropped on that subnet, and
from the table only when no subnet accepts it. The table as it then stands is stored
again, and after every add and delete.

The listeners open before the names are registered (a taken port is reported before
anything is broadcast), and a message to a name being registered is taken: the session and
datagram services count the table's names as ours from the start (and those being added,
_Receiving), the name service of a subnet only once no other node there has objected. So a
restart refuses no sender during the registration's 0.75 s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from messengerd import __version__
from messengerd.config.options import DaemonConfig
from messengerd.control.protocol import ControlError
from messengerd.control.server import ControlServer
from messengerd.core import datadir, lmerr
from messengerd.core.aliases import (
    MAX_PREFERRED_LENGTH,
    AliasTable,
    EnumResult,
    MessageInfo,
    load_aliases,
    save_aliases,
)
from messengerd.core.limits import MAX_SESSIONS
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message, Outcome
from messengerd.core.policy import Policy, Reason
from messengerd.core.ratelog import SummaryLog
from messengerd.core.store.inbox import DATABASE_NAME, DiskFull, Inbox, InboxError, StoredMessage
from messengerd.delivery import Fanout, Sink
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import Directory, MessageReceived
from messengerd.protocol.nameservice import NameService
from messengerd.protocol.rpc import RpcServer
from messengerd.transport.fds import OPEN_FILES_WANTED, raise_open_file_limit, session_limit
from messengerd.transport.netif import (
    LOOPBACK_NETWORK,
    Subnet,
    broadcast_for,
    can_list_subnets,
    interfaces,
    local_address_for,
)
from messengerd.transport.rpc import RpcProtocol
from messengerd.transport.session import SessionListener
from messengerd.transport.sockets import ListenError, listen_error, open_udp
from messengerd.transport.subnets import SubnetRegistrations
from messengerd.transport.udp import DatagramServiceProtocol, NameServiceProtocol
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName, alias_name
from messengerd.wire.nbns import DEFAULT_TTL

if TYPE_CHECKING:
    from messengerd.windows.backend import NetbiosBackend
    from messengerd.windows.netbios import NetbiosApi

log = logging.getLogger(__name__)


class Hooks:
    """Where a receiver can be made to misbehave on purpose: the test target's faults
    (messengerd.testing) implement these; a plain Daemon has none."""

    async def before_store(self, message: Message) -> Outcome | None:
        """Called first for every complete message; an Outcome stops it there (not stored,
        not shown) and answers its sender; None lets it through. May take its time."""
        return None

    def refuses_session(self, name: NetBIOSName) -> bool:
        """True to answer a SESSION REQUEST for `name` "called name not present"."""
        return False


class _Receiving:
    """The alias table as the session and datagram services see it: with the names being
    registered (a message to one is taken, not refused, while the network is asked), less
    the names the hooks refuse a session. The name service sees the table itself."""

    def __init__(
        self,
        aliases: AliasTable,
        registering: set[NetBIOSName],
        refuses: Callable[[NetBIOSName], bool] | None = None,
    ) -> None:
        self.aliases = aliases
        self.registering = registering
        self.refuses = refuses

    def is_local(self, name: NetBIOSName) -> bool:
        if self.refuses is not None and self.refuses(name):
            return False
        return (
            self.aliases.is_local(name) or NetBIOSName(name.name, name.suffix) in self.registering
        )

    def is_group(self, name: NetBIOSName) -> bool:
        return self.aliases.is_group(name)

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        return self.aliases.name_table()


class Daemon:
    """One receiver: `await start()`, messages go to the sinks, `await stop()`.

    Raises NetError for a configured alias Windows would refuse, AliasFileError (a
    ValueError) for an unreadable aliases.json, ValueError for an unknown control mode,
    DataDirError when the data directory cannot be made, written or shared with the control
    group (messengerd.core.datadir).
    """

    def __init__(
        self,
        config: DaemonConfig,
        sinks: list[Sink] | None = None,
        *,
        policy: Policy | None = None,
        hooks: Hooks | None = None,
        netbios_api: NetbiosApi | None = None,
    ) -> None:
        """`netbios_api`: the Netbios() seam for backend "netbios" (default: netapi32's)."""
        if config.interfaces and (config.bind != "0.0.0.0" or config.broadcast is not None):
            raise ValueError(
                "--interface (interfaces) chooses among the interfaces of the default "
                "--bind 0.0.0.0: drop --bind and --broadcast, or --interface"
            )
        self.config = config
        self.policy = policy
        self.hooks = hooks
        group = datadir.ControlGroup.named(config.control_group) if config.control_group else None
        datadir.prepare(config.data_dir, group, [DATABASE_NAME] if config.store else [])
        self.aliases = _alias_table(config)
        self.fanout = Fanout(list(sinks or []))
        self.inbox = Inbox(config.data_dir, retention=config.retention) if config.store else None
        self.broadcast = config.broadcast or broadcast_for(config.bind)
        self.ports: dict[str, int] = {}
        self.messages_received = 0
        self.control = (
            ControlServer(self, config.data_dir, mode=config.control, group=group)
            if config.control != "none"
            else None
        )
        self.name_ttl = DEFAULT_TTL if config.name_ttl is None else config.name_ttl
        self._names = NameService(
            self.aliases, mac=uuid.getnode().to_bytes(6, "big"), ttl=self.name_ttl
        )
        self._name_protocol: NameServiceProtocol | None = None
        self._name_summary = SummaryLog(log)
        self._registrations: SubnetRegistrations | None = None
        self._registering: set[NetBIOSName] = set()
        """Names being added to the table now (add_alias), taken by the session and
        datagram services while the network is asked."""
        self._save_lock = asyncio.Lock()
        self._sessions = SessionListener(
            _Receiving(
                self.aliases,
                self._registering,
                hooks.refuses_session if hooks is not None else None,
            ),
            self.accept,
            codepage=config.codepage,
            idle_timeout=config.session_idle_timeout,
        )
        self._udp: list[asyncio.DatagramTransport] = []
        self._datagram_protocols: list[DatagramServiceProtocol] = []
        self._rpc_protocols: list[RpcProtocol] = []
        self._netbios_api = netbios_api
        self._netbios: NetbiosBackend | None = None
        self._stopped = asyncio.Event()
        self._started: tuple[datetime, float] | None = None

    def add_sink(self, sink: Sink) -> None:
        """Send every later message to `sink` too."""
        self.fanout.sinks.append(sink)

    async def start(self) -> None:
        """Open the listeners and the control channel, register the aliases, then serve.

        Raises ListenError (one line, actionable) if a port or the control address is taken,
        or the NetBIOS API backend cannot work here.
        """
        self._started = (datetime.now(UTC), time.monotonic())
        directory = self._sessions.directory
        self._sessions.max_sessions = session_limit(raise_open_file_limit())
        if self._sessions.max_sessions < MAX_SESSIONS:
            log.info(
                "at most %d sessions: the open-file limit leaves no room for more "
                "(raise LimitNOFILE or `ulimit -n` to %d for %d)",
                self._sessions.max_sessions,
                OPEN_FILES_WANTED,
                MAX_SESSIONS,
            )
        try:
            if self.control is not None:
                try:
                    await self.control.start()
                except ControlError as exc:
                    raise ListenError(str(exc)) from None
            if self.config.backend == "netbios":
                where = await self._start_netbios(directory)
            else:
                where = await self._start_sockets(directory)
            if self.config.rpc_port is not None:
                await self._open_rpc(directory, self.config.rpc_port)
                where += f", rpc {self.ports['rpc']}/udp"
            await self._save()
            if self.control is not None:
                self.fanout.sinks.append(self.control)
                await self.control.serve()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "listening %s; aliases %s%s",
            where,
            ", ".join(str(name) for name in self.aliases.names()) or "(none)",
            f"; control {self.control.address}" if self.control is not None else "",
        )

    async def _start_sockets(self, directory: Directory) -> str:
        """NetBIOS over TCP/IP of our own: UDP 137 and 138, TCP 139, B-node registration."""
        bind = self.config.bind
        self.ports["name"], names = await self._open_udp(
            "name",
            self.config.name_port,
            lambda: NameServiceProtocol(self._names, bind, self._name_summary),
        )
        self._name_protocol = names[0]
        for protocol in names[1:]:
            protocol.on_broadcast_address = True
        datagrams = DatagramService(
            _Receiving(self.aliases, self._registering), codepage=self.config.codepage
        )
        self.ports["datagram"], self._datagram_protocols = await self._open_udp(
            "datagram",
            self.config.datagram_port,
            lambda: DatagramServiceProtocol(datagrams, self.accept),
        )
        try:
            self.ports["session"] = await self._sessions.start(bind, self.config.session_port)
        except OSError as exc:
            raise listen_error("session", bind, self.config.session_port, exc) from None
        if self.config.register:
            self._registrations = SubnetRegistrations(
                self.aliases,
                self._send_name_broadcast,
                lambda directory: NameService(directory, mac=self._names.mac, ttl=self.name_ttl),
                ttl=self.name_ttl,
                subnets=self._fixed_subnets(),
                wanted=self.config.interfaces,
                codepage=self.config.codepage,
            )
            self._name_protocol.answer_received = self._registrations.answer_received
            self._name_protocol.service_for = self._registrations.service_for
            await self._registrations.start()
        return (
            f"on {bind}: name {self.ports['name']}/udp, datagram {self.ports['datagram']}/udp, "
            f"session {self.ports['session']}/tcp"
        )

    async def _start_netbios(self, directory: Directory) -> str:
        """The NetBIOS API backend (Windows, experimental): Windows' NetBT keeps the ports
        and hands us our names' sessions and datagrams (messengerd.windows.backend)."""
        from messengerd.windows.backend import NetbiosBackend, NetbiosBackendError
        from messengerd.windows.netbios import Netapi32, NetbiosUnavailable

        try:
            api = self._netbios_api or Netapi32()
        except NetbiosUnavailable as exc:
            raise ListenError(str(exc)) from None
        self._netbios = NetbiosBackend(api, directory, self.accept, codepage=self.config.codepage)
        # The names stay in the table while they are added, so a message to one is taken,
        # not refused; NetBT answers name queries for them. Those it could not add go.
        names = self.aliases.names()
        try:
            added = await self._netbios.start(names)
        except NetbiosBackendError as exc:
            raise ListenError(str(exc)) from None
        for name in set(names) - set(added):
            self.aliases.remove(name)
        lanas = ", ".join(str(lana.number) for lana in self._netbios.lanas)
        return f"through the NetBIOS API on LANA {lanas}"

    # -- names -----------------------------------------------------------------------------

    def _fixed_subnets(self) -> list[Subnet] | None:
        """The one subnet a --bind address or a --broadcast names; None to follow every
        broadcast interface (the default bind, where the interfaces can be listed)."""
        if self.config.bind == "0.0.0.0" and self.config.broadcast is None and can_list_subnets():
            return None
        address = self._registration_address()
        network = next(
            (iface for _, iface in interfaces() if str(iface.ip) == address),
            ipaddress.IPv4Interface(address),
        )
        return [Subnet("", network, self.broadcast)]

    def _registration_address(self) -> str:
        """The address our registrations claim: the one on the broadcast address's network."""
        if self.config.bind != "0.0.0.0":
            return self.config.bind
        found = interfaces()
        for _, iface in found:
            if str(iface.network.broadcast_address) == self.broadcast:
                return str(iface.ip)
        outside = [iface for _, iface in found if iface.ip not in LOOPBACK_NETWORK]
        if outside:
            return str(outside[0].ip)
        return local_address_for(self.broadcast)

    def _send_name_broadcast(self, data: bytes, broadcast: str) -> None:
        if self._name_protocol is None:
            raise OSError("the name service is not listening")
        self._name_protocol.send(data, (broadcast, self.ports["name"]))

    async def add_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameAdd: register `name` on the network, then add it to the table.

        NetError: the table's codes, or NERR_DuplicateName when another node holds the
        name (the table is then unchanged).
        """
        alias = self.aliases.check_add(name, self._registering)
        self._registering.add(alias)
        try:
            if self._netbios is not None:
                await self._netbios.add_name(alias)
            elif self._registrations is not None:
                await self._registrations.add(alias)
            try:
                self.aliases.add(name)
            except NetError:
                if self._netbios is not None:
                    await self._netbios.delete_name(alias)
                elif self._registrations is not None:
                    self._registrations.release(alias)
                raise
        finally:
            self._registering.discard(alias)
        await self._save()
        log.info("alias %s added", alias)
        return alias

    async def delete_alias(self, name: str) -> NetBIOSName:
        """NetMessageNameDel: take `name` out of the table and release it on the network."""
        alias = self.aliases.delete(name)
        if self._netbios is not None:
            await self._netbios.delete_name(alias)
        elif self._registrations is not None:
            self._registrations.release(alias)
        await self._save()
        log.info("alias %s deleted", alias)
        return alias

    async def _save(self) -> None:
        if not self.config.keep_aliases:
            return
        # One save at a time, each of the table as it is then: the last write is the newest.
        async with self._save_lock:
            names = self.aliases.texts()
            try:
                await asyncio.to_thread(save_aliases, self.config.data_dir, names)
            except OSError as exc:
                log.error("alias table not stored in %s: %s", self.config.data_dir, exc)

    async def status(self) -> dict[str, Any]:
        """What the control channel's `status` reports (control/protocol.py lists the keys)."""
        started_at, started = self._started or (None, time.monotonic())
        counters = {} if self.policy is None else self.policy.counters
        return {
            "pid": os.getpid(),
            "version": __version__,
            "bind": self.config.bind,
            "broadcast": self.broadcast,
            "ports": dict(self.ports),
            "aliases": self.aliases.texts(),
            "messages_received": self.messages_received,
            "data_dir": os.fspath(self.config.data_dir),
            "register": self.config.register,
            "started_at": None if started_at is None else started_at.isoformat(),
            "uptime": round(time.monotonic() - started, 3),
            "messages_allowed": counters.get(Reason.ALLOWED, 0),
            "refused": {
                str(reason): count for reason, count in counters.items() if reason != Reason.ALLOWED
            },
            "store": None if self.inbox is None else await asyncio.to_thread(self.inbox.usage),
            "sessions": len(self._sessions.sessions),
            "sink_overflow": self.fanout.overflowed(),
            "interfaces": None if self._registrations is None else self._registrations.report(),
        }

    async def _open_udp(self, service: str, port: int, factory: Any) -> tuple[int, list[Any]]:
        """Bind `service`'s UDP port on the bind address, and on its broadcast address too
        (messengerd.transport.sockets.open_udp); the port and the protocols."""
        hosts = [self.config.bind]
        if self.config.bind != "0.0.0.0" and self.broadcast != self.config.bind:
            hosts.append(self.broadcast)
        port, transports, protocols = await open_udp(service, hosts, port, factory)
        self._udp += transports
        return port, protocols

    async def _open_rpc(self, directory: Directory, port: int) -> None:
        """The RPC listener: one RpcServer for its sockets, made once the port is bound, since
        ept_map answers name it (transport/rpc.py)."""
        self.ports["rpc"], self._rpc_protocols = await self._open_udp(
            "rpc", port, lambda: RpcProtocol(self.accept)
        )
        server = RpcServer(
            directory,
            port=self.ports["rpc"],
            server_boot=int(time.time()),
            codepage=self.config.codepage,
        )
        for protocol in self._rpc_protocols:
            protocol.server = server

    async def accept(self, event: MessageReceived, peer: str) -> Outcome:
        """Take a complete message from `peer`: store it durably, then show it.

        Every transport awaits this and answers its sender from the Outcome: a message
        is acknowledged only once it is stored (DESIGN.md).
        """
        message = Message.from_wire(
            event.sender,
            event.recipient,
            event.text,
            path=event.path,
            peer=peer,
            codepage=self.config.codepage,
        )
        if self.hooks is not None:
            override = await self.hooks.before_store(message)
            if override is not None:
                return override
        if self.policy is not None:
            verdict = self.policy.check(message)
            if not verdict.allowed:
                await self._keep_refused(message)
                return Outcome("refused", reason=str(verdict.reason))
        if self.inbox is None:
            self._show(message)
            return Outcome("stored")
        try:
            stored = await self.inbox.store(message)
        except DiskFull as exc:
            # The inbox logs a full disk once, not once a message; each sender is told
            # "no room" and sends again.
            return Outcome("error", reason=str(exc))
        except InboxError as exc:
            log.error("refused a message from %s: %s", message.peer, exc)
            return Outcome("error", reason=str(exc))
        if stored.duplicate:
            log.debug("message from %s is a copy of #%d; not shown again", message.peer, stored.id)
            return Outcome("duplicate", id=stored.id)
        self._show(StoredMessage.from_message(message, id=stored.id))
        return Outcome("stored", id=stored.id)

    def _show(self, message: Message) -> None:
        self.messages_received += 1
        self.fanout.dispatch(message)

    async def _keep_refused(self, message: Message) -> None:
        """Store a message the policy refused when the policy says to (store_refused)."""
        assert self.policy is not None
        if self.policy.store_refused and self.inbox is not None:
            try:
                await self.inbox.store(message)
            except InboxError as exc:
                log.error("a refused message from %s not stored: %s", message.peer, exc)

    async def stop(self) -> None:
        """Release our names, close every listener and session, let deliveries finish."""
        if self.control is not None:
            await self.control.stop()
            if self.control in self.fanout.sinks:
                self.fanout.sinks.remove(self.control)
        await self._sessions.stop()
        if self._netbios is not None:
            await self._netbios.stop()
            self._netbios = None
        if self._registrations is not None:
            # Before the sockets close: the releases go out through them.
            await self._registrations.close(release=True)
            self._registrations = None
        self._name_protocol = None
        self._name_summary.flush()
        for transport in self._udp:
            transport.close()
        self._udp.clear()
        udp: list[DatagramServiceProtocol | RpcProtocol] = [
            *self._datagram_protocols,
            *self._rpc_protocols,
        ]
        for protocol in udp:
            await protocol.close()
        self._datagram_protocols.clear()
        self._rpc_protocols.clear()
        if self.inbox is not None:
            await self.inbox.aclose()
        if self.policy is not None:
            self.policy.flush_log()
        await self.fanout.drain()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        """Return once stop() has run."""
        await self._stopped.wait()

    # -- for front ends (the control channel, the in-process tray), beside add_alias,
    # delete_alias and status: they never reach into self.aliases themselves -------------

    @property
    def codepage(self) -> str:
        """The OEM code page alias names and message text are read in."""
        return self.config.codepage

    def enum_aliases(
        self, level: int = 0, prefmaxlen: int = MAX_PREFERRED_LENGTH, resume_handle: int = 0
    ) -> EnumResult:
        """NetMessageNameEnum: NetError ERROR_INVALID_LEVEL, or ERROR_INVALID_PARAMETER for
        a resume handle past the end. Safe from any thread (the table has its own lock)."""
        return self.aliases.enum(level, prefmaxlen, resume_handle)

    def alias_subnets(self, name: str) -> dict[str, Any] | None:
        """Where an alias in the table is registered, and where not and why (names info);
        None without registration by broadcast. NetError NERR_NotLocalName."""
        info = self.aliases.get_info(name, 0)
        if self._registrations is None:
            return None
        return self._registrations.where(alias_name(info.name, self.config.codepage))

    def alias_info(self, name: str, level: int = 0) -> MessageInfo:
        """NetMessageNameGetInfo: NetError ERROR_INVALID_LEVEL or NERR_NotLocalName."""
        return self.aliases.get_info(name, level)


def _alias_table(config: DaemonConfig) -> AliasTable:
    """The configured aliases, then the stored ones (those the table refuses are logged)."""
    stored = load_aliases(config.data_dir) if config.keep_aliases else []
    computer = _alias_or_none(config.computer_name, config.codepage)
    wanted = {_alias_or_none(name, config.codepage) for name in [*config.aliases, *stored]}
    table = AliasTable(
        config.aliases,
        # Protected when it is one of ours, as it is by default; never added for that alone.
        computer_name=config.computer_name if computer and computer in wanted else None,
        workgroups=config.workgroups,
        codepage=config.codepage,
    )
    for name in stored:
        try:
            table.add(name)
        except NetError as exc:
            if exc.code != lmerr.NERR_AlreadyExists:
                log.warning("stored alias %r skipped: %s", name, exc)
    return table


def _alias_or_none(text: str, codepage: str) -> NetBIOSName | None:
    try:
        return alias_name(text, codepage)
    except WireError:
        return None
