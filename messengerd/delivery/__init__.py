"""Sinks: where a stored message goes next. Each runs in its own task with its own timeout."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from messengerd.core.message import Message

log = logging.getLogger(__name__)

SINK_TIMEOUT = 30.0
"""Seconds a sink may take for one message before it is cancelled and logged."""


class Sink(Protocol):
    """Anything that takes a stored message: `async def deliver(message)`."""

    name: str

    async def deliver(self, message: Message) -> None: ...


class Fanout:
    """Hands each message to every sink at once; a slow or failing sink holds up nothing."""

    def __init__(self, sinks: list[Sink], timeout: float = SINK_TIMEOUT) -> None:
        self.sinks = sinks
        self.timeout = timeout
        self.tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, message: Message) -> None:
        """Start one task per sink for `message` and return at once."""
        for sink in self.sinks:
            task = asyncio.get_running_loop().create_task(self._run(sink, message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, sink: Sink, message: Message) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await sink.deliver(message)
        except TimeoutError:
            log.error("sink %s took over %.0f s for a message; cancelled", sink.name, self.timeout)
        except Exception:
            log.exception("sink %s failed on a message", sink.name)

    async def drain(self) -> None:
        """Wait for deliveries under way (at shutdown)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
