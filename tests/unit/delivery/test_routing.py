"""Per-alias routing: each alias's messages reach exactly the sinks routed to it, through
the Fanout, so routed sinks keep their isolation."""

from __future__ import annotations

import asyncio
import io
import json
import sys

import pytest

from messengerd.config.settings import parse_settings
from messengerd.core.message import Message
from messengerd.delivery import Fanout
from messengerd.delivery.command import MessageCommandSink
from messengerd.delivery.console import ConsoleSink
from messengerd.delivery.routing import SINK_TYPES, RoutedSink, Router, build_sinks, unwrap


class Recorder:
    """A sink that keeps what it is given."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.texts: list[str] = []

    async def deliver(self, message: Message) -> None:
        self.texts.append(message.text)


class Failing:
    name = "failing"

    async def deliver(self, message: Message) -> None:
        raise RuntimeError("this sink is broken")


def message(recipient: str, text: str | None = None) -> Message:
    return Message("UPS", recipient, text or f"to {recipient}", "session", "192.0.2.9:1025")


async def fan_out(sinks, *messages: Message) -> None:
    fanout = Fanout(sinks)
    for item in messages:
        fanout.dispatch(item)
    await fanout.drain()


def test_routes_pick_sinks_per_alias_ignoring_case_and_padding():
    router = Router({"ALERTS": ["popup"], "Jürgen": ["console", "popup"]}, default=["console"])
    assert router.sink_names("alerts") == {"popup"}
    assert router.sink_names("JÜRGEN ") == {"console", "popup"}
    assert router.sink_names("BOB") == {"console"}
    assert router.routes_to("popup", "Alerts")
    assert not router.routes_to("console", "ALERTS")


def test_without_a_default_unrouted_aliases_go_to_every_sink():
    router = Router({"ALERTS": ["popup"]})
    assert router.sink_names("BOB") is None
    assert router.routes_to("anything", "BOB")
    assert not router.routes_to("console", "ALERTS")


def test_no_routing_leaves_the_sinks_unwrapped():
    sinks = [Recorder("console"), Recorder("popup")]
    assert Router().apply(sinks) == sinks


def test_a_route_to_an_unknown_sink_is_an_error():
    with pytest.raises(ValueError, match="'pager'"):
        Router({"BOB": ["pager"]}).apply([Recorder("console")])


def test_routed_sinks_through_the_fanout_get_only_their_messages():
    console, popup, tray = Recorder("console"), Recorder("popup"), Recorder("tray")
    router = Router({"ALERTS": ["popup", "tray"]}, default=["console", "tray"])
    sinks = router.apply([console, popup, tray])
    assert all(isinstance(sink, RoutedSink) for sink in sinks)
    assert [sink.name for sink in sinks] == ["console", "popup", "tray"]
    asyncio.run(fan_out(sinks, message("ALERTS"), message("BOB"), message("alerts", "again")))
    assert console.texts == ["to BOB"]
    assert popup.texts == ["to ALERTS", "again"]
    assert tray.texts == ["to ALERTS", "to BOB", "again"]


def test_a_failing_routed_sink_stops_no_other(caplog):
    popup = Recorder("popup")
    sinks = Router({"ALERTS": ["failing", "popup"]}).apply([Failing(), popup])
    asyncio.run(fan_out(sinks, message("ALERTS")))
    assert popup.texts == ["to ALERTS"]
    assert "sink failing failed on a message" in caplog.text


def test_build_sinks_without_sinks_is_the_console():
    stream = io.StringIO()
    sinks = build_sinks(parse_settings("", sink_types=SINK_TYPES), json_lines=True, stream=stream)
    assert len(sinks) == 1 and isinstance(sinks[0], ConsoleSink)
    asyncio.run(fan_out(sinks, message("BOB", "Hi")))
    assert json.loads(stream.getvalue())["text"] == "Hi"


def test_build_sinks_makes_each_configured_sink_and_routes_them(tmp_path):
    out = tmp_path / "popup.txt"
    copy = "import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])"
    settings = parse_settings(
        f"""
        [[sink]]
        type = "console"
        name = "screen"

        [[sink]]
        type = "command"
        name = "popup"
        command = '{sys.executable} -c "{copy}" %s {out}'
        timeout = 10

        [routing]
        default = ["screen"]
        aliases = {{ ALERTS = ["popup"] }}
        """,
        sink_types=SINK_TYPES,
    )
    stream = io.StringIO()
    sinks = build_sinks(settings, stream=stream)
    screen, popup = (unwrap(sink) for sink in sinks)
    assert isinstance(screen, ConsoleSink) and screen.name == "screen"
    assert isinstance(popup, MessageCommandSink) and popup.timeout == 10
    asyncio.run(fan_out(sinks, message("ALERTS", "UPS on battery"), message("BOB", "Hi")))
    assert out.read_text(encoding="utf-8") == "UPS on battery"
    assert "Hi" in stream.getvalue() and "UPS on battery" not in stream.getvalue()
