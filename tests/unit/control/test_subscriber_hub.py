"""The subscriber hub: every subscriber gets every message; a laggard loses only its own
oldest messages, counted, and holds up neither the daemon nor the other subscribers."""

from __future__ import annotations

import asyncio
import logging

import pytest

from messengerd.control.hub import SubscriberHub, TooManySubscribers
from messengerd.core.message import Message


def message(text: str) -> Message:
    return Message("UPS", "BOB", text, "mailslot", "192.0.2.9:138")


@pytest.mark.asyncio
async def test_every_subscriber_gets_every_message_in_order():
    hub = SubscriberHub()
    tray, follower = hub.subscribe(), hub.subscribe()
    for index in range(3):
        await hub.deliver(message(f"alert {index}"))
    for subscription in (tray, follower):
        assert [(await subscription.get()).text for _ in range(3)] == [
            "alert 0",
            "alert 1",
            "alert 2",
        ]
        assert subscription.dropped == 0


@pytest.mark.asyncio
async def test_a_waiting_subscriber_wakes_when_a_message_arrives():
    hub = SubscriberHub()
    subscription = hub.subscribe()
    waiting = asyncio.create_task(subscription.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    await hub.deliver(message("On battery power"))
    assert (await asyncio.wait_for(waiting, 10)).text == "On battery power"


@pytest.mark.asyncio
async def test_a_lagging_subscriber_drops_its_oldest_and_counts_them(caplog):
    hub = SubscriberHub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    received = []
    with caplog.at_level(logging.WARNING, logger="messengerd.control.hub"):
        for index in range(10):
            await hub.deliver(message(f"alert {index}"))
            received.append((await fast.get()).text)
    assert received == [f"alert {index}" for index in range(10)]
    assert fast.dropped == 0
    assert slow.pending() == 3
    assert slow.dropped == 7
    assert [(await slow.get()).text for _ in range(3)] == ["alert 7", "alert 8", "alert 9"]
    assert "a notification subscriber lags: 1 message(s) dropped" in caplog.text


@pytest.mark.asyncio
async def test_each_loss_is_told_once_with_the_message_after_it():
    hub = SubscriberHub(queue_size=3)
    subscription = hub.subscribe()

    async def next_one() -> tuple[int, str]:
        dropped, taken = await subscription.get_with_dropped()
        return dropped, taken.text

    for index in range(5):
        await hub.deliver(message(f"alert {index}"))
    assert await next_one() == (2, "alert 2")
    assert await next_one() == (0, "alert 3")
    for index in range(5, 8):
        await hub.deliver(message(f"alert {index}"))
    assert [await next_one() for _ in range(3)] == [(1, "alert 5"), (0, "alert 6"), (0, "alert 7")]
    assert subscription.dropped == 3


@pytest.mark.asyncio
async def test_a_subscriber_joins_at_now_not_the_past():
    hub = SubscriberHub()
    await hub.deliver(message("before"))
    subscription = hub.subscribe()
    await hub.deliver(message("after"))
    assert (await subscription.get()).text == "after"
    assert subscription.pending() == 0


@pytest.mark.asyncio
async def test_closing_ends_iteration_after_what_is_queued():
    hub = SubscriberHub()
    with hub.subscribe() as subscription:
        await hub.deliver(message("one"))
        await hub.deliver(message("two"))
        reader = asyncio.create_task(_texts(subscription))
        await asyncio.sleep(0)
    await hub.deliver(message("after close"))
    assert await asyncio.wait_for(reader, 10) == ["one", "two"]
    assert hub.subscribers == 0
    with pytest.raises(EOFError):
        await subscription.get()


async def _texts(subscription) -> list[str]:
    return [message.text async for message in subscription]


@pytest.mark.asyncio
async def test_hub_close_ends_every_subscription():
    hub = SubscriberHub()
    readers = [asyncio.create_task(_texts(hub.subscribe())) for _ in range(3)]
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(asyncio.gather(*readers), 10) == [[], [], []]


def test_subscribers_are_bounded():
    hub = SubscriberHub(max_subscribers=2)
    hub.subscribe()
    second = hub.subscribe()
    with pytest.raises(TooManySubscribers):
        hub.subscribe()
    second.close()
    hub.subscribe()
    assert hub.subscribers == 2


def test_a_queue_size_below_one_is_refused():
    with pytest.raises(ValueError, match="1 or more"):
        SubscriberHub(queue_size=0)
