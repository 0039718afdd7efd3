"""What many tests share: a fake Directory and the loop that drives a protocol machine.

Every machine has h11's shape (messengerd.protocol.events): input in, then events out of
`next_event()` until NEED_DATA or PAUSED. These helpers are that loop, written once.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from messengerd.protocol.events import (
    NEED_DATA,
    PAUSED,
    MessageAccepted,
    MessageReceived,
    MessageRefused,
    SendData,
)
from messengerd.wire.names import NetBIOSName


class Names:
    """A Directory holding fixed unique names and group names."""

    def __init__(
        self, local: Iterable[NetBIOSName] = (), groups: Iterable[NetBIOSName] = ()
    ) -> None:
        self.local = list(local)
        self.groups = list(groups)

    def is_local(self, name: NetBIOSName) -> bool:
        return name in self.local

    def is_group(self, name: NetBIOSName) -> bool:
        return name in self.groups

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        return [(name, False) for name in self.local] + [(name, True) for name in self.groups]


def drain(machine: Any) -> list[Any]:
    """Every event the machine has now, up to NEED_DATA or PAUSED."""
    events = []
    while True:
        event = machine.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        events.append(event)


def take(machine: Any, data: bytes, **options: Any) -> list[Any]:
    """Feed `data` (with the machine's `options`, e.g. a datagram's source), then drain."""
    machine.receive_data(data, **options)
    return drain(machine)


def converse(
    machine: Any, data: bytes, answer: MessageAccepted | MessageRefused | None = None
) -> list[Any]:
    """Feed `data` to a session machine and answer every message it completes with
    `answer` (accepted unless told): the events, each message's reply as a SendData."""
    answer = answer or MessageAccepted()
    events = take(machine, data)
    out: list[Any] = []
    while events:
        out += events
        if not isinstance(events[-1], MessageReceived) or not machine.message_pending:
            break
        out.append(SendData(machine.send(answer)))
        events = drain(machine)
    return out


def replies(events: Iterable[Any]) -> list[bytes]:
    """The bytes of every SendData among `events`."""
    return [event.data for event in events if isinstance(event, SendData)]


def messages(events: Iterable[Any]) -> list[MessageReceived]:
    """The completed messages among `events`."""
    return [event for event in events if isinstance(event, MessageReceived)]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 listens on now (TCP unless told)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def reply_to(
    service: Any, data: bytes, *, local_ip: str, source: str | tuple[str, int] = "192.0.2.99"
) -> bytes | None:
    """The name service's reply to one datagram from `source`; None when it stays silent."""
    address = source if isinstance(source, tuple) else (source, 137)
    sent = replies(take(service, data, source=address, local_ip=local_ip))
    assert len(sent) <= 1, sent
    return sent[0] if sent else None
