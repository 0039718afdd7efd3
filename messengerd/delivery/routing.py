"""Per-alias routing: which sinks the messages to each alias go to (`[routing]`), and the
sinks a settings file's `[[sink]]`s describe: SINK_TYPES (what each type's options are, for
the settings reader) and build_sinks (the sinks themselves, routed).

Routing wraps each sink in a RoutedSink that lets through only the messages routed to it,
and hands the wrapped list to the Fanout unchanged: every sink keeps its own queue,
concurrency and timeout, so routing adds no way for one sink to hold up another.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TextIO

from messengerd.config import values
from messengerd.config.settings import RoutingSettings, Settings, SinkSettings, SinkType
from messengerd.core.message import Message
from messengerd.delivery import IN_PROCESS_LIMITS, Sink
from messengerd.delivery.command import MessageCommandSink, check_command
from messengerd.delivery.console import CONSOLE_QUEUE, ConsoleSink
from messengerd.delivery.forward import ForwardSink
from messengerd.sender import VIAS


def _recipient_key(name: str) -> str:
    # NetBIOS names ignore case and are space-padded on the wire.
    return name.strip().casefold()


class Router:
    """Recipient alias -> the names of the sinks its messages go to.

    Recipients not in `routes` go to `default`; with no `default`, to every sink.
    """

    def __init__(
        self,
        routes: Mapping[str, Iterable[str]] | None = None,
        default: Iterable[str] | None = None,
    ) -> None:
        self.routes = {
            _recipient_key(alias): frozenset(names) for alias, names in (routes or {}).items()
        }
        self.default = None if default is None else frozenset(default)

    @classmethod
    def from_settings(cls, routing: RoutingSettings) -> Router:
        """The Router a settings file's `[routing]` describes."""
        return cls(routing.aliases, routing.default)

    @property
    def routes_everything(self) -> bool:
        """True when every message goes to every sink (no routes, no default)."""
        return not self.routes and self.default is None

    def sink_names(self, recipient: str) -> frozenset[str] | None:
        """The sinks for messages to `recipient`; None means every sink."""
        return self.routes.get(_recipient_key(recipient), self.default)

    def routes_to(self, sink: str, recipient: str) -> bool:
        """True when messages to `recipient` go to the sink named `sink`."""
        names = self.sink_names(recipient)
        return names is None or sink in names

    def check(self, sinks: Iterable[Sink]) -> None:
        """ValueError when a route names a sink that is not in `sinks`."""
        known = {sink.name for sink in sinks}
        for names in (*self.routes.values(), self.default or ()):
            for name in names:
                if name not in known:
                    raise ValueError(f"a route names the sink {name!r}, but no sink has that name")

    def apply(self, sinks: list[Sink]) -> list[Sink]:
        """The Fanout's sink list: each sink wrapped to take only messages routed to it."""
        self.check(sinks)
        if self.routes_everything:
            return list(sinks)
        return [RoutedSink(sink, self) for sink in sinks]


class RoutedSink:
    """A sink that takes only the messages its Router sends to `sink.name`: the Fanout asks
    `wants()` before a message takes a place in the sink's queue."""

    def __init__(self, sink: Sink, router: Router) -> None:
        self.sink = sink
        self.router = router
        self.name = sink.name
        self.limits = getattr(sink, "limits", IN_PROCESS_LIMITS)

    def wants(self, message: Message) -> bool:
        return self.router.routes_to(self.name, message.recipient)

    @property
    def dropped(self) -> int:
        return getattr(self.sink, "dropped", 0)

    async def deliver(self, message: Message) -> None:
        if self.wants(message):
            await self.sink.deliver(message)

    async def aclose(self) -> None:
        aclose = getattr(self.sink, "aclose", None)
        if aclose is not None:
            await aclose()


def _command_problems(options: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The command as MessageCommandSink will split it (its quoting, its `%x`)."""
    if "command" in options:
        try:
            check_command(options["command"], shell=options.get("shell", False))
        except ValueError as exc:
            yield "command", str(exc)


def _forward_problems(options: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if "host" not in options and "to" not in options:
        yield "", "a forward sink needs 'host', or 'to' to look up by name"


SINK_TYPES: dict[str, SinkType] = {
    "console": SinkType({"json": values.boolean, "queue": values.positive_integer}),
    "command": SinkType(
        {
            "command": values.nonempty_string,
            "concurrency": values.positive_integer,
            "queue": values.positive_integer,
            "shell": values.boolean,
            "timeout": values.positive_number,
            "remove_file": values.boolean,
            "temp_dir": values.nonempty_string,
        },
        required=("command",),
        paths=("temp_dir",),
        check=_command_problems,
    ),
    "forward": SinkType(
        {
            "host": values.ipv4,
            "to": values.nonempty_string,
            "via": values.one_of(VIAS),
            "port": values.port,
            "datagram_port": values.port,
            "name_port": values.port,
            "broadcast": values.ipv4,
            "codepage": values.codepage,
            "fromname": values.nonempty_string,
            "timeout": values.positive_number,
            "concurrency": values.positive_integer,
            "queue": values.positive_integer,
        },
        check=_forward_problems,
    ),
    # 0.1's first settings files (b71cbc4) named the subscriber hub as a sink; the control
    # channel has fed every subscriber every message since (8dba0c6).
    "notify": SinkType(
        {"queue": values.positive_integer},
        retired="type 'notify' is no longer needed and is ignored: the tray and every "
        "control-channel subscriber get every message; remove this [[sink]] and its routes",
    ),
}
"""What a `[[sink]]` may be, and its options (handed to messengerd.config.settings' readers);
build_sink makes each. Front ends (the tray) subscribe on the control channel instead."""


def build_sink(
    sink: SinkSettings, *, json_lines: bool = False, stream: TextIO | None = None
) -> Sink:
    """The sink one `[[sink]]` describes (its options already checked by settings)."""
    options = sink.options
    if sink.type == "console":
        console = ConsoleSink(
            stream,
            json_lines=json_lines or options.get("json", False),
            queue_size=options.get("queue", CONSOLE_QUEUE),
        )
        console.name = sink.name
        return console
    if sink.type == "command":
        return MessageCommandSink(
            options["command"], name=sink.name, **_without(options, "command")
        )
    if sink.type == "forward":
        return ForwardSink(name=sink.name, **options)
    raise ValueError(f"unknown sink type {sink.type!r}")


def build_sinks(
    settings: Settings, *, json_lines: bool = False, stream: TextIO | None = None
) -> list[Sink]:
    """Every configured sink, routed; with no `[[sink]]`, the console sink alone.

    `json_lines` (`messengerd run --json`) makes every console sink print JSON.
    """
    if settings.sinks:
        sinks = [build_sink(sink, json_lines=json_lines, stream=stream) for sink in settings.sinks]
    else:
        sinks = [ConsoleSink(stream, json_lines=json_lines)]
    return Router.from_settings(settings.routing).apply(sinks)


def unwrap(sink: Sink) -> Sink:
    """The sink inside a RoutedSink (or `sink` itself when it is not routed)."""
    return sink.sink if isinstance(sink, RoutedSink) else sink


def _without(options: dict, key: str) -> dict:
    return {name: value for name, value in options.items() if name != key}
