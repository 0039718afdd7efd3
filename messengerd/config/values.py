"""Checks for the settings file's values: each returns the value to keep, or raises
ValueError saying, in one line, why the value cannot be used.

The settings reader runs them on every key (settings.py's tables); the layers that own a
kind of `[[sink]]` (delivery) build their sinks' option checks from them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from messengerd.core.policy import parse_networks
from messengerd.wire.text import check_codepage

Check = Callable[[Any], Any]
"""A value check: the value to keep, or ValueError saying why not."""


def toml_type(value: Any) -> str:
    """What a value tomllib read is, in TOML's words ("an array", "a table")."""
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


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {toml_type(value)}")
    return value


def nonempty_string(value: Any) -> str:
    if not string(value).strip():
        raise ValueError("must not be empty")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, not {toml_type(value)}")
    return value


def integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"must be an integer, not {toml_type(value)}")
    return value


def port(value: Any) -> int:
    number = integer(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"{number} is not a port number (0-65535; 0 = any free)")
    return number


def positive_integer(value: Any) -> int:
    number = integer(value)
    if number < 1:
        raise ValueError(f"must be 1 or more, not {number}")
    return number


def non_negative_integer(value: Any) -> int:
    number = integer(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, not {number}")
    return number


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"must be a number, not {toml_type(value)}")
    return float(value)


def non_negative_number(value: Any) -> float:
    checked = number(value)
    if not checked >= 0 or checked == float("inf"):
        raise ValueError(f"must be a finite number, 0 or more, not {value}")
    return checked


def positive_number(value: Any) -> float:
    checked = non_negative_number(value)
    if checked == 0:
        raise ValueError("must be more than 0")
    return checked


def ipv4(value: Any) -> str:
    try:
        return str(ipaddress.IPv4Address(string(value)))
    except ipaddress.AddressValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"must be a list of strings, not {toml_type(value)}")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"must be a list of strings; {item!r} is {toml_type(item)}")
    return list(value)


def networks(value: Any) -> list[str]:
    """A list of addresses and networks, as the policy's allow/deny lists take them."""
    entries = string_list(value)
    parse_networks(entries)
    return entries


def codepage(value: Any) -> str:
    return check_codepage(string(value))


def one_of(choices: Sequence[str]) -> Check:
    """A check for a string that must be one of `choices`."""

    def check(value: Any) -> str:
        if string(value) not in choices:
            raise ValueError(f"{value!r} is not one of {' | '.join(choices)}")
        return value

    return check
