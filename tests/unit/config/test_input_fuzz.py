"""Hostile text for the settings file and `history --since`: a result or the documented error."""

from __future__ import annotations

import contextlib
import re
import signal
import tomllib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from messengerd.commands.history import parse_since
from messengerd.config import settings as settings_module
from messengerd.config.settings import (
    DAEMON_KEYS,
    POLICY_KEYS,
    Settings,
    SettingsError,
    parse_settings,
)
from messengerd.config.tomlkeys import key_lines
from messengerd.delivery.routing import SINK_TYPES

FUZZ = settings(max_examples=300, deadline=None)
HANG_SECONDS = 2.0
"""Generous: these parsers take well under a millisecond; running out is a hang."""


@contextlib.contextmanager
def within(seconds: float = HANG_SECONDS):
    """Fail, rather than block the suite, when the body runs past `seconds` (POSIX timer)."""
    if not hasattr(signal, "setitimer"):
        yield
        return

    def hang(*_: object) -> None:
        raise AssertionError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- TOML as written ----------------------------------------------------------------------

BARE_KEY = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
LITERAL_TEXT = st.text(
    st.characters(exclude_characters="'", exclude_categories=("Cs", "Cc")), max_size=8
)


def basic_string(text: str) -> str:
    """`text` as a TOML basic string: quotes, backslashes and control characters escaped."""
    special = {'"', "\\", "\x7f"}
    escaped = "".join(f"\\u{ord(c):04x}" if c in special or c < " " else c for c in text)
    return f'"{escaped}"'


KEYS = st.one_of(BARE_KEY, TEXT.map(basic_string), LITERAL_TEXT.map(lambda text: f"'{text}'"))
"""Keys as written: bare, "basic" with escapes, 'literal'."""
SCALARS = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(
        ["true", "inf", "-nan", "0x1F", "1_000", "1979-05-27 07:32:00", "1979-05-27T07:32Z"]
    ),
    TEXT.map(basic_string),
    LITERAL_TEXT.map(lambda text: f"'{text}'"),
    st.from_regex(r'[a-z# \]\[={}\n]{0,10}"{0,2}', fullmatch=True).map(lambda t: f'"""{t}"""'),
    st.from_regex(r"[a-z# \]\[={}\n\\]{0,10}'{0,2}", fullmatch=True).map(lambda t: f"'''{t}'''"),
)
"""Values of every kind, and multi-line strings whose content looks like TOML syntax."""


def _containers(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    arrays = st.tuples(st.lists(children, max_size=3), st.sampled_from([", ", ",\n  # c\n "]))
    tables = st.lists(st.tuples(KEYS, children), max_size=3, unique_by=lambda pair: pair[0])
    return st.one_of(
        arrays.map(lambda array: "[" + array[1].join(array[0]) + "]"),
        tables.map(lambda pairs: "{" + ", ".join(f"{k} = {v}" for k, v in pairs) + "}"),
    )


VALUES = st.recursive(SCALARS, _containers, max_leaves=6)
COMMENTS = st.sampled_from(["", " # ] [x] = \"'", "  #", " # {"])

# --- parse_settings -----------------------------------------------------------------------

EXAMPLE = re.search(r"```toml\n(.*?)```", settings_module.__doc__ or "", re.DOTALL)[1]
"""The settings document the module's docstring shows: every section, valid."""
SEEDS = [
    EXAMPLE,
    EXAMPLE + '\n[[sink]]\ntype = "forward"\nname = "relay"\nhost = "192.0.2.7"\nvia = "session"\n',
    'a.b = { c = [1, { d = "x" }], "e f" = 2 }\n[[t]]\n[[t]]\nk = """\nline "q"\n"""\n',
]
"""Documents the mutations start from: the example, a second sink, TOML's awkward corners."""
TOML_CHARACTERS = st.sampled_from([*"[]{}\"'=.,#\n\r\\ \t~%_-0123456789aeknstxz", "\u00e9"])
"""What, inserted, most often changes how TOML or the key scanner reads a document."""


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    """A seed document after a few characters set, inserted, deleted, repeated, or cut short."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        operation = draw(st.sampled_from(["insert", "set", "delete", "truncate", "repeat"]))
        at = draw(st.integers(0, len(text)))
        if operation == "insert":
            text = text[:at] + draw(st.one_of(TOML_CHARACTERS, st.text(max_size=8))) + text[at:]
        elif operation == "set":
            text = text[:at] + draw(TOML_CHARACTERS) + text[at + 1 :]
        elif operation == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
        elif operation == "truncate":
            text = text[:at]
        else:
            end = draw(st.integers(at, len(text)))
            text = text[:end] + text[at:end] + text[end:]
    return text


PLAUSIBLE = st.sampled_from(
    ['"console"', '"command"', '"forward"', '"cp850"', '"127.0.0.1"', '"10.0.0.0/8"', "0",
     "65536", "-1", "1.5", "true", '["ALERTS", "console"]', '"~/x"', '"rel/dir"', '"notify %s"',
     '{ ALERTS = ["popup"] }', '["console"]', '"session"', '""', '"%"']
)  # fmt: skip
"""Values the real keys take, or nearly."""
SECTIONS = {
    "[daemon]": [*DAEMON_KEYS],
    "[policy]": [*POLICY_KEYS],
    "[routing]": ["default", "aliases"],
    "[[sink]]": ["type", "name", *{key for sink in SINK_TYPES.values() for key in sink.keys}],
}


@st.composite
def settings_documents(draw: st.DrawFn) -> str:
    """The real sections and keys (and others), each given a plausible or any TOML value."""
    lines = []
    headers = draw(st.lists(st.sampled_from([*SECTIONS, "[other]"]), max_size=5))
    for index, header in enumerate(headers):
        if header in headers[:index] and header != "[[sink]]":
            continue  # a table defined twice is not TOML
        lines.append(header)
        keys = st.one_of(st.sampled_from(SECTIONS.get(header, ["x"])), BARE_KEY)
        for key in draw(st.lists(keys, max_size=5, unique=True)):
            lines.append(f"{key} = {draw(st.one_of(PLAUSIBLE, VALUES))}")
    return "\n".join(lines) + "\n"


TEXTS = st.one_of(
    mutated_text(), settings_documents(), st.text(max_size=300), st.text(TOML_CHARACTERS)
)
PATH = "/etc/messengerd/messengerd.toml"
PROBLEM_LINE = re.compile(rf"{re.escape(PATH)}:(\d+): (key ('.*'|\".*\"): )?\S")


def check_settings(text: str) -> None:
    """parse_settings gives Settings, or SettingsError whose lines name lines of `text`."""
    try:
        with within():
            result = parse_settings(text, PATH, sink_types=SINK_TYPES)
    except SettingsError as exc:
        assert exc.problems
        for line in exc.lines():
            match = PROBLEM_LINE.match(line)
            assert match, line
            assert 1 <= int(match[1]) <= text.count("\n") + 1, line
            assert len(line.splitlines()) == 1, line
    else:
        assert isinstance(result, Settings)


@FUZZ
@given(TEXTS)
def test_settings_text_gives_settings_or_settings_error(text):
    check_settings(text)


@pytest.mark.parametrize("key", ["[daemon]\ndata_dir", '[[sink]]\ntype = "command"\ntemp_dir'])
@pytest.mark.parametrize("path", ["~nosuchuser0/x", "~a\\u0000b"])
def test_a_home_relative_path_for_no_such_user_is_a_settings_error(key, path):
    # Found by this fuzzer: Path.expanduser() raised RuntimeError or ValueError out of it.
    with pytest.raises(SettingsError):
        parse_settings(f'{key} = "{path}"\n', PATH, sink_types=SINK_TYPES)
    check_settings(f'{key} = "{path}"\n')


@pytest.mark.parametrize("separator", ["\\u000b", "\\u000c", "\\u0085", "\\u2028", "\\u2029"])
def test_every_problem_is_one_line_whatever_the_command_holds(separator):
    # Found by this fuzzer: the character after % went into the message as it was.
    text = f'[[sink]]\ntype = "command"\ncommand = "notify %{separator}"\n'
    with pytest.raises(SettingsError) as caught:
        parse_settings(text, PATH, sink_types=SINK_TYPES)
    assert all(len(line.splitlines()) == 1 for line in caught.value.lines())


# --- key_lines ----------------------------------------------------------------------------


def key_path(written: str) -> tuple[str, ...]:
    """The parts of a key as written (`a."b c"`), as tomllib reads them."""
    document, path = tomllib.loads(f"{written} = 0"), ()
    while isinstance(document, dict):
        ((part, document),) = document.items()
        path = (*path, part)
    return path


@st.composite
def toml_with_key_lines(draw: st.DrawFn) -> tuple[str, dict[tuple, int]]:
    """A TOML document and the line of each `key = value` in it, by the key's full path
    (tables, an array of tables' index, dotted parts) as key_lines names it."""
    lines: list[str] = []
    expected: dict[tuple, int] = {}
    arrays: dict[str, int] = {}
    table: tuple = ()
    for index, header in enumerate(draw(st.lists(st.one_of(st.none(), BARE_KEY), max_size=4))):
        lines += draw(st.sampled_from([[], [""], ["# [not] a = header"]]))
        if header is None:
            table = (f"t{index}",)
            lines.append(f"[{table[0]}]{draw(COMMENTS)}")
        else:
            arrays[header] = arrays.get(header, -1) + 1
            table = (f"a{header}", arrays[header])
            lines.append(f"[[ a{header} ]]")
        for key, value in draw(st.lists(st.tuples(KEYS, VALUES), max_size=4)):
            written = draw(st.sampled_from(["", "d.", '"d" . '])) + key
            # Lines so far, counting those inside multi-line strings and arrays.
            expected[(*table, *key_path(written))] = sum(1 + x.count("\n") for x in lines) + 1
            lines.append(f"{written} = {value}{draw(COMMENTS)}")
    return "\n".join(lines) + "\n", expected


@settings(max_examples=100, deadline=None)
@given(toml_with_key_lines())
def test_key_lines_finds_each_key_on_the_line_it_was_written(document):
    text, expected = document
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assume(False)  # a key written twice
    with within():
        found = key_lines(text)
    assert {path: found.get(path) for path in expected} == expected


@FUZZ
@given(TEXTS)
def test_key_lines_never_raises_on_what_tomllib_accepts(text):
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return
    with within():
        lines = key_lines(text)
    assert all(1 <= line <= text.count("\n") + 1 for line in lines.values())


@pytest.mark.parametrize("text", ["[daemon", "[[[x]", 'k = "\\', "z", "\n[", "a = [1 }]"])
def test_key_lines_ends_on_any_text(text):
    with within(0.5):
        key_lines(text)


@pytest.mark.parametrize("nested", ["[" * 1000 + "]" * 1000, "{a = " * 1000 + "1" + "}" * 1000])
def test_values_nested_past_the_recursion_limit_are_a_settings_error(nested):
    # Not a property: Hypothesis raises the recursion limit while it runs one.
    try:
        check_settings(f"[daemon]\nbind = {nested}\n")
    except RecursionError:
        # Said short: pytest takes seconds to format a thousand frames.
        pytest.fail("RecursionError out of parse_settings", pytrace=False)


# --- history --since ----------------------------------------------------------------------

AGES = st.builds(
    lambda number, spaces, unit: f"{number}{spaces}{unit}",
    st.one_of(st.integers(0, 10**6), st.integers(0, 10**40), st.just(int("9" * 400))),
    st.sampled_from(["", " ", "\t", "  "]),
    st.sampled_from(list("smhdwSMHDWxy")),
)
ZONES = st.one_of(
    st.just(UTC), st.builds(timezone, st.timedeltas(timedelta(hours=-23), timedelta(hours=23)))
)


@st.composite
def iso_like(draw: st.DrawFn) -> str:
    """A real datetime's ISO form, cut, extended or with a character changed."""
    text = draw(st.datetimes(timezones=st.one_of(st.none(), ZONES))).isoformat()
    at = draw(st.integers(0, len(text)))
    changed = text[:at] + draw(st.sampled_from(list("0:-+TZz. 9"))) + text[at + 1 :]
    extended = text + draw(st.sampled_from(["Z", "+99:00", "+23:59", ".5", " ", "x"]))
    return draw(st.sampled_from([text, text[:at], changed, extended]))


SINCE = st.one_of(
    AGES,
    iso_like(),
    st.sampled_from(["today", "Yesterday", " TODAY ", "tomorrow", "now", ""]),
    st.text(max_size=40),
    st.from_regex(r"\s*[0-9٠-٩]{1,30}\s*[smhdw]\s*", fullmatch=True),
)


@FUZZ
@given(SINCE, st.datetimes(timezones=ZONES))
def test_since_gives_an_aware_instant_or_value_error(text, now):
    # `now` from year 1 to 9999: an age or `yesterday` then overflows.
    try:
        with within():
            when = parse_since(text, now=now)
    except ValueError as exc:
        assert str(exc).startswith("--since ")
        return
    assert isinstance(when, datetime) and when.utcoffset() is not None
    if now.utcoffset() == timedelta(0):
        assert when.utcoffset() == timedelta(0)  # as history calls it: the instant in UTC
