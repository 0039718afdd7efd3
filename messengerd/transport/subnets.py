"""Our names on every subnet: a registration, refresh, defence and release per interface.

A B node's broadcasts reach its own subnet only (RFC 1002 §5.1.1), so a host on two
networks (a LAN and a VPN, two NICs) registers its names on each, as nmbd does per
`interfaces` entry and Windows' NetBT per adapter. Each subnet has its own registration
machine (messengerd.protocol.registration, run by transport.registration) sending to that
subnet's broadcast address, and its own name service view: a query or registration that
came in on a subnet is answered with that subnet's address, and only for the names held
there. With the default bind (0.0.0.0) the subnets are the interfaces that broadcast, and
are looked at again every INTERFACE_POLL_INTERVAL seconds, so an interface that comes up (a
VPN, DHCP) gets our names and one that goes is forgotten, without a restart.

A conflict is per subnet: another node holding a name on one subnet takes it there only.
NetMessageNameAdd is the exception, and is all-or-nothing: its caller gets one answer, and
"added" while some subnet's node holds the name would send that subnet's `net send NAME` to
the other node while the caller believes the alias works; so an add that any subnet objects
to fails with NERR_DuplicateName and is released where it had succeeded (what Windows'
Messenger did across its LANAs is not confirmed; this is the answer a caller can rely on).
At start, and on an interface that appears later, there is no caller to tell: the name is
dropped on the objecting subnet alone, logged, and shown by `names info` and `status`; only
a name no subnet accepts leaves the table.

A registration broadcast that cannot be sent (no route: "Network is unreachable") is not a
registration: the name is not answered for on that subnet, and the log says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from messengerd.core import lmerr
from messengerd.core.aliases import AliasTable
from messengerd.core.lmerr import NetError
from messengerd.protocol.events import Directory
from messengerd.protocol.nameservice import NameService
from messengerd.protocol.registration import Registrar
from messengerd.transport.netif import Subnet, broadcast_subnets, select_subnets
from messengerd.transport.registration import RegistrationRunner
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import RegistrationResponse, WaitForAcknowledgement

log = logging.getLogger(__name__)

INTERFACE_POLL_INTERVAL = 10.0
"""Seconds between looks at the interfaces: a VPN that comes up has our names registered
on it within this, after its own 0.75 s of registration broadcasts. A look is two ioctls an
address (microseconds); nmbd looks every 2 minutes, which leaves a new VPN nameless longer."""

MAX_SUBNETS = 64
"""Subnets registered on at once; more addresses than this are left out (and logged): each
costs three broadcasts per name and a refresh."""

Send = Callable[[bytes, str], None]
"""Puts one name service packet on the wire to a broadcast address; must not block."""


def _bare(name: NetBIOSName) -> NetBIOSName:
    return NetBIOSName(name.name, name.suffix)


class _SubnetDirectory:
    """The alias table as one subnet sees it: the aliases held there, and the group names."""

    def __init__(self, aliases: AliasTable, held: set[NetBIOSName]) -> None:
        self.aliases = aliases
        self.held = held

    def is_local(self, name: NetBIOSName) -> bool:
        return _bare(name) in self.held and self.aliases.is_local(name)

    def is_group(self, name: NetBIOSName) -> bool:
        return self.aliases.is_group(name)

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        return [(n, g) for n, g in self.aliases.name_table() if g or _bare(n) in self.held]


@dataclass
class _Registered:
    """One subnet's registrations: its runner, its name service, what it holds and why not."""

    subnet: Subnet
    runner: RegistrationRunner
    service: NameService
    held: set[NetBIOSName] = field(default_factory=set)
    refused: dict[NetBIOSName, str] = field(default_factory=dict)
    """Names not ours on this subnet, and why (the owner that objected, or the send error)."""


class SubnetRegistrations:
    """Registers the alias table's names on every subnet and keeps them there.

    `subnets` is None to follow the broadcast interfaces (those `wanted` selects, as smb.conf's
    `interfaces`), polled every `poll_interval`; or a fixed list (a --bind address or a
    --broadcast given). `service_for` gives the name service for the subnet a packet came in
    on; `answer_received` takes every registration answer the name service sees.
    """

    def __init__(
        self,
        aliases: AliasTable,
        send: Send,
        make_service: Callable[[Directory], NameService],
        *,
        ttl: int,
        subnets: list[Subnet] | None = None,
        wanted: list[str] | None = None,
        poll_interval: float = INTERFACE_POLL_INTERVAL,
        codepage: str,
    ) -> None:
        self.aliases = aliases
        self.send = send
        self.make_service = make_service
        self.ttl = ttl
        self.fixed = subnets
        self.wanted = wanted or []
        self.poll_interval = poll_interval
        self.codepage = codepage
        self._subnets: dict[Subnet, _Registered] = {}
        self._elsewhere = make_service(_SubnetDirectory(aliases, set()))
        """For an address of ours on no subnet we register on (left out by `interfaces`,
        or come up since the last look): none of our aliases is registered there."""
        self._poller: asyncio.Task[None] | None = None
        self._changing = asyncio.Lock()

    # -- the life of it -------------------------------------------------------------------

    async def start(self) -> None:
        """Register every alias on every subnet there is; drop from the table only the names
        no subnet accepts. Then follow the interfaces, unless the subnets are fixed."""
        names = self.aliases.names()
        async with self._changing:
            await self._follow(self._find())
        for name in names:
            refusals = [r.refused[name] for r in self._subnets.values() if name in r.refused]
            if self._subnets and len(refusals) == len(self._subnets):
                self.aliases.remove(name)
                log.warning("%s dropped: not ours on any subnet (%s)", name, "; ".join(refusals))
        if self.fixed is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def close(self, *, release: bool = True) -> None:
        """Stop following the interfaces; release every name where it is held."""
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        await asyncio.gather(
            *(r.runner.close(release=release) for r in self._subnets.values()),
            return_exceptions=True,
        )
        self._subnets.clear()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                async with self._changing:
                    await self._follow(self._find())
            except Exception:
                log.exception("looking at the interfaces failed; trying again")

    def _find(self) -> list[Subnet]:
        if self.fixed is not None:
            return self.fixed
        found = select_subnets(broadcast_subnets(), self.wanted)
        if len(found) > MAX_SUBNETS:
            log.warning("%d subnets to register on; the first %d only", len(found), MAX_SUBNETS)
        return found[:MAX_SUBNETS]

    async def _follow(self, found: list[Subnet]) -> None:
        """Forget the subnets gone; register every alias on each new one."""
        for subnet in [s for s in self._subnets if s not in found]:
            gone = self._subnets.pop(subnet)
            # The address is gone with its interface: nothing to send a release from.
            await gone.runner.close(release=False)
            log.info("%s is gone: its names are no longer registered there", subnet.label())
        new = [subnet for subnet in found if subnet not in self._subnets]
        for subnet in new:
            self._subnets[subnet] = self._open(subnet)
            log.info("registering names on %s as %s", subnet.label(), subnet.address.ip)
        names = self.aliases.names()
        await asyncio.gather(
            *(self._register(self._subnets[s], name) for s in new for name in names)
        )

    def _open(self, subnet: Subnet) -> _Registered:
        registrar = Registrar(
            str(subnet.address.ip), ttl=self.ttl, first_trn_id=RegistrationRunner.random_trn_id()
        )
        held: set[NetBIOSName] = set()

        def send(data: bytes) -> None:
            self.send(data, subnet.broadcast)

        runner = RegistrationRunner(registrar, send, label=subnet.label())
        service = self.make_service(_SubnetDirectory(self.aliases, held))
        return _Registered(subnet, runner, service, held)

    async def _register(self, registered: _Registered, name: NetBIOSName) -> NetError | None:
        """Register `name` on one subnet; the error that stopped it there, or None."""
        name = _bare(name)
        registered.refused.pop(name, None)
        try:
            await registered.runner.register(name)
        except NetError as exc:
            registered.refused[name] = exc.detail
            log.warning("%s not registered on %s: %s", name, registered.subnet.label(), exc.detail)
            return exc
        registered.held.add(name)
        return None

    # -- NetMessageNameAdd and Del ----------------------------------------------------------

    async def add(self, alias: NetBIOSName) -> None:
        """Register a new alias on every subnet, all or nothing (see the module docstring).

        NetError NERR_DuplicateName when a node on any subnet holds it (released wherever it
        had been registered); NERR_NetworkError when no subnet could be sent to.
        """
        alias = _bare(alias)
        async with self._changing:
            subnets = list(self._subnets.values())
            errors = await asyncio.gather(*(self._register(r, alias) for r in subnets))
            conflicts = [e for e in errors if e is not None and e.code == lmerr.NERR_DuplicateName]
            unsent = [e for e in errors if e is not None and e.code != lmerr.NERR_DuplicateName]
            if conflicts or (subnets and len(unsent) == len(subnets)):
                for registered in subnets:
                    registered.refused.pop(alias, None)
                    if alias in registered.held:
                        registered.held.discard(alias)
                        registered.runner.release(alias)
                raise conflicts[0] if conflicts else unsent[0]

    def release(self, alias: NetBIOSName) -> None:
        """Give `alias` up on every subnet (NetMessageNameDel)."""
        alias = _bare(alias)
        for registered in self._subnets.values():
            registered.refused.pop(alias, None)
            if alias in registered.held:
                registered.held.discard(alias)
                registered.runner.release(alias)

    # -- for the name service ---------------------------------------------------------------

    def service_for(self, local_ip: str) -> NameService | None:
        """The name service of the subnet whose address is `local_ip`; for another address
        of ours one that answers for no alias; None for loopback (the whole table: this
        host asking itself)."""
        for subnet, registered in self._subnets.items():
            if str(subnet.address.ip) == local_ip:
                return registered.service
        with contextlib.suppress(ValueError):
            if ipaddress.IPv4Address(local_ip).is_loopback:
                return None
        return self._elsewhere

    def answer_received(
        self, response: RegistrationResponse | WaitForAcknowledgement, source: str
    ) -> None:
        """A registration answer from `source`: for the subnet it is on (each registrar
        ignores a NAME_TRN_ID not its own, so every subnet may be asked when none is)."""
        on = [r for s, r in self._subnets.items() if _contains(s, source)]
        for registered in on or list(self._subnets.values()):
            registered.runner.answer_received(response, source)

    # -- for status and names info ------------------------------------------------------------

    def report(self) -> list[dict[str, object]]:
        """Each subnet: its interface, address, broadcast, the names held and refused there."""
        return [
            {
                "interface": subnet.interface,
                "address": str(subnet.address),
                "broadcast": subnet.broadcast,
                "names": sorted(n.text(self.codepage) for n in registered.held),
                "not_registered": {
                    n.text(self.codepage): why for n, why in sorted(registered.refused.items())
                },
            }
            for subnet, registered in self._subnets.items()
        ]

    def where(self, alias: NetBIOSName) -> dict[str, list[str] | dict[str, str]]:
        """Where `alias` is registered, and where not and why: for `names info`."""
        alias = _bare(alias)
        return {
            "registered_on": [s.label() for s, r in self._subnets.items() if alias in r.held],
            "not_registered_on": {
                s.label(): r.refused[alias] for s, r in self._subnets.items() if alias in r.refused
            },
        }


def _contains(subnet: Subnet, address: str) -> bool:
    try:
        return ipaddress.IPv4Address(address) in subnet.address.network
    except ValueError:
        return False
