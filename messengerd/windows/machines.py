"""The Machine API (HELPERS.md; protocol/events.py) over today's session and datagram machines.

Temporary, and the only place that knows the old shapes: the lead is rewriting
protocol/session.py and protocol/datagram.py to `receive_data` / `next_event` / `send`, with
an NCB framing mode in the session machine. Until that lands, the NCB backend drives these
adapters, which give it exactly that API. When it lands, `ncb_session()` becomes
`SessionMachine(directory, framing=NCB, called_name=alias)` and `mailslot_service()` the
DatagramService itself; nothing else in the backend changes.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

from messengerd.protocol.datagram import DatagramService
from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    CloseConnection,
    Directory,
    Dropped,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    SendData,
    Sentinel,
)
from messengerd.protocol.session import SessionMachine
from messengerd.wire import nbss
from messengerd.wire.names import NetBIOSName
from messengerd.wire.text import DEFAULT_CODEPAGE

Event = SendData | MessageReceived | CloseConnection | Dropped
E = TypeVar("E", Event, MessageReceived | Dropped)

NCB_CALLING_NAME = NetBIOSName(b"*NCB", 0x00)
"""The calling name put in the SESSION REQUEST that stands for NCBLISTEN's completion; the
machine only checks the called name."""


class _PausingQueue(Generic[E]):
    """Events handed out one by one; after a MessageReceived, PAUSED until answered."""

    def __init__(self) -> None:
        self._events: collections.deque[E] = collections.deque()
        self._paused = False

    def next_event(self) -> E | Sentinel:
        if self._paused:
            return PAUSED
        if not self._events:
            return NEED_DATA
        event = self._events.popleft()
        if isinstance(event, MessageReceived):
            self._paused = True
        return event


class NcbSession(_PausingQueue[Event]):
    """A session machine framed for NCBs: each receive_data() is one SMB without the NBSS
    header (one NCBRECV), and each SendData is one SMB for one NCBSEND."""

    def __init__(
        self, directory: Directory, called: NetBIOSName, *, codepage: str = DEFAULT_CODEPAGE
    ) -> None:
        super().__init__()
        self._machine = SessionMachine(directory, codepage=codepage)
        # NCBLISTEN completed a session to `called`: the machine hears the SESSION REQUEST
        # NetBT answered for us, and its positive response is NetBT's, not ours to send.
        for event in self._machine.receive_data(nbss.session_request(called, NCB_CALLING_NAME)):
            if not isinstance(event, SendData):
                self._events.append(event)

    def receive_data(self, data: bytes) -> None:
        """One whole SMB from one NCBRECV (the pieces of an NRC_INCOMP receive joined)."""
        self._take(self._machine.receive_data(nbss.session_message(data)))

    def send(self, answer: MessageAccepted | MessageRefused) -> bytes:
        """The reply SMB for the message last received, without the NBSS header."""
        if not self._paused:
            raise RuntimeError("no message is waiting for an answer")
        if isinstance(answer, MessageAccepted):
            reply = self._machine.message_stored()
        else:
            reply = self._machine.message_refused()
        self._paused = False
        self._take(self._machine.receive_data(b""))  # frames that waited behind it
        return reply[nbss.NBSS_HEADER_LENGTH :]

    def _take(self, events: list) -> None:
        for event in events:
            if isinstance(event, SendData):
                event = SendData(event.data[nbss.NBSS_HEADER_LENGTH :])
            self._events.append(event)


class MailslotService(_PausingQueue[MessageReceived | Dropped]):
    """The datagram service machine: one whole datagram in, its message or drop out."""

    def __init__(self, directory: Directory, *, codepage: str = DEFAULT_CODEPAGE) -> None:
        super().__init__()
        self._service = DatagramService(directory, codepage=codepage)

    def receive_data(self, data: bytes, source: tuple[str, int], now: float) -> None:
        self._events.extend(self._service.receive(data, peer=source, now=now))

    def send(self, answer: MessageAccepted | MessageRefused) -> bytes:
        """A mailslot message has no reply: b""."""
        self._paused = False
        return b""
