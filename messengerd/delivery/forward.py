"""The forward sink: passes each message on to another messenger host, by alias.

LAN Manager's `net forward NAME TARGET` moved the alias itself to the other machine, so
senders reached it there directly and the message arrived as sent. messengerd cannot move
a name, so it relays: it sends the message on with messengerd.sender (NetMessageBufferSend)
keeping the original From name (the other machine shows whom the message is from, as it did
under LAN Manager) and the text as it came: the original OEM bytes when the code page is
the same, so nothing is lost to decoding. The To name is the sink's `to`, or the original
recipient; the host is the sink's `host`, or, without one, whoever answers a broadcast name
query for `to`.

A text longer than a session takes (sender.MAX_SESSION_TEXT_BYTES; only a mailslot or RPC
message can be) goes as several messages, in order, each at most that long.

A relay that points back here cannot loop for long: the copy arrives with the same From,
To and text within the inbox's DUPLICATE_WINDOW, is stored as a duplicate, and is not
handed to the sinks again. (With `--no-store` there is no such check: do not point two
messengerd without stores at each other.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.core.visible import visible_text
from messengerd.delivery import SINK_CONCURRENCY, SINK_QUEUE, SinkLimits
from messengerd.sender import MAX_SESSION_TEXT_BYTES, VIAS, send_message
from messengerd.wire.text import check_codepage

log = logging.getLogger(__name__)

FORWARD_TIMEOUT = 20.0
"""Seconds one forward may take (name query, session setup and the message's blocks)
before it is given up; below the Fanout's SINK_TIMEOUT (30 s) so this is what is logged."""


class ForwardSink:
    """Sends every message on to alias `to` (default: the original recipient) at `host`."""

    def __init__(
        self,
        host: str | None = None,
        *,
        name: str = "forward",
        to: str | None = None,
        fromname: str | None = None,
        via: str = "auto",
        port: int | None = None,
        datagram_port: int | None = None,
        name_port: int | None = None,
        broadcast: str | None = None,
        codepage: str | None = None,
        timeout: float = FORWARD_TIMEOUT,
        concurrency: int = SINK_CONCURRENCY,
        queue: int = SINK_QUEUE,
    ) -> None:
        """ValueError for a `via` the sender lacks, an unknown code page, or neither `host`
        nor `to` (a name query for the original recipient would find this host).
        `concurrency`: forwards (connections) at once; `queue`: messages waiting for one."""
        if host is None and to is None:
            raise ValueError("a forward sink needs a host, or a `to` alias to look up")
        if via not in VIAS:
            raise ValueError(f"via {via!r} is not one of {', '.join(VIAS)}")
        self.name = name
        self.host = host
        self.to = to
        self.fromname = fromname
        self.via = via
        self.codepage = None if codepage is None else check_codepage(codepage)
        self.timeout = timeout
        self.limits = SinkLimits(concurrency, queue)
        # Only what the settings give; the sender's own defaults stand for the rest.
        self.options = {
            key: value
            for key, value in (
                ("port", port),
                ("datagram_port", datagram_port),
                ("name_port", name_port),
                ("broadcast", broadcast),
            )
            if value is not None
        }

    def pieces(self, message: Message) -> list[str | bytes]:
        """What goes out for `message`: its OEM bytes (or text), split to fit a session."""
        raw = message.raw.rstrip(b"\x00")
        same_codepage = self.codepage in (None, message.codepage)
        body: str | bytes = raw if raw and same_codepage and b"\x00" not in raw else message.text
        if self.via == "mailslot" or isinstance(body, str):
            # The mailslot takes up to 4095 bytes; text the sender encodes itself, and its
            # bounds check names the problem should that be too long.
            return [body]
        step = MAX_SESSION_TEXT_BYTES
        return [body[start : start + step] for start in range(0, len(body), step)] or [body]

    async def deliver(self, message: Message) -> None:
        msgname = self.to or message.recipient
        # For the log: the recipient is the sender's text, controls and all.
        where = visible_text(f"{msgname} at {self.host or 'the address its name query finds'}")
        arguments: dict[str, Any] = {
            "fromname": self.fromname or message.sender,
            "via": self.via,
            "host": self.host,
            "codepage": self.codepage or message.codepage,
            "timeout": self.timeout,
            **self.options,
        }
        try:
            async with asyncio.timeout(self.timeout):
                for piece in self.pieces(message):
                    await send_message(msgname, piece, **arguments)
        except TimeoutError:
            log.error(
                "%s: forwarding to %s took over %g s; given up",
                self.name,
                where,
                self.timeout,
            )
        except NetError as exc:
            log.error("%s: cannot forward to %s: %s", self.name, where, visible_text(str(exc)))
        else:
            sender = visible_text(message.sender)
            log.info("%s: forwarded a message from %s to %s", self.name, sender, where)
