"""The NetBIOS API backend: receive as XP's Messenger service did, through Netbios() (§9).

Where Windows' NetBT holds UDP 137/138 and TCP 139, messengerd cannot bind them; instead it
asks NetBT, through the NetBIOS API, to add its aliases and hand it their sessions and
datagrams (PROTOCOL.md §9):

- NCBENUM for the LANAs (one per NetBT binding, i.e. per adapter), NCBRESET on each;
- NCBADDNAME `ALIAS<03>` on every LANA; a name another node or process holds fails the add
  with NERR_DuplicateName and is taken off the LANAs that had it (NetMessageNameAdd);
- an NCBLISTEN per alias per LANA; each session's NCBRECVs (one SMB message command each,
  without the NBSS header; NRC_INCOMP means the rest follows) feed a session machine,
  whose replies go back with NCBSEND; NCBHANGUP ends it;
- NCBDGRECV / NCBDGRECVBC for `\\MAILSLOT\\MESSNGR` datagrams, fed to the datagram service;
- NCBDELNAME when an alias is deleted, and for every alias at stop.

Every complete message is awaited through `accept(message, peer) -> Outcome`, the one way in
that the sockets transports use too. NetBT keeps answering name queries for names added
this way, so file sharing and this backend coexist. Microsoft documents Netbios() as not
supported after XP although netbios.sys still ships: every failure that means "this API
does not work here" says so in one line and points at the sockets backend.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
import logging
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field

from messengerd.core import limits, lmerr
from messengerd.core.lmerr import NetError
from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    Directory,
    Dropped,
    MessageReceived,
    SendData,
    answer_for,
)
from messengerd.protocol.session import Framing, SessionMachine
from messengerd.transport.session import Accept
from messengerd.windows import nb30
from messengerd.windows.netbios import NcbRunner, NetbiosApi
from messengerd.wire import datagram as wire_datagram
from messengerd.wire.errors import WireError
from messengerd.wire.names import NetBIOSName
from messengerd.wire.text import DEFAULT_CODEPAGE

log = logging.getLogger(__name__)


FALLBACK = (
    "the NetBIOS API backend is experimental (Microsoft documents Netbios() as unsupported "
    "after Windows XP): run without --backend netbios to use the sockets backend on an "
    "adapter where NetBIOS over TCP/IP is disabled (see `messengerd doctor`)"
)

SEND_TIMEOUT = 10.0
"""Seconds an NCBSEND of one reply may take before the session is given up (a reply is
under 100 bytes; a peer that takes none of it is gone)."""
SEND_TIMEOUT_UNITS = int(SEND_TIMEOUT / nb30.TIMEOUT_UNIT)
"""The same bound as ncb_sto for the sessions NCBLISTEN opens (500 ms units)."""
RETRY_DELAY = 1.0
"""Seconds before a failed NCBLISTEN or datagram receive is posted again."""
MAX_CONSECUTIVE_FAILURES = 10
"""Failed posts in a row after which a listen or datagram receive on a LANA is given up
(with an error line saying so), so a broken LANA costs ten log lines, not a busy loop."""
DATAGRAM_BUFFER_BYTES = limits.MAX_DATAGRAM_BYTES
"""Receive buffer of an NCBDGRECV: user data over this is truncated by NetBT (NRC_INCOMP)."""
SESSION_BUFFER_BYTES = limits.MAX_SESSION_FRAME
"""Receive buffer of an NCBRECV; one SMB longer than this arrives in pieces (NRC_INCOMP)."""
DUPLICATE_NAME_CODES = frozenset({nb30.NRC_DUPNAME, nb30.NRC_INUSE, nb30.NRC_NAMCONF})
"""NCBADDNAME results meaning someone else holds the name: NRC_DUPNAME, too, since our own
table refuses our duplicates before a LANA is asked, so another process on this host has it."""
DELETE_LATER = nb30.NRC_ACTSES
"""NCBDELNAME's answer for a name with open sessions: it goes when they end."""

_UNKNOWN_DESTINATION = NetBIOSName(b"", 0x00)
"""Destination name of a rebuilt datagram whose name NetBT did not say (NCBDGRECVBC): an
empty name that no directory holds, so the message's To field alone decides."""
_NO_ADDRESS = "0.0.0.0"
"""Source address of a rebuilt datagram: NCBDGRECV gives the sender's name, not its address."""


class NetbiosBackendError(Exception):
    """The backend cannot work on this host; the message says what to do, in one line."""


@dataclass
class Lana:
    """One LANA (a NetBT binding: one adapter) and the name numbers of our names on it."""

    number: int
    names: dict[NetBIOSName, int] = field(default_factory=dict)


class NetbiosBackend:
    """Our aliases on every LANA, their sessions and datagrams, through Netbios()."""

    def __init__(
        self,
        api: NetbiosApi,
        directory: Directory,
        accept: Accept,
        *,
        codepage: str = DEFAULT_CODEPAGE,
        max_sessions: int = limits.MAX_SESSIONS,
        idle_timeout: float = limits.SESSION_IDLE_TIMEOUT,
        receive_buffer: int = SESSION_BUFFER_BYTES,
    ) -> None:
        self.runner = NcbRunner(api)
        self.directory = directory
        self.accept = accept
        self.codepage = codepage
        self.max_sessions = max_sessions
        self.idle_timeout = idle_timeout
        self.receive_buffer = receive_buffer
        self._datagrams = DatagramService(directory, codepage=codepage)
        self.lanas: list[Lana] = []
        self.sessions = 0
        self._session_ended = asyncio.Condition()
        self._listeners: dict[NetBIOSName, list[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._datagram_ids = itertools.count()

    # -- start and stop ---------------------------------------------------------------------

    async def start(self, aliases: Iterable[NetBIOSName]) -> list[NetBIOSName]:
        """Enumerate and reset the LANAs, add `aliases`, listen; the aliases added.

        An alias another node or process holds is logged and left out, as the sockets path
        drops a name another node defends. NetbiosBackendError when the API does not work.
        """
        self.lanas = [Lana(number) for number in await self._enumerate()]
        if not self.lanas:
            raise NetbiosBackendError(
                "NCBENUM found no LANA (NetBIOS over TCP/IP is disabled on every adapter): "
                + FALLBACK
            )
        for lana in self.lanas:
            reset = nb30.new_ncb(nb30.NCBRESET, lana=lana.number)
            nb30.set_name(reset.ncb_callname, nb30.RESET_CALLNAME)
            code = await self.runner.call(reset)
            if code != nb30.NRC_GOODRET:
                raise NetbiosBackendError(
                    f"NCBRESET on LANA {lana.number} failed with "
                    f"{nb30.describe_return_code(code)}: {FALLBACK}"
                )
        added = []
        for alias in aliases:
            try:
                await self.add_name(alias)
            except NetError as exc:
                if exc.code not in (lmerr.NERR_DuplicateName, lmerr.NERR_AlreadyExists):
                    await self.stop()
                    raise NetbiosBackendError(
                        f"NCBADDNAME {alias} failed ({exc}): {FALLBACK}"
                    ) from None
                log.warning("%s dropped: %s", alias, exc)
            else:
                added.append(alias)
        for lana in self.lanas:
            self._spawn(self._receive_datagrams(lana, nb30.NCBDGRECV))
            self._spawn(self._receive_datagrams(lana, nb30.NCBDGRECVBC))
        log.info(
            "NetBIOS API backend (experimental) on LANA %s; aliases %s",
            ", ".join(str(lana.number) for lana in self.lanas),
            ", ".join(str(name) for name in added) or "(none)",
        )
        return added

    async def stop(self) -> None:
        """Cancel every pending NCB (each waits for its completion), then delete our names."""
        tasks = [*self._tasks, *itertools.chain.from_iterable(self._listeners.values())]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._listeners.clear()
        for lana in self.lanas:
            for name in list(lana.names):
                await self._delete_on(lana, name)

    async def _enumerate(self) -> list[int]:
        lanas = nb30.LANA_ENUM()
        ncb = nb30.new_ncb(nb30.NCBENUM)
        ncb.ncb_buffer = ctypes.addressof(lanas)
        ncb.ncb_length = ctypes.sizeof(lanas)
        code = await self.runner.call(ncb)
        if code != nb30.NRC_GOODRET:
            raise NetbiosBackendError(
                f"NCBENUM failed with {nb30.describe_return_code(code)}: {FALLBACK}"
            )
        return list(lanas.lana[: min(lanas.length, nb30.MAX_LANA + 1)])

    # -- names (NetMessageNameAdd / NetMessageNameDel) ---------------------------------------

    async def add_name(self, alias: NetBIOSName) -> None:
        """NCBADDNAME `alias` on every LANA and listen for it; all or nothing.

        NetError NERR_DuplicateName when another node or process holds it, or the mapped
        code of another failure; the LANAs that had added it delete it again.
        """
        done: list[Lana] = []
        for lana in self.lanas:
            ncb = nb30.new_ncb(nb30.NCBADDNAME, lana=lana.number)
            nb30.set_name(ncb.ncb_name, alias.to_bytes16())
            code = await self.runner.submit(ncb)
            if code != nb30.NRC_GOODRET:
                for other in done:
                    await self._delete_on(other, alias)
                net_code = (
                    lmerr.NERR_DuplicateName
                    if code in DUPLICATE_NAME_CODES
                    else nb30.net_error_code(code)
                )
                raise NetError(
                    net_code,
                    f"NCBADDNAME {alias} on LANA {lana.number}: {nb30.describe_return_code(code)}",
                )
            lana.names[alias] = ncb.ncb_num
            done.append(lana)
        self._listeners[alias] = [self._new_task(self._listen(lana, alias)) for lana in self.lanas]

    async def delete_name(self, alias: NetBIOSName) -> None:
        """Stop listening for `alias` and NCBDELNAME it on every LANA.

        NetError NERR_IncompleteDel when a LANA refused (the name may linger there).
        """
        listeners = self._listeners.pop(alias, [])
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
        failed = [
            f"LANA {lana.number}: {nb30.describe_return_code(code)}"
            for lana in self.lanas
            if alias in lana.names
            and (code := await self._delete_on(lana, alias)) not in (nb30.NRC_GOODRET, DELETE_LATER)
        ]
        if failed:
            raise NetError(lmerr.NERR_IncompleteDel, f"NCBDELNAME {alias}: " + "; ".join(failed))

    async def _delete_on(self, lana: Lana, alias: NetBIOSName) -> int:
        ncb = nb30.new_ncb(nb30.NCBDELNAME, lana=lana.number)
        nb30.set_name(ncb.ncb_name, alias.to_bytes16())
        code = await self.runner.submit(ncb)
        lana.names.pop(alias, None)
        if code == DELETE_LATER:
            log.info("%s on LANA %d goes once its sessions end", alias, lana.number)
        elif code != nb30.NRC_GOODRET:
            log.warning(
                "NCBDELNAME %s on LANA %d: %s", alias, lana.number, nb30.describe_return_code(code)
            )
        return code

    # -- sessions ---------------------------------------------------------------------------

    async def _listen(self, lana: Lana, alias: NetBIOSName) -> None:
        """Post NCBLISTEN for `alias` on `lana` again and again; serve each session it opens."""
        failures = 0
        while True:
            async with self._session_ended:
                await self._session_ended.wait_for(lambda: self.sessions < self.max_sessions)
            ncb = nb30.new_ncb(nb30.NCBLISTEN, lana=lana.number)
            nb30.set_name(ncb.ncb_name, alias.to_bytes16())
            nb30.set_name(ncb.ncb_callname, nb30.ANY_CALLER)
            ncb.ncb_sto = SEND_TIMEOUT_UNITS
            code = await self.runner.submit(ncb)
            if code == nb30.NRC_GOODRET:
                failures = 0
                caller = NetBIOSName.from_bytes16(nb30.get_name(ncb.ncb_callname))
                self.sessions += 1
                self._spawn(self._serve(lana, ncb.ncb_lsn, alias, caller))
                continue
            failures += 1
            if failures >= MAX_CONSECUTIVE_FAILURES:
                log.error(
                    "NCBLISTEN for %s on LANA %d failed %d times (%s); no longer listening "
                    "there: %s",
                    alias, lana.number, failures, nb30.describe_return_code(code), FALLBACK,
                )  # fmt: skip
                return
            log.warning(
                "NCBLISTEN for %s on LANA %d: %s", alias, lana.number,
                nb30.describe_return_code(code),
            )  # fmt: skip
            await asyncio.sleep(RETRY_DELAY)

    async def _serve(self, lana: Lana, lsn: int, alias: NetBIOSName, caller: NetBIOSName) -> None:
        """One session: NCBRECV each SMB into the machine, carry out its events, hang up."""
        peer = f"{caller} (LANA {lana.number})"
        machine = SessionMachine(
            self.directory, codepage=self.codepage, framing=Framing.NCB, called_name=alias
        )
        buffer = ctypes.create_string_buffer(self.receive_buffer)
        pending = bytearray()
        open_ = True
        try:
            open_ = await self._carry_out(machine, lana, lsn, peer)
            while open_:
                ncb = nb30.new_ncb(nb30.NCBRECV, lana=lana.number)
                ncb.ncb_lsn = lsn
                ncb.ncb_buffer = ctypes.addressof(buffer)
                ncb.ncb_length = self.receive_buffer
                code = await self.runner.submit(ncb, timeout=self.idle_timeout)
                if code in (nb30.NRC_GOODRET, nb30.NRC_INCOMP):
                    pending += buffer.raw[: ncb.ncb_length]
                    if len(pending) > limits.MAX_SESSION_FRAME:
                        log.info("session from %s closed: an SMB of over %d bytes", peer,
                                 limits.MAX_SESSION_FRAME)  # fmt: skip
                        break
                    if code == nb30.NRC_INCOMP:
                        continue  # the rest of this SMB comes with the next NCBRECV
                    machine.receive_data(bytes(pending))
                    pending.clear()
                    open_ = await self._carry_out(machine, lana, lsn, peer)
                elif code in (nb30.NRC_SCLOSED, nb30.NRC_SABORT):
                    open_ = False
                    log.debug("session from %s ended by the caller", peer)
                elif code in (nb30.NRC_CMDCAN, nb30.NRC_CMDTMO):
                    log.debug("session from %s idle for %.0f s; closing", peer, self.idle_timeout)
                    break
                else:
                    log.info("session from %s: NCBRECV %s", peer, nb30.describe_return_code(code))
                    break
        finally:
            if open_:
                await self._hang_up(lana, lsn)
            async with self._session_ended:
                self.sessions -= 1
                self._session_ended.notify_all()

    async def _carry_out(self, machine: SessionMachine, lana: Lana, lsn: int, peer: str) -> bool:
        """Do what the machine asks until it needs data; False once the session is over."""
        while True:
            event = machine.next_event()
            if event is NEED_DATA:
                return True
            if event is PAUSED:
                raise RuntimeError("session machine paused with no message to answer")
            if isinstance(event, SendData):
                if not await self._send(lana, lsn, event.data, peer):
                    return False
            elif isinstance(event, MessageReceived):
                reply = machine.send(answer_for(await self.accept(event, peer)))
                if reply and not await self._send(lana, lsn, reply, peer):
                    return False
            elif isinstance(event, CloseConnection):
                log.info("session from %s closed: %s", peer, event.reason)
                await self._hang_up(lana, lsn)
                return False
            elif isinstance(event, Dropped):
                log.info("session from %s: %s", peer, event.reason)

    async def _send(self, lana: Lana, lsn: int, data: bytes, peer: str) -> bool:
        buffer = ctypes.create_string_buffer(data, len(data))
        ncb = nb30.new_ncb(nb30.NCBSEND, lana=lana.number)
        ncb.ncb_lsn = lsn
        ncb.ncb_buffer = ctypes.addressof(buffer)
        ncb.ncb_length = len(data)
        code = await self.runner.submit(ncb, timeout=SEND_TIMEOUT)
        if code != nb30.NRC_GOODRET:
            log.info("session from %s: NCBSEND %s", peer, nb30.describe_return_code(code))
            return False
        return True

    async def _hang_up(self, lana: Lana, lsn: int) -> None:
        ncb = nb30.new_ncb(nb30.NCBHANGUP, lana=lana.number)
        ncb.ncb_lsn = lsn
        code = await self.runner.submit(ncb, timeout=SEND_TIMEOUT)
        if code not in (nb30.NRC_GOODRET, nb30.NRC_SNUMOUT, nb30.NRC_SCLOSED):
            log.debug("NCBHANGUP on LANA %d: %s", lana.number, nb30.describe_return_code(code))

    # -- datagrams --------------------------------------------------------------------------

    async def _receive_datagrams(self, lana: Lana, command: int) -> None:
        """Post NCBDGRECV (any of our names) or NCBDGRECVBC again and again."""
        buffer = ctypes.create_string_buffer(DATAGRAM_BUFFER_BYTES)
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            ncb = nb30.new_ncb(command, lana=lana.number)
            ncb.ncb_num = nb30.ANY_NAME_NUMBER
            ncb.ncb_buffer = ctypes.addressof(buffer)
            ncb.ncb_length = DATAGRAM_BUFFER_BYTES
            code = await self.runner.submit(ncb)
            if code == nb30.NRC_GOODRET:
                failures = 0
                await self._datagram(lana, ncb, buffer.raw[: ncb.ncb_length], loop.time())
                continue
            if code == nb30.NRC_INCOMP:
                log.info("datagram on LANA %d over %d bytes dropped (truncated by NetBT)",
                         lana.number, DATAGRAM_BUFFER_BYTES)  # fmt: skip
                continue
            failures += 1
            kind = nb30.COMMAND_NAMES[command]
            if failures >= MAX_CONSECUTIVE_FAILURES:
                log.error("%s on LANA %d failed %d times (%s); mailslot messages there are "
                          "no longer received: %s", kind, lana.number, failures,
                          nb30.describe_return_code(code), FALLBACK)  # fmt: skip
                return
            log.warning("%s on LANA %d: %s", kind, lana.number, nb30.describe_return_code(code))
            await asyncio.sleep(RETRY_DELAY)

    async def _datagram(self, lana: Lana, ncb: nb30.NCBStructure, data: bytes, now: float) -> None:
        """Feed one received datagram to the datagram service, rebuilt as NetBT received it.

        NCBDGRECV hands over the user data and the sender's name; the datagram service reads
        whole RFC 1002 datagrams, so the header NetBT consumed is put back around them.
        """
        source = NetBIOSName.from_bytes16(nb30.get_name(ncb.ncb_callname))
        broadcast = (ncb.ncb_command & ~nb30.ASYNCH) == nb30.NCBDGRECVBC
        destination = _UNKNOWN_DESTINATION
        if not broadcast:
            numbers = {number: name for name, number in lana.names.items()}
            destination = numbers.get(ncb.ncb_num, _UNKNOWN_DESTINATION)
        peer = f"{source} (LANA {lana.number})"
        try:
            whole = wire_datagram.build_datagram(
                data,
                source_name=source,
                destination_name=destination,
                source_ip=_NO_ADDRESS,
                datagram_id=next(self._datagram_ids) & 0xFFFF,
                msg_type=wire_datagram.BROADCAST if broadcast else wire_datagram.DIRECT_UNIQUE,
            )
        except WireError as exc:
            log.info("datagram from %s dropped: %s", peer, exc)
            return
        service = self._datagrams
        address = (_NO_ADDRESS, wire_datagram.NETBIOS_DATAGRAM_PORT)
        service.receive_data(whole, peer=address, now=now)
        while True:
            event = service.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, MessageReceived):
                # A mailslot write has no reply: what became of it is the daemon's business.
                await self.accept(event, peer)
            elif isinstance(event, Dropped):
                log.debug("datagram from %s dropped: %s", peer, event.reason)

    # -- tasks ------------------------------------------------------------------------------

    def _new_task(self, work: Awaitable[None]) -> asyncio.Task[None]:
        return asyncio.ensure_future(work)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = self._new_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("NetBIOS backend task failed", exc_info=task.exception())
