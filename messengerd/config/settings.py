"""The settings file: one TOML file for the daemon, its sinks, routing and policy.

```toml
[daemon]                  # every key optional; command-line flags override them
bind = "0.0.0.0"
aliases = ["ALERTS", "BOB"]
codepage = "cp850"
data_dir = "/var/lib/messengerd"   # relative paths are relative to this file
session_idle_timeout = 120           # seconds a session may complete no frame

[[sink]]                  # none: print to the console, as `messengerd run` does
type = "command"          # console | command | forward
name = "popup"            # default: the type; routes name sinks by it
command = "notify-send -- %f %s"

[[sink]]
type = "console"          # named "console", its type

[routing]
default = ["console"]     # sinks for recipients not listed below (default: every sink)
aliases = { ALERTS = ["popup", "console"] }

[policy]
deny_sources = ["198.51.100.0/24"]
rate_limit = 30           # messages a minute per source address (default: no limit)

[store]                   # how much the inbox keeps; the oldest messages go first; 0: no limit
max_age_days = 365
max_messages = 100000
max_size_mb = 100         # MiB of database pages
```

Every problem is reported with the line its key was written on (tomlkeys.py finds it);
`sink[N]` in a message is the N-th `[[sink]]`, counting from 1. The kinds of `[[sink]]` and
their options are not known here: the layer that builds the sinks declares them (SinkType;
messengerd.delivery.routing.SINK_TYPES) and whoever reads a settings file hands them in.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from messengerd.config import values
from messengerd.config.options import BACKENDS
from messengerd.config.tomlkeys import Key, key_lines, key_text, line_of
from messengerd.config.values import Check, toml_type
from messengerd.core.store.retention import Retention
from messengerd.wire.errors import WireError
from messengerd.wire.names import alias_name
from messengerd.wire.text import DEFAULT_CODEPAGE

CONFIG_FILE_NAME = "messengerd.toml"

MAX_CONFIG_BYTES = 1024 * 1024
"""A settings file larger than this is refused: a typo (`--config /dev/zero`) should not
make the daemon read forever."""


def default_config_path() -> Path:
    """`messengerd.toml` in the platform's per-user config directory."""
    return Path(platformdirs.user_config_dir("messengerd", appauthor=False)) / CONFIG_FILE_NAME


# -- errors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One bad setting: where it is and what is wrong with it."""

    key: str
    line: int
    """From 1; 0 when the problem is the whole file (unreadable, too large)."""
    problem: str


class SettingsError(Exception):
    """The settings file cannot be used; `problems` lists every bad key with its line."""

    def __init__(self, path: Path | str, problems: list[Problem]) -> None:
        self.path = Path(path)
        self.problems = problems
        super().__init__(self.lines()[0])

    def lines(self) -> list[str]:
        """`FILE:LINE: key 'x.y': problem`, one per problem (no LINE for the whole file)."""
        return [_problem_line(self.path, problem) for problem in self.problems]


def _problem_line(path: Path, problem: Problem) -> str:
    where = f"{path}:{problem.line}" if problem.line else f"{path}"
    key = f" key {problem.key!r}:" if problem.key else ""
    return f"{where}:{key} {problem.problem}"


# -- the typed settings ------------------------------------------------------------------


@dataclass
class DaemonSettings:
    """`[daemon]`: DaemonConfig's fields; None where the file does not set one."""

    bind: str | None = None
    broadcast: str | None = None
    name_port: int | None = None
    datagram_port: int | None = None
    session_port: int | None = None
    rpc_port: int | None = None
    rpc: bool | None = None
    aliases: list[str] | None = None
    workgroups: list[str] | None = None
    codepage: str | None = None
    data_dir: Path | None = None
    store: bool | None = None
    interfaces: list[str] | None = None
    control_group: str | None = None
    backend: str | None = None
    session_idle_timeout: float | None = None


@dataclass
class SinkSettings:
    """One `[[sink]]`: its type, its name, the rest of its keys, and the line it starts on."""

    type: str
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass
class RoutingSettings:
    """`[routing]`: sinks per recipient alias, and for every other recipient."""

    default: list[str] | None = None
    aliases: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class PolicySettings:
    """`[policy]`: the Policy's arguments; None where the file does not set one."""

    allow_sources: list[str] = field(default_factory=list)
    deny_sources: list[str] = field(default_factory=list)
    allow_senders: list[str] = field(default_factory=list)
    deny_senders: list[str] = field(default_factory=list)
    rate_limit: float | None = None
    rate_burst: int | None = None
    store_refused: bool = False


@dataclass
class Settings:
    """A whole settings file (or, with path None, the defaults: no file)."""

    path: Path | None = None
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    sinks: list[SinkSettings] = field(default_factory=list)
    routing: RoutingSettings = field(default_factory=RoutingSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    store: Retention = field(default_factory=Retention)
    """`[store]`: the inbox's retention limits, each unset one at its default."""
    notes: list[str] = field(default_factory=list)
    """`FILE:LINE: ...` for what the file asks that this version does differently (a retired
    `[[sink]]` kind): not errors, for the daemon to log at start and `config check` to show."""

    def policy_arguments(self) -> dict[str, Any]:
        """Keyword arguments for messengerd.core.policy.Policy (unset ones left to its defaults)."""
        policy = self.policy
        arguments: dict[str, Any] = {
            "allow_sources": policy.allow_sources,
            "deny_sources": policy.deny_sources,
            "allow_senders": policy.allow_senders,
            "deny_senders": policy.deny_senders,
            "store_refused": policy.store_refused,
        }
        if policy.rate_limit is not None:
            arguments["rate_limit"] = policy.rate_limit
        if policy.rate_burst is not None:
            arguments["rate_burst"] = policy.rate_burst
        return arguments


# -- what a [[sink]] may be: declared by the layer that builds sinks -----------------------

SinkCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""A check over a sink's options together: yields (option, problem) for each problem found;
option "" when the problem is the sink's as a whole."""


@dataclass(frozen=True)
class SinkType:
    """One kind of `[[sink]]`: the options it takes beside `type` and `name`, and their checks."""

    keys: Mapping[str, Check]
    """Each option and its value check (messengerd.config.values)."""
    required: tuple[str, ...] = ()
    """Options the sink cannot do without."""
    paths: tuple[str, ...] = ()
    """Options that name a file or folder: `~` expanded, relative to the settings file."""
    check: SinkCheck | None = None
    """Checks that need several options, or the sink's own parser."""
    retired: str = ""
    """Why an earlier version's kind is built no more, when it is: its `[[sink]]`s are still
    read and checked (files written for that version load), routes may still name them,
    and the note says what to do instead."""


# -- the tables of keys ------------------------------------------------------------------

DAEMON_KEYS: dict[str, Check] = {
    "bind": values.ipv4,
    "broadcast": values.ipv4,
    "name_port": values.port,
    "datagram_port": values.port,
    "session_port": values.port,
    "rpc_port": values.port,
    "rpc": values.boolean,
    "aliases": values.string_list,
    "workgroups": values.string_list,
    "codepage": values.codepage,
    "data_dir": values.nonempty_string,
    "store": values.boolean,
    "control_group": values.nonempty_string,
    "backend": values.one_of(BACKENDS),
    "session_idle_timeout": values.positive_number,
    "interfaces": values.string_list,
}

POLICY_KEYS: dict[str, Check] = {
    "allow_sources": values.networks,
    "deny_sources": values.networks,
    "allow_senders": values.string_list,
    "deny_senders": values.string_list,
    "rate_limit": values.non_negative_number,
    "rate_burst": values.positive_integer,
    "store_refused": values.boolean,
}

STORE_KEYS: dict[str, Check] = {
    "max_age_days": values.non_negative_number,
    "max_messages": values.non_negative_integer,
    "max_size_mb": values.non_negative_number,
}

SECTIONS = ("daemon", "sink", "routing", "policy", "store")


# -- loading -------------------------------------------------------------------------------


def load_settings(path: Path | str, *, sink_types: Mapping[str, SinkType]) -> Settings:
    """Read and check a settings file, its `[[sink]]`s against `sink_types`; SettingsError
    naming every bad key and its line."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise SettingsError(path, [Problem("", 0, f"cannot read: {exc.strerror or exc}")]) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise SettingsError(path, [Problem("", 0, f"larger than {MAX_CONFIG_BYTES} bytes")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SettingsError(path, [Problem("", line, "not UTF-8 text")]) from None
    return parse_settings(text, path, sink_types=sink_types)


def find_settings(path: Path | str | None, *, sink_types: Mapping[str, SinkType]) -> Settings:
    """The settings `--config PATH` names; without one, the default file if it exists,
    else no settings (every default). SettingsError as load_settings."""
    if path is not None:
        return load_settings(path, sink_types=sink_types)
    default = default_config_path()
    return load_settings(default, sink_types=sink_types) if default.is_file() else Settings()


_DECODE_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$|\s*\(at end of document\)$")


def parse_settings(
    text: str, path: Path | str = "<settings>", *, sink_types: Mapping[str, SinkType]
) -> Settings:
    """Check settings given as TOML text, its `[[sink]]`s against `sink_types`; relative
    paths are relative to `path`'s folder."""
    path = Path(path)
    try:
        document = tomllib.loads(text)
        lines = key_lines(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _DECODE_POSITION.search(message)
        line = int(match[1]) if match and match[1] else text.count("\n") + 1
        problem = _DECODE_POSITION.sub("", message)
        raise SettingsError(path, [Problem("", line, f"not valid TOML: {problem}")]) from None
    except RecursionError:
        # tomllib (and key_lines) recurse once per nested array or inline table.
        too_deep = Problem("", 1, "not valid here: arrays or inline tables nested too deeply")
        raise SettingsError(path, [too_deep]) from None
    reader = _Reader(path, lines, sink_types)
    settings = reader.read(document)
    if reader.problems:
        raise SettingsError(path, sorted(reader.problems, key=lambda problem: problem.line))
    return settings


class _Reader:
    """Turns a parsed TOML document into Settings, collecting every problem on the way."""

    def __init__(
        self, path: Path, lines: dict[Key, int], sink_types: Mapping[str, SinkType]
    ) -> None:
        self.path = path
        self.lines = lines
        self.sink_types = sink_types
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self.retired_sinks: set[str] = set()

    def problem(self, key: Key, problem: str) -> None:
        self.problems.append(Problem(key_text(key), line_of(self.lines, key), problem))

    def check(self, key: Key, value: Any, check: Check) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return None

    def table(self, key: Key, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key, f"must be a table, not {toml_type(value)}")
            return {}
        return value

    def known(self, key: Key, table: dict[str, Any], keys: Mapping[str, Check]) -> dict[str, Any]:
        """The table's values that pass their checks; a problem for every other key."""
        checked = {}
        for name, value in table.items():
            if name not in keys:
                self.problem((*key, name), f"unknown key (known: {', '.join(keys)})")
                continue
            kept = self.check((*key, name), value, keys[name])
            if kept is not None:
                checked[name] = kept
        return checked

    def read(self, document: dict[str, Any]) -> Settings:
        settings = Settings(path=self.path)
        for name in document:
            if name not in SECTIONS:
                self.problem((name,), f"unknown section (known: {', '.join(SECTIONS)})")
        settings.daemon = self.daemon(document.get("daemon", {}))
        settings.sinks = self.sinks(document.get("sink", []))
        settings.routing = self.routing(document.get("routing", {}), settings.sinks)
        settings.notes = self.notes
        settings.policy = PolicySettings(
            **self.known(
                ("policy",), self.table(("policy",), document.get("policy", {})), POLICY_KEYS
            )
        )
        settings.store = Retention(
            **self.known(("store",), self.table(("store",), document.get("store", {})), STORE_KEYS)
        )
        return settings

    def daemon(self, value: Any) -> DaemonSettings:
        daemon = self.known(("daemon",), self.table(("daemon",), value), DAEMON_KEYS)
        if "data_dir" in daemon:
            daemon["data_dir"] = self.path_value(("daemon", "data_dir"), daemon["data_dir"])
        codepage = daemon.get("codepage", DEFAULT_CODEPAGE)
        for key in ("aliases", "workgroups"):
            for index, name in enumerate(daemon.get(key, [])):
                try:
                    alias_name(name, codepage)
                except (WireError, UnicodeError) as exc:
                    self.problem(("daemon", key), f"{name!r} (item {index + 1}): {exc}")
        return DaemonSettings(**daemon)

    def path_value(self, key: Key, text: str) -> Path | None:
        """`text` as a path: `~` expanded, relative to the settings file; None if it cannot be."""
        try:
            path = Path(text).expanduser()
        except (RuntimeError, ValueError) as exc:  # `~nosuchuser`, a NUL in the name
            self.problem(key, f"{text!r} is not a usable path: {exc}")
            return None
        return path if path.is_absolute() else self.path.parent.resolve() / path

    def sinks(self, value: Any) -> list[SinkSettings]:
        if not isinstance(value, list):
            self.problem(("sink",), "must be an array of tables: write [[sink]], not [sink]")
            return []
        sinks: list[SinkSettings] = []
        names: set[str] = set()
        for index, entry in enumerate(value):
            key: Key = ("sink", index)
            table = self.table(key, entry)
            if not table:
                continue
            types = " | ".join(k for k, kind in self.sink_types.items() if not kind.retired)
            type_name = table.get("type")
            if type_name is None:
                self.problem(key, f"a [[sink]] needs a type ({types})")
                continue
            # A TOML array or table is no type; a dict lookup would raise for them.
            if not isinstance(type_name, str) or type_name not in self.sink_types:
                self.problem((*key, "type"), f"{type_name!r} is not one of {types}")
                continue
            name = table.get("name", type_name)
            if self.check((*key, "name"), name, values.nonempty_string) is None:
                continue
            if name in names:
                self.problem((*key, "name"), f"a sink named {name!r} exists already")
                continue
            names.add(name)
            sink_type = self.sink_types[type_name]
            options = {k: v for k, v in table.items() if k not in ("type", "name")}
            options = self.known(key, options, sink_type.keys)
            for required in sink_type.required:
                if required not in table:
                    self.problem(key, f"a {type_name} sink needs {required!r}")
            if sink_type.check is not None:
                for option, problem in sink_type.check(options):
                    self.problem((*key, option) if option else key, problem)
            for option in sink_type.paths:
                if option in options:
                    options[option] = self.path_value((*key, option), options[option])
            line = line_of(self.lines, key)
            if sink_type.retired:
                self.retired_sinks.add(name)
                self.notes.append(f"{self.path}:{line}: sink {name!r}: {sink_type.retired}")
                continue
            sinks.append(SinkSettings(type_name, name, options, line))
        return sinks

    def routing(self, value: Any, sinks: list[SinkSettings]) -> RoutingSettings:
        table = self.table(("routing",), value)
        known = ({sink.name for sink in sinks} or {"console"}) | self.retired_sinks
        routing = RoutingSettings()
        for name, item in table.items():
            key: Key = ("routing", name)
            if name == "default":
                routing.default = self.route(key, item, known)
            elif name == "aliases":
                for alias, route in self.table(key, item).items():
                    names = self.route((*key, alias), route, known)
                    if names is not None:
                        routing.aliases[alias] = names
            else:
                self.problem(key, "unknown key (known: default, aliases)")
        return routing

    def route(self, key: Key, value: Any, known: set[str]) -> list[str] | None:
        names = self.check(key, value, values.string_list)
        if names is None:
            return None
        for name in names:
            if name not in known:
                self.problem(key, f"no sink is named {name!r} (sinks: {', '.join(sorted(known))})")
        return [name for name in names if name not in self.retired_sinks]
