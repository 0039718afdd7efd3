"""The control channel's subscriber hub: how each `subscribe` connection (the attached
tray, `history --follow`) gets every new message. ControlServer owns one and feeds it as a
Sink; each `subscribe` connection reads its own Subscription.

Each subscriber gets its own bounded queue. A subscriber that falls behind loses its
oldest messages, counted in `dropped`, rather than making the daemon hold an unbounded
backlog, making other subscribers wait, or being cut off: every message is in the inbox
already (the daemon stores before it tells), so a lagging front end catches up from there
once it learns how many it lost (get_with_dropped(); the control channel's `dropped` event).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator

from messengerd.core.message import Message

log = logging.getLogger(__name__)

SUBSCRIBER_QUEUE = 100
"""Messages a subscriber (a `subscribe` connection) may have waiting before the oldest is
dropped: more than a person reads as popups, and a burst (a UPS alert storm) of this size
still all shows up without a catch-up from the inbox."""

MAX_SUBSCRIBERS = 64
"""Subscribers at once (tray icons, `history --follow` clients on the control channel)."""


class TooManySubscribers(Exception):
    """MAX_SUBSCRIBERS are attached already."""


class Subscription:
    """One subscriber's queue: `await get()`, or `async for message in subscription`."""

    def __init__(self, hub: SubscriberHub, maxsize: int) -> None:
        self.hub = hub
        self.maxsize = maxsize
        self.dropped = 0
        """Messages dropped because this subscriber lagged MAXSIZE behind."""
        self._told = 0
        self._messages: collections.deque[Message] = collections.deque()
        self._ready = asyncio.Event()
        self.closed = False

    def put(self, message: Message) -> None:
        """Queue `message`, dropping the oldest waiting one when the queue is full."""
        if len(self._messages) >= self.maxsize:
            self._messages.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % self.maxsize == 0:
                log.warning("a notification subscriber lags: %d message(s) dropped", self.dropped)
        self._messages.append(message)
        self._ready.set()

    def pending(self) -> int:
        """Messages waiting to be taken."""
        return len(self._messages)

    async def get(self) -> Message:
        """The next message, waiting for one; EOFError once closed and empty."""
        while not self._messages:
            if self.closed:
                raise EOFError("subscription closed")
            self._ready.clear()
            await self._ready.wait()
        return self._messages.popleft()

    async def get_with_dropped(self) -> tuple[int, Message]:
        """Messages dropped since the last call (all older than the one returned), and the
        next message; EOFError once closed and empty."""
        message = await self.get()
        # No await between the take and the count: a drop after it is of a newer message,
        # told with the next one.
        newly, self._told = self.dropped - self._told, self.dropped
        return newly, message

    def close(self) -> None:
        """Detach from the hub; get() returns what is queued, then raises EOFError."""
        if not self.closed:
            self.closed = True
            self.hub.unsubscribe(self)
            self._ready.set()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            try:
                yield await self.get()
            except EOFError:
                return

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SubscriberHub:
    """Hands each message to every subscriber's queue at once; never waits for one."""

    def __init__(
        self,
        *,
        name: str = "subscribers",
        queue_size: int = SUBSCRIBER_QUEUE,
        max_subscribers: int = MAX_SUBSCRIBERS,
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue size must be 1 or more, not {queue_size}")
        self.name = name
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self._subscribers: set[Subscription] = set()

    def subscribe(self, queue_size: int | None = None) -> Subscription:
        """A new subscription, fed every message from now on; TooManySubscribers if full.

        Call from the daemon's event loop thread (a tray on another thread uses
        `asyncio.run_coroutine_threadsafe(subscription.get(), loop)`).
        """
        if len(self._subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"{self.max_subscribers} subscribers attached already")
        subscription = Subscription(self, queue_size or self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop feeding `subscription` (Subscription.close() calls this)."""
        self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        """Subscriptions attached now."""
        return len(self._subscribers)

    async def deliver(self, message: Message) -> None:
        """Queue `message` for every subscriber (never waits for one)."""
        for subscription in list(self._subscribers):
            subscription.put(message)

    def close(self) -> None:
        """Close every subscription (at shutdown): their readers see the end."""
        for subscription in list(self._subscribers):
            subscription.close()
