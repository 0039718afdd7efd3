"""The settings file: one TOML file for the daemon, its sinks, routing and policy.

```toml
[daemon]                  # every key optional; command-line flags override them
bind = "0.0.0.0"
aliases = ["ALERTS", "BOB"]
codepage = "cp850"
data_dir = "/var/lib/messengerd"   # relative paths are relative to this file

[[sink]]                  # none: print to the console, as `messengerd run` does
type = "command"          # console | command | forward
name = "popup"            # default: the type; routes name sinks by it
command = "notify-send -- %f %s"

[routing]
default = ["console"]     # sinks for recipients not listed below (default: every sink)
aliases = { ALERTS = ["popup", "console"] }

[policy]
deny_sources = ["198.51.100.0/24"]
rate_limit = 30           # messages a minute per source address (default: no limit)
```

tomllib reports no positions, so a problem's line is found by scanning the text for where
its key was written (key_lines: a small scanner that follows table headers, dotted and
quoted keys, inline tables and arrays, and skips strings and comments). `sink[N]` in a
message is the N-th `[[sink]]`, counting from 1.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from messengerd.commands.exits import UsageError
from messengerd.config.options import DaemonConfig
from messengerd.core.policy import parse_networks
from messengerd.delivery.command import check_command
from messengerd.sender import VIAS
from messengerd.wire.errors import WireError
from messengerd.wire.names import alias_name
from messengerd.wire.text import DEFAULT_CODEPAGE, check_codepage

CONFIG_FILE_NAME = "messengerd.toml"

SINK_TYPES = ("console", "command", "forward")
"""What a `[[sink]]` may be. Front ends (the tray) subscribe on the control channel."""

MAX_CONFIG_BYTES = 1024 * 1024
"""A settings file larger than this is refused: a typo (`--config /dev/zero`) should not
make the daemon read forever."""

Key = tuple[str | int, ...]


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
    aliases: list[str] | None = None
    workgroups: list[str] | None = None
    codepage: str | None = None
    data_dir: Path | None = None
    store: bool | None = None


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


# -- value checks: each returns the value to keep, or raises ValueError saying why --------


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {_toml_type(value)}")
    return value


def _nonempty_string(value: Any) -> str:
    if not _string(value).strip():
        raise ValueError("must not be empty")
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {_toml_type(value)}")
    return value


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {_toml_type(value)}")
    return value


def _port(value: Any) -> int:
    port = _integer(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535; 0 = any free)")
    return port


def _positive_integer(value: Any) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError(f"must be 1 or more, not {number}")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {_toml_type(value)}")
    return float(value)


def _non_negative_number(value: Any) -> float:
    number = _number(value)
    if not number >= 0 or number == float("inf"):
        raise ValueError(f"must be a finite number, 0 or more, not {value}")
    return number


def _positive_number(value: Any) -> float:
    number = _non_negative_number(value)
    if number == 0:
        raise ValueError("must be more than 0")
    return number


def _ipv4(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(_string(value)))
    except ipaddress.AddressValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of strings, not {_toml_type(value)}")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must be a list of strings; {item!r} is {_toml_type(item)}")
    return list(value)


def _networks(value: Any) -> list[str]:
    entries = _string_list(value)
    parse_networks(entries)
    return entries


def _via(value: Any) -> str:
    if _string(value) not in VIAS:
        raise ValueError(f"{value!r} is not one of {' | '.join(VIAS)}")
    return value


def _codepage(value: Any) -> str:
    return check_codepage(_string(value))


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


Check = Callable[[Any], Any]

DAEMON_KEYS: dict[str, Check] = {
    "bind": _ipv4,
    "broadcast": _ipv4,
    "name_port": _port,
    "datagram_port": _port,
    "session_port": _port,
    "aliases": _string_list,
    "workgroups": _string_list,
    "codepage": _codepage,
    "data_dir": _nonempty_string,
    "store": _boolean,
}

POLICY_KEYS: dict[str, Check] = {
    "allow_sources": _networks,
    "deny_sources": _networks,
    "allow_senders": _string_list,
    "deny_senders": _string_list,
    "rate_limit": _non_negative_number,
    "rate_burst": _positive_integer,
    "store_refused": _boolean,
}

SINK_KEYS: dict[str, dict[str, Check]] = {
    "console": {"json": _boolean},
    "command": {
        "command": _nonempty_string,
        "shell": _boolean,
        "timeout": _positive_number,
        "remove_file": _boolean,
        "temp_dir": _nonempty_string,
    },
    "forward": {
        "host": _ipv4,
        "to": _nonempty_string,
        "via": _via,
        "port": _port,
        "datagram_port": _port,
        "name_port": _port,
        "broadcast": _ipv4,
        "codepage": _codepage,
        "fromname": _nonempty_string,
        "timeout": _positive_number,
    },
}
"""Each sink type's keys beside `type` and `name`."""

REQUIRED_SINK_KEYS = {"command": ("command",)}

SECTIONS = ("daemon", "sink", "routing", "policy")


# -- loading -------------------------------------------------------------------------------


def load_settings(path: Path | str) -> Settings:
    """Read and check a settings file; SettingsError naming every bad key and its line."""
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
    return parse_settings(text, path)


def find_settings(path: Path | str | None) -> Settings:
    """The settings `--config PATH` names; without one, the default file if it exists,
    else no settings (every default). SettingsError as load_settings."""
    if path is not None:
        return load_settings(path)
    default = default_config_path()
    return load_settings(default) if default.is_file() else Settings()


_DECODE_POSITION = re.compile(r"\s*\(at line (\d+), column \d+\)$|\s*\(at end of document\)$")


def parse_settings(text: str, path: Path | str = "<settings>") -> Settings:
    """Check settings given as TOML text; relative paths are relative to `path`'s folder."""
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
    reader = _Reader(path, lines)
    settings = reader.read(document)
    if reader.problems:
        raise SettingsError(path, sorted(reader.problems, key=lambda problem: problem.line))
    return settings


class _Reader:
    """Turns a parsed TOML document into Settings, collecting every problem on the way."""

    def __init__(self, path: Path, lines: dict[Key, int]) -> None:
        self.path = path
        self.lines = lines
        self.problems: list[Problem] = []

    def problem(self, key: Key, problem: str) -> None:
        self.problems.append(Problem(_key_text(key), line_of(self.lines, key), problem))

    def check(self, key: Key, value: Any, check: Check) -> Any:
        try:
            return check(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return None

    def table(self, key: Key, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(key, f"must be a table, not {_toml_type(value)}")
            return {}
        return value

    def known(self, key: Key, table: dict[str, Any], keys: dict[str, Check]) -> dict[str, Any]:
        """The table's values that pass their checks; a problem for every other key."""
        values = {}
        for name, value in table.items():
            if name not in keys:
                self.problem((*key, name), f"unknown key (known: {', '.join(keys)})")
                continue
            checked = self.check((*key, name), value, keys[name])
            if checked is not None:
                values[name] = checked
        return values

    def read(self, document: dict[str, Any]) -> Settings:
        settings = Settings(path=self.path)
        for name in document:
            if name not in SECTIONS:
                self.problem((name,), f"unknown section (known: {', '.join(SECTIONS)})")
        settings.daemon = self.daemon(document.get("daemon", {}))
        settings.sinks = self.sinks(document.get("sink", []))
        settings.routing = self.routing(document.get("routing", {}), settings.sinks)
        settings.policy = PolicySettings(
            **self.known(
                ("policy",), self.table(("policy",), document.get("policy", {})), POLICY_KEYS
            )
        )
        return settings

    def daemon(self, value: Any) -> DaemonSettings:
        values = self.known(("daemon",), self.table(("daemon",), value), DAEMON_KEYS)
        if "data_dir" in values:
            values["data_dir"] = self.path_value(("daemon", "data_dir"), values["data_dir"])
        codepage = values.get("codepage", DEFAULT_CODEPAGE)
        for key in ("aliases", "workgroups"):
            for index, name in enumerate(values.get(key, [])):
                try:
                    alias_name(name, codepage)
                except (WireError, UnicodeError) as exc:
                    self.problem(("daemon", key), f"{name!r} (item {index + 1}): {exc}")
        return DaemonSettings(**values)

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
            sink_type = table.get("type")
            if sink_type is None:
                self.problem(key, f"a [[sink]] needs a type ({' | '.join(SINK_TYPES)})")
                continue
            if sink_type not in SINK_TYPES:
                self.problem(
                    (*key, "type"), f"{sink_type!r} is not one of {' | '.join(SINK_TYPES)}"
                )
                continue
            name = table.get("name", sink_type)
            if self.check((*key, "name"), name, _nonempty_string) is None:
                continue
            if name in names:
                self.problem((*key, "name"), f"a sink named {name!r} exists already")
                continue
            names.add(name)
            keys = SINK_KEYS[sink_type]
            options = {k: v for k, v in table.items() if k not in ("type", "name")}
            options = self.known(key, options, keys)
            for required in REQUIRED_SINK_KEYS.get(sink_type, ()):
                if required not in table:
                    self.problem(key, f"a {sink_type} sink needs {required!r}")
            self.sink_options(key, sink_type, options)
            sinks.append(SinkSettings(sink_type, name, options, line_of(self.lines, key)))
        return sinks

    def sink_options(self, key: Key, sink_type: str, options: dict[str, Any]) -> None:
        """Checks that need several keys, or the sink's own parser."""
        if sink_type == "command" and "command" in options:
            try:
                check_command(options["command"], shell=options.get("shell", False))
            except ValueError as exc:
                self.problem((*key, "command"), str(exc))
        if sink_type == "forward" and "host" not in options and "to" not in options:
            self.problem(key, "a forward sink needs 'host', or 'to' to look up by name")
        if "temp_dir" in options:
            options["temp_dir"] = self.path_value((*key, "temp_dir"), options["temp_dir"])

    def routing(self, value: Any, sinks: list[SinkSettings]) -> RoutingSettings:
        table = self.table(("routing",), value)
        known = {sink.name for sink in sinks} or {"console"}
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
        names = self.check(key, value, _string_list)
        if names is None:
            return None
        for name in names:
            if name not in known:
                self.problem(key, f"no sink is named {name!r} (sinks: {', '.join(sorted(known))})")
        return names


def _key_text(key: Key) -> str:
    """("sink", 0, "command") -> "sink[1].command"; ("routing", "aliases", "A B") quoted."""
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part + 1}]"
        else:
            bare = re.fullmatch(r"[A-Za-z0-9_-]+", part) is not None
            part_text = part if bare else '"' + part.replace('"', '\\"') + '"'
            text += f".{part_text}" if text else part_text
    return text


# -- merging with the command line ---------------------------------------------------------

_CLI_OPTIONS = {
    "bind": "bind",
    "broadcast": "broadcast",
    "name_port": "name_port",
    "datagram_port": "datagram_port",
    "session_port": "session_port",
    "aliases": "alias",
    "workgroups": "workgroup",
    "codepage": "codepage",
    "data_dir": "data_dir",
    "store": "store",
}
"""DaemonConfig field -> the argparse destination of its `messengerd run` option."""


def merge_daemon_config(settings: Settings, args: argparse.Namespace) -> DaemonConfig:
    """A DaemonConfig: each option given on the command line (not None in `args`), else
    the file's value, else DaemonConfig's default. UsageError for a bad --codepage."""
    values: dict[str, Any] = {}
    for name, option in _CLI_OPTIONS.items():
        value = getattr(args, option, None)
        if value is None or value == []:
            value = getattr(settings.daemon, name)
        if value is not None:
            values[name] = value
    if "codepage" in values:
        try:
            values["codepage"] = check_codepage(values["codepage"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return DaemonConfig(**values)


# -- finding a key's line ------------------------------------------------------------------


def line_of(lines: dict[Key, int], key: Key) -> int:
    """The line `key` was written on; else its nearest enclosing table's; else 1."""
    for end in range(len(key), 0, -1):
        if key[:end] in lines:
            return lines[key[:end]]
    return 1


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def key_lines(text: str) -> dict[Key, int]:
    """The line (from 1) of every key and table header in valid TOML `text`.

    Array-of-tables entries get their index: `[[sink]]` twice gives ("sink", 0) and
    ("sink", 1); keys in an inline table or an array of inline tables get their full path.
    """
    return _KeyScanner(text).scan()


class _KeyScanner:
    """Walks TOML text once, noting where each key starts; values are skipped, not parsed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.lines: dict[Key, int] = {}
        self.arrays: dict[Key, int] = {}

    def line(self) -> int:
        return self.text.count("\n", 0, self.pos) + 1

    def peek(self, size: int = 1) -> str:
        return self.text[self.pos : self.pos + size]

    def skip_blank(self, newlines: bool) -> None:
        """Skip spaces, comments and, with `newlines`, line breaks."""
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def scan(self) -> dict[Key, int]:
        table: Key = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.peek() != "[":
                self.key_value(table)
                continue
            closing = "]]" if self.peek(2) == "[[" else "]"
            self.pos += len(closing)
            keys = self.dotted_key()
            end = self.text.find(closing, self.pos)
            if not keys or end < 0:
                return self.lines  # not valid TOML (tomllib says where): stop, not raise
            table = self.resolve(keys)
            self.lines.setdefault(table, line)
            if closing == "]]":
                index = self.arrays.get(table, 0)
                self.arrays[table] = index + 1
                table = (*table, index)
                self.lines.setdefault(table, line)
            self.pos = end + len(closing)

    def resolve(self, keys: Key) -> Key:
        """A header's path, with the current index after each array of tables in it."""
        path: Key = ()
        for key in keys[:-1]:
            path = (*path, key)
            if path in self.arrays:
                path = (*path, self.arrays[path] - 1)
        return (*path, keys[-1])

    def dotted_key(self) -> Key:
        parts: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char in "\"'":
                parts.append(self.string())
            else:
                match = _BARE_KEY.match(self.text, self.pos)
                if match is None:
                    return tuple(parts)
                parts.append(match[0])
                self.pos = match.end()
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def key_value(self, table: Key) -> None:
        line = self.line()
        keys = self.dotted_key()
        if not keys:
            # Not valid TOML (tomllib would have said); stop scanning rather than loop.
            self.pos = len(self.text)
            return
        path = (*table, *keys)
        for end in range(len(table) + 1, len(path) + 1):
            self.lines.setdefault(path[:end], line)
        self.skip_blank(newlines=False)
        self.pos += 1  # "="
        self.skip_blank(newlines=False)
        self.value(path)

    def value(self, path: Key) -> None:
        char = self.peek()
        if char in "\"'":
            self.string()
        elif char == "[":
            self.array(path)
        elif char == "{":
            self.inline_table(path)
        else:
            match = re.compile(r"[^,\]}\s#]+").match(self.text, self.pos)
            if match:
                self.pos = match.end()
                # Dates may hold one space: `1979-05-27 07:32:00`.
                if re.match(r" \d\d:", self.text[self.pos : self.pos + 4]):
                    self.pos += 1
                    self.value(path)

    def array(self, path: Key) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("]", ""):
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            self.lines.setdefault((*path, index), self.line())
            before = self.pos
            self.value((*path, index))
            if self.pos == before:
                self.pos = len(self.text)  # not valid TOML: stop rather than loop
                return
            index += 1

    def inline_table(self, path: Key) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            if self.peek() in ("}", ""):
                self.pos += 1
                return
            if self.peek() == ",":
                self.pos += 1
                continue
            before = self.pos
            self.key_value(path)
            if self.pos == before:
                self.pos = len(self.text)  # not valid TOML: stop rather than loop
                return

    def string(self) -> str:
        """Skip a string of any of TOML's four kinds; return its text (escapes as written)."""
        quote = self.peek()
        if not quote:
            return ""  # the end of the text (invalid TOML): "" is `in` every string
        if self.peek(3) == quote * 3:
            end = self.text.find(quote * 3, self.pos + 3)
            while quote == '"' and end > 0 and _escaped(self.text, end):
                end = self.text.find(quote * 3, end + 1)
            end = len(self.text) if end < 0 else end
            # Up to two quotes may close the string's content right before the delimiter.
            while self.text[end + 3 : end + 4] == quote:
                end += 1
            body = self.text[self.pos + 3 : end]
            self.pos = end + 3
            return body
        start = self.pos
        end = start + 1
        while end < len(self.text) and self.text[end] != quote:
            end += 2 if quote == '"' and self.text[end] == "\\" else 1
        self.pos = end + 1
        if quote == "'":
            return self.text[start + 1 : end]
        # A basic string's escapes (`"caf\u00e9"`) are decoded by tomllib itself.
        try:
            return tomllib.loads("k = " + self.text[start : end + 1])["k"]
        except tomllib.TOMLDecodeError:
            return self.text[start + 1 : end]  # not valid TOML: the text as written


def _escaped(text: str, index: int) -> bool:
    """True when the character at `index` follows an odd number of backslashes."""
    count = 0
    while index - count - 1 >= 0 and text[index - count - 1] == "\\":
        count += 1
    return count % 2 == 1
