"""Read the Windows SDK headers as mingw-w64 ships them (Debian's mingw-w64-common).

mingw-w64's headers are a public-domain rendering of the SDK's; the tests compare our
constants and structure layouts with them instead of with numbers copied by hand.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import need

HEADERS = Path("/usr/share/mingw-w64/include")


def header(name: str) -> str:
    """The text of SDK header `name` (skip, or fail in CI, without mingw-w64-common)."""
    path = HEADERS / name
    need(path.is_file(), f"{path} not found (apt-get install mingw-w64-common)")
    return path.read_text(errors="replace")


_DEFINE = re.compile(r"^\s*#define\s+(\w+)\s+(.+?)\s*(?:/\*.*)?$", re.MULTILINE)


def _value(term: str, known: dict[str, int]) -> int | None:
    """A literal (decimal or hex, with C suffixes) or an earlier name; None for anything else."""
    term = term.strip()
    if term in known:
        return known[term]
    literal = re.fullmatch(r"(0[xX][0-9a-fA-F]+|\d+)[uUlL]*", term)
    return int(literal.group(1), 0) if literal else None


def defines(text: str) -> dict[str, int]:
    """Every `#define NAME value` whose value is a number, a name, or `(A + B)` of those."""
    values: dict[str, int] = {}
    for name, expression in _DEFINE.findall(text):
        expression = re.sub(r"__MSABI_LONG\((\w+)\)", r"\1", expression).strip()
        if expression.startswith("(") and expression.endswith(")"):
            expression = expression[1:-1]
        terms = [_value(term, values) for term in expression.split("+")]
        if terms and None not in terms:
            values[name] = sum(term for term in terms if term is not None)
    return values


def struct_fields(text: str, name: str, *, win64: bool) -> list[tuple[str, str, int]]:
    """(type, field, array length or 0) of `typedef struct NAME {...}` as the compiler sees
    it with or without _WIN64 defined."""
    body = re.search(r"typedef struct " + name + r"\s*\{(.*?)\}", text, re.DOTALL)
    assert body is not None, f"struct {name} not in the header"
    lines: list[str] = []
    keep = [True]
    for line in body.group(1).splitlines():
        stripped = line.strip()
        if stripped.startswith("#ifdef _WIN64"):
            keep.append(win64)
        elif stripped.startswith("#else"):
            keep[-1] = not keep[-1]
        elif stripped.startswith("#endif"):
            keep.pop()
        elif stripped and all(keep):
            lines.append(stripped)
    fields = []
    for line in lines:
        pointer_to_function = re.match(r"\w+\s*\(\s*CALLBACK\s*\*\s*(\w+)\s*\)", line)
        if pointer_to_function:
            fields.append(("PVOID", pointer_to_function.group(1), 0))
            continue
        match = re.match(r"(\w+)\s+(\w+)(?:\[([^\]]+)\])?\s*;", line)
        assert match is not None, f"cannot read {line!r}"
        kind, field, count = match.groups()
        length = (
            defines(f"{text}\n#define FIELD_LENGTH ({count})\n")["FIELD_LENGTH"] if count else 0
        )
        fields.append((kind, field, length))
    return fields
