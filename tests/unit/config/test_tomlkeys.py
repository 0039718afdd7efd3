"""The key-line scanner: where each key of a TOML document was written."""

from __future__ import annotations

import textwrap

from messengerd.config.tomlkeys import key_lines, key_text, line_of


def test_key_lines_follow_dotted_quoted_inline_and_array_keys():
    text = textwrap.dedent(
        """\
        top = 1
        a.b = 2  # comment with = and [x]
        "quoted.key" = 'lit'
        [t]
        inline = { x = 1, y = { z = 2 } }
        list = [
          { k = 1 },
          { k = 2 },
        ]
        [[arr]]
        v = 1
        [[arr]]
        v = 2
        [[arr.sub]]
        w = 3
        when = 1979-05-27 07:32:00
        after = true
        """
    )
    lines = key_lines(text)
    assert lines[("top",)] == 1
    assert lines[("a", "b")] == 2
    assert lines[("quoted.key",)] == 3
    assert lines[("t", "inline", "y", "z")] == 5
    assert lines[("t", "list", 1, "k")] == 8
    assert lines[("arr", 0, "v")] == 11
    assert lines[("arr", 1, "v")] == 13
    assert lines[("arr", 1, "sub", 0, "w")] == 15
    assert lines[("arr", 1, "sub", 0, "after")] == 17


def test_a_key_missing_from_the_scan_takes_its_nearest_tables_line():
    lines = key_lines('[daemon]\nbind = "127.0.0.1"\n\n[[sink]]\ntype = "console"\n')
    assert line_of(lines, ("daemon", "bind")) == 2
    assert line_of(lines, ("sink", 0, "json")) == 4, "not written: its [[sink]]'s line"
    assert line_of(lines, ("routing", "default")) == 1, "no such table: the first line"


def test_key_text_counts_array_entries_from_one_and_quotes_what_is_not_bare():
    assert key_text(("sink", 0, "command")) == "sink[1].command"
    assert key_text(("routing", "aliases", "A B")) == 'routing.aliases."A B"'
    assert key_text(("routing", "aliases", 'say "hi"')) == 'routing.aliases."say \\"hi\\""'
