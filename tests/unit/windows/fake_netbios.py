"""A fake Netbios() and its events that behave as Microsoft documents them.

Sources (learn.microsoft.com, nb30.h): "Netbios function" and "NCB structure".
- Synchronous NCB: Netbios() returns the return code, also left in ncb_retcode.
- ASYNCH NCB: while pending, ncb_retcode and ncb_cmd_cplt are NRC_PENDING and Netbios()
  returns 0; the event (manual reset) is reset when the command is accepted and signalled
  when it completes, with both fields holding the final code. A command completed at once
  returns its code, as a synchronous one would.
- NCBENUM fills a LANA_ENUM (NRC_BUFLEN if ncb_length is smaller); a LANA not enumerated
  answers NRC_BRIDGE; commands before NCBRESET on a LANA answer NRC_ENVNOTDEF.
- NCBRESET cancels the LANA's pending commands (NRC_CMDCAN), drops its sessions and names.
- NCBADDNAME: NRC_DUPNAME if the name is in this LANA's table, NRC_INUSE if another node
  holds it, NRC_NAMTFUL when the table is full; ncb_num is set to the new name's number.
- NCBDELNAME: NRC_ACTSES while the name has sessions (deleted when they end).
- NCBLISTEN completes when a call arrives: ncb_lsn and ncb_callname are set.
- NCBRECV copies at most ncb_length bytes and sets ncb_length to the count; a message longer
  than the buffer completes NRC_INCOMP and the rest comes with the next NCBRECV. A session
  the caller ended completes receives with NRC_SCLOSED.
- NCBDGRECV (ncb_num 0xFF: any name) / NCBDGRECVBC: ncb_callname is the sender's name,
  ncb_num the name it was sent to; a longer datagram is truncated with NRC_INCOMP.
- NCBCANCEL (ncb_buffer -> the NCB): the target completes NRC_CMDCAN; NRC_CANOCCR if it had
  completed; NRC_CANCEL for commands that cannot be cancelled (NCBADDNAME, NCBDELNAME,
  NCBRESET); cancelling NCBSEND or NCBHANGUP ends the session.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field

from messengerd.windows import nb30

MAX_NAMES = 16
"""Names per LANA in this fake's table (NRC_NAMTFUL past it)."""


@dataclass
class FakeSession:
    lsn: int
    name: bytes
    caller: bytes
    incoming: deque[bytes] = field(default_factory=deque)
    sent: list[bytes] = field(default_factory=list)
    closed_by_caller: bool = False
    hung_up: bool = False
    partial: bytes = b""


@dataclass
class FakeLana:
    number: int
    reset_callname: bytes | None = None
    names: dict[bytes, int] = field(default_factory=dict)
    sessions: dict[int, FakeSession] = field(default_factory=dict)
    pending: list = field(default_factory=list)
    held_elsewhere: set[bytes] = field(default_factory=set)
    datagrams: deque[tuple[bytes, int, bytes, bool]] = field(default_factory=deque)


class FakeNetbios:
    """NetbiosApi for tests: LANAs, names, sessions and datagrams the test drives."""

    def __init__(self, lanas=(0,), *, reset_code: int = nb30.NRC_GOODRET) -> None:
        self.lanas = {number: FakeLana(number) for number in lanas}
        self.reset_code = reset_code
        self.add_code: dict[int, int] = {}
        """LANA -> a code NCBADDNAME answers there (e.g. NRC_SYSTEM)."""
        self.calls: list[tuple[str, int, bytes]] = []
        """(command, lana, name) of every NCB submitted, for assertions."""
        self._lock = threading.RLock()
        self._events: dict[int, threading.Event] = {}
        self._handles = itertools.count(0x100, 4)
        self._lsns = itertools.count(1)
        self._name_numbers = itertools.count(2)  # name number 1 is the permanent name

    # -- the NetbiosApi seam ----------------------------------------------------------------

    def create_event(self) -> int:
        handle = next(self._handles)
        self._events[handle] = threading.Event()
        return handle

    def wait(self, event: int, timeout: float | None) -> bool:
        return self._events[event].wait(timeout)

    def close_event(self, event: int) -> None:
        del self._events[event]

    @property
    def open_events(self) -> int:
        return len(self._events)

    def netbios(self, ncb) -> int:
        with self._lock:
            command = ncb.ncb_command & ~nb30.ASYNCH
            self.calls.append(
                (nb30.COMMAND_NAMES.get(command, hex(command)), ncb.ncb_lana_num,
                 bytes(ncb.ncb_name))
            )  # fmt: skip
            if command == nb30.NCBENUM:
                return self._finish_sync(ncb, self._enum(ncb))
            lana = self.lanas.get(ncb.ncb_lana_num)
            if lana is None:
                return self._finish_sync(ncb, nb30.NRC_BRIDGE)
            if command == nb30.NCBRESET:
                return self._finish_sync(ncb, self._reset(lana, ncb))
            if command == nb30.NCBCANCEL:
                return self._finish_sync(ncb, self._cancel(lana, ncb))
            if lana.reset_callname is None:
                return self._finish_sync(ncb, nb30.NRC_ENVNOTDEF)
            if not ncb.ncb_command & nb30.ASYNCH:
                raise AssertionError("the backend submits every other command ASYNCH")
            ncb.ncb_retcode = ncb.ncb_cmd_cplt = nb30.NRC_PENDING
            self._events[ncb.ncb_event].clear()
            lana.pending.append(ncb)
            self._progress(lana)
            return nb30.NRC_GOODRET

    # -- what the network does --------------------------------------------------------------

    def hold_elsewhere(self, name16: bytes, lanas=None) -> None:
        """Another node holds `name16`: NCBADDNAME of it answers NRC_INUSE."""
        for lana in self.lanas.values():
            if lanas is None or lana.number in lanas:
                lana.held_elsewhere.add(name16)

    def call(self, lana: int, name16: bytes, caller16: bytes) -> int | None:
        """A caller opens a session to `name16`: the lsn, or None if nobody listens."""
        with self._lock:
            target = self.lanas[lana]
            for ncb in target.pending:
                if (
                    ncb.ncb_command & ~nb30.ASYNCH == nb30.NCBLISTEN
                    and bytes(ncb.ncb_name) == name16
                ):
                    lsn = next(self._lsns)
                    target.sessions[lsn] = FakeSession(lsn, name16, caller16)
                    ncb.ncb_lsn = lsn
                    nb30.set_name(ncb.ncb_callname, caller16)
                    self._complete(target, ncb, nb30.NRC_GOODRET)
                    return lsn
            return None

    def send_on_session(self, lana: int, lsn: int, message: bytes) -> None:
        """The caller sends one session message (one SMB)."""
        with self._lock:
            target = self.lanas[lana]
            target.sessions[lsn].incoming.append(message)
            self._progress(target)

    def caller_hangs_up(self, lana: int, lsn: int) -> None:
        with self._lock:
            target = self.lanas[lana]
            target.sessions[lsn].closed_by_caller = True
            self._progress(target)

    def datagram(self, lana: int, source16: bytes, name16: bytes | None, data: bytes) -> None:
        """A datagram arrives for `name16` (a name added on `lana`), or broadcast (None)."""
        with self._lock:
            target = self.lanas[lana]
            number = target.names.get(name16, 0) if name16 is not None else 0
            target.datagrams.append((source16, number, data, name16 is None))
            self._progress(target)

    def session(self, lana: int, lsn: int) -> FakeSession:
        return self.lanas[lana].sessions[lsn]

    def pending(self, lana: int, command: int) -> int:
        with self._lock:
            return sum(
                1 for ncb in self.lanas[lana].pending if ncb.ncb_command & ~nb30.ASYNCH == command
            )

    # -- the driver -------------------------------------------------------------------------

    @staticmethod
    def _finish_sync(ncb, code: int) -> int:
        ncb.ncb_retcode = ncb.ncb_cmd_cplt = code
        return code

    def _complete(self, lana: FakeLana, ncb, code: int) -> None:
        lana.pending.remove(ncb)
        ncb.ncb_retcode = ncb.ncb_cmd_cplt = code
        self._events[ncb.ncb_event].set()

    def _enum(self, ncb) -> int:
        if ncb.ncb_length < ctypes.sizeof(nb30.LANA_ENUM):
            return nb30.NRC_BUFLEN
        answer = nb30.LANA_ENUM.from_address(ncb.ncb_buffer)
        answer.length = len(self.lanas)
        for index, number in enumerate(self.lanas):
            answer.lana[index] = number
        return nb30.NRC_GOODRET

    def _reset(self, lana: FakeLana, ncb) -> int:
        if self.reset_code != nb30.NRC_GOODRET:
            return self.reset_code
        for pending in list(lana.pending):
            self._complete(lana, pending, nb30.NRC_CMDCAN)
        lana.names.clear()
        lana.sessions.clear()
        lana.reset_callname = bytes(ncb.ncb_callname)[:4]
        return nb30.NRC_GOODRET

    def _cancel(self, lana: FakeLana, ncb) -> int:
        target = next(
            (pending for pending in lana.pending if ctypes.addressof(pending) == ncb.ncb_buffer),
            None,
        )
        if target is None:
            return nb30.NRC_CANOCCR
        command = target.ncb_command & ~nb30.ASYNCH
        if command in (nb30.NCBADDNAME, nb30.NCBADDGRNAME, nb30.NCBDELNAME, nb30.NCBRESET):
            return nb30.NRC_CANCEL
        self._complete(lana, target, nb30.NRC_CMDCAN)
        if command in (nb30.NCBSEND, nb30.NCBHANGUP):
            self._end_session(lana, target.ncb_lsn)
        return nb30.NRC_GOODRET

    def _end_session(self, lana: FakeLana, lsn: int) -> None:
        session = lana.sessions.get(lsn)
        if session is not None:
            session.hung_up = True
        for pending in list(lana.pending):
            if pending.ncb_lsn == lsn and pending.ncb_command & ~nb30.ASYNCH == nb30.NCBRECV:
                self._complete(lana, pending, nb30.NRC_SCLOSED)

    def _progress(self, lana: FakeLana) -> None:
        """Complete every pending NCB that can complete now."""
        for ncb in list(lana.pending):
            if ncb not in lana.pending:
                continue
            command = ncb.ncb_command & ~nb30.ASYNCH
            handler = getattr(self, f"_{nb30.COMMAND_NAMES[command].lower()}", None)
            if handler is not None:
                handler(lana, ncb)

    def _ncbaddname(self, lana: FakeLana, ncb) -> None:
        name = bytes(ncb.ncb_name)
        if lana.number in self.add_code:
            self._complete(lana, ncb, self.add_code[lana.number])
        elif name in lana.names:
            self._complete(lana, ncb, nb30.NRC_DUPNAME)
        elif name in lana.held_elsewhere:
            self._complete(lana, ncb, nb30.NRC_INUSE)
        elif len(lana.names) >= MAX_NAMES:
            self._complete(lana, ncb, nb30.NRC_NAMTFUL)
        else:
            lana.names[name] = ncb.ncb_num = next(self._name_numbers)
            self._complete(lana, ncb, nb30.NRC_GOODRET)

    def _ncbdelname(self, lana: FakeLana, ncb) -> None:
        name = bytes(ncb.ncb_name)
        if name not in lana.names:
            self._complete(lana, ncb, nb30.NRC_NOWILD)
            return
        del lana.names[name]
        live = [s for s in lana.sessions.values() if s.name == name and not s.hung_up]
        self._complete(lana, ncb, nb30.NRC_ACTSES if live else nb30.NRC_GOODRET)

    def _ncbrecv(self, lana: FakeLana, ncb) -> None:
        session = lana.sessions.get(ncb.ncb_lsn)
        if session is None or session.hung_up:
            self._complete(lana, ncb, nb30.NRC_SNUMOUT)
            return
        message = session.partial or (session.incoming[0] if session.incoming else None)
        if message is None:
            if session.closed_by_caller:
                self._complete(lana, ncb, nb30.NRC_SCLOSED)
            return
        if not session.partial:
            session.incoming.popleft()
        room = ncb.ncb_length
        ctypes.memmove(ncb.ncb_buffer, message[:room], min(room, len(message)))
        ncb.ncb_length = min(room, len(message))
        session.partial = message[room:]
        self._complete(lana, ncb, nb30.NRC_INCOMP if session.partial else nb30.NRC_GOODRET)

    def _ncbsend(self, lana: FakeLana, ncb) -> None:
        session = lana.sessions.get(ncb.ncb_lsn)
        if session is None or session.hung_up or session.closed_by_caller:
            self._complete(lana, ncb, nb30.NRC_SCLOSED)
            return
        session.sent.append(ctypes.string_at(ncb.ncb_buffer, ncb.ncb_length))
        self._complete(lana, ncb, nb30.NRC_GOODRET)

    def _ncbhangup(self, lana: FakeLana, ncb) -> None:
        session = lana.sessions.get(ncb.ncb_lsn)
        if session is None or session.hung_up:
            self._complete(lana, ncb, nb30.NRC_SNUMOUT)
            return
        self._complete(lana, ncb, nb30.NRC_GOODRET)
        self._end_session(lana, ncb.ncb_lsn)

    def _ncbdgrecv(self, lana: FakeLana, ncb) -> None:
        self._deliver_datagram(lana, ncb, broadcast=False)

    def _ncbdgrecvbc(self, lana: FakeLana, ncb) -> None:
        self._deliver_datagram(lana, ncb, broadcast=True)

    def _deliver_datagram(self, lana: FakeLana, ncb, *, broadcast: bool) -> None:
        for index, (source, number, data, is_broadcast) in enumerate(lana.datagrams):
            if is_broadcast != broadcast:
                continue
            if not broadcast and ncb.ncb_num not in (nb30.ANY_NAME_NUMBER, number):
                continue
            del lana.datagrams[index]
            room = ncb.ncb_length
            ctypes.memmove(ncb.ncb_buffer, data[:room], min(room, len(data)))
            ncb.ncb_length = min(room, len(data))
            nb30.set_name(ncb.ncb_callname, source)
            ncb.ncb_num = number
            self._complete(lana, ncb, nb30.NRC_INCOMP if len(data) > room else nb30.NRC_GOODRET)
            return
