"""visible_text and json_line: every control a sender can send made visible or escaped, the
data itself never changed (issue 12, item 3)."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from messengerd.core.visible import KEEP_LINES, json_line, visible_text
from messengerd.wire.names import NetBIOSName

TERMINAL_ACTS_ON = ("Cc", "Cf", "Cs", "Zl", "Zp")
"""Controls, format characters (bidi, zero width), surrogates, line separators."""


def test_c0_c1_del_bidi_and_zero_width_are_shown_by_name():
    assert visible_text("\x1b]0;title\x07") == "<ESC>]0;title<BEL>"
    assert visible_text("a\rb\nc\td\x7f") == "a<CR>b<LF>c<HT>d<DEL>"
    assert visible_text("\x9b31m") == "<U+009B>31m"
    assert visible_text("\u202eexe.txt\u200b\u2066\u2069\ufeff") == (
        "<U+202E>exe.txt<U+200B><U+2066><U+2069><U+FEFF>"
    )
    assert visible_text("Jürgen: Kühlraum 7 °C — ok") == "Jürgen: Kühlraum 7 °C — ok"


def test_a_multi_line_view_keeps_its_line_breaks_and_tabs():
    assert visible_text("one\n\ttwo\x1b", KEEP_LINES) == "one\n\ttwo<ESC>"


@given(st.text())
def test_nothing_a_terminal_acts_on_is_left(text):
    shown = visible_text(text)
    assert not any(unicodedata.category(char) in TERMINAL_ACTS_ON for char in shown)


@given(st.dictionaries(st.text(), st.text()))
def test_json_line_reads_back_exactly_and_is_safe_to_print(document):
    line = json_line(document)
    assert json.loads(line) == document
    assert not any(unicodedata.category(char) in TERMINAL_ACTS_ON for char in line)


def test_a_netbios_name_off_the_wire_prints_visibly():
    assert str(NetBIOSName(b"\x1b[2JBOB", 0x03)) == "<ESC>[2JBOB<03>"
