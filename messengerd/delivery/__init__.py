"""Sinks: where a stored message goes next, each with a bounded queue and concurrency.

The Fanout gives every sink a lane of its own: at most `concurrency` deliveries run at once,
each with its own timeout, and at most `queue` messages wait behind them. A message that
finds the queue full is not delivered to that sink, counted, and logged (summed up per
sink); the inbox has it all the same. So a slow sink delays no sender and no other sink,
and holds a bounded number of processes, connections and messages however fast messages
come.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass
from typing import Protocol

from messengerd.core.message import Message
from messengerd.core.ratelog import SummaryLog

log = logging.getLogger(__name__)

SINK_TIMEOUT = 30.0
"""Seconds a sink may take for one message before it is cancelled and logged."""

SINK_CONCURRENCY = 4
"""Deliveries one sink runs at once unless it says otherwise: a command sink's processes,
a forward sink's connections."""

SINK_QUEUE = 64
"""Messages waiting for a sink's delivery slots, unless it says otherwise; a burst past
this (a sink far slower than the senders) is dropped for that sink and counted."""

IN_PROCESS_SINK_QUEUE = 1024
"""The queue of a sink that says nothing about its limits: in-process sinks (the control
channel's subscribers, the test target's collector) take a message at once, but a burst
read in one go is queued before their first delivery runs."""

DRAIN_TIMEOUT = 10.0
"""Seconds stop() lets the sinks work through what is queued; then what is left is
cancelled (the inbox has it)."""


@dataclass(frozen=True)
class SinkLimits:
    """How much of a sink's work may be under way and waiting at once."""

    concurrency: int = SINK_CONCURRENCY
    queue: int = SINK_QUEUE

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.queue < 0:
            raise ValueError("concurrency must be 1 or more and queue 0 or more")


IN_PROCESS_LIMITS = SinkLimits(queue=IN_PROCESS_SINK_QUEUE)


class Sink(Protocol):
    """Anything that takes a stored message: `async def deliver(message)`.

    It may also have `limits` (SinkLimits; IN_PROCESS_LIMITS if not), `wants(message)`
    (False to skip a message before it takes a place in the queue), `dropped` (how many
    messages it dropped itself, e.g. the console's for a reader that is gone), and
    `async def aclose()`, awaited at stop.
    """

    name: str

    async def deliver(self, message: Message) -> None: ...


class _Lane:
    """One sink's deliveries: a bounded queue and at most `concurrency` tasks."""

    def __init__(self, sink: Sink, fanout: Fanout) -> None:
        self.sink = sink
        self.fanout = fanout
        self.limits: SinkLimits = getattr(sink, "limits", IN_PROCESS_LIMITS)
        self.waiting: collections.deque[Message] = collections.deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.overflowed = 0

    def offer(self, message: Message) -> None:
        if len(self.tasks) < self.limits.concurrency:
            task = asyncio.get_running_loop().create_task(self._work(message))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif len(self.waiting) < self.limits.queue:
            self.waiting.append(message)
        else:
            self.overflowed += 1
            self.fanout.summary.note(
                f"sink {self.sink.name}",
                "message not delivered",
                f"{self.limits.concurrency} deliveries under way and {self.limits.queue} "
                "waiting; the inbox has it",
            )

    async def _work(self, message: Message | None) -> None:
        """Deliver `message`, then whatever waits, until the queue is empty."""
        while message is not None:
            await self._deliver(message)
            message = self.waiting.popleft() if self.waiting else None

    async def _deliver(self, message: Message) -> None:
        name, timeout = self.sink.name, self.fanout.timeout
        try:
            async with asyncio.timeout(timeout):
                await self.sink.deliver(message)
        except TimeoutError:
            log.error("sink %s took over %.0f s for a message; cancelled", name, timeout)
        except Exception:
            log.exception("sink %s failed on a message", name)


class Fanout:
    """Hands each message to every sink's lane; a slow or failing sink holds up nothing."""

    def __init__(self, sinks: list[Sink], timeout: float = SINK_TIMEOUT) -> None:
        self.sinks = sinks
        self.timeout = timeout
        self.summary = SummaryLog(log)
        """Messages not delivered for a full queue, summed up per sink."""
        self._lanes: dict[int, _Lane] = {}

    def dispatch(self, message: Message) -> None:
        """Queue `message` for every sink that wants it and return at once."""
        for sink in self.sinks:
            wants = getattr(sink, "wants", None)
            if wants is not None and not wants(message):
                continue
            lane = self._lanes.get(id(sink))
            if lane is None or lane.sink is not sink:
                lane = self._lanes[id(sink)] = _Lane(sink, self)
            lane.offer(message)

    @property
    def tasks(self) -> set[asyncio.Task[None]]:
        """Deliveries under way."""
        return {task for lane in self._lanes.values() for task in lane.tasks}

    def overflowed(self) -> dict[str, int]:
        """Messages each sink did not get (its queue full, or dropped by the sink itself)."""
        counts: dict[str, int] = {}
        for sink in self.sinks:
            lane = self._lanes.get(id(sink))
            dropped = (lane.overflowed if lane is not None else 0) + getattr(sink, "dropped", 0)
            if dropped:
                counts[sink.name] = dropped
        return counts

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Let the deliveries under way and queued finish, for at most `timeout` seconds;
        then cancel the rest (at shutdown: the inbox has every message)."""
        tasks = self.tasks
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=timeout)
            left = sum(len(lane.waiting) for lane in self._lanes.values())
            for lane in self._lanes.values():
                lane.waiting.clear()
            for task in late:
                task.cancel()
            if late:
                await asyncio.gather(*late, return_exceptions=True)
                log.warning(
                    "stopped %d deliveries under way and %d waiting after %.0f s "
                    "(the inbox has every message)",
                    len(late),
                    left,
                    timeout,
                )
        for sink in self.sinks:
            aclose = getattr(sink, "aclose", None)
            if aclose is not None:
                await aclose()
        self.summary.flush()
