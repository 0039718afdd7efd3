"""The tray's presenter, driven as the windows drive it: what pops up, what is counted, in words."""

from __future__ import annotations

import asyncio
import html
import locale
from datetime import UTC, datetime
from pathlib import Path

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.core.store.inbox import Inbox, StoredMessage
from messengerd.tray.attach import ControlAliases, message_from_json
from messengerd.tray.icon import badge_box, badge_text, draw_icon, read_badge
from messengerd.tray.presenter import (
    MAX_OPEN_POPUPS,
    NOTIFY_BODY_CHARS,
    NOTIFY_TITLE_CHARS,
    RECENT_COUNT,
    WINDOW_TITLE,
    BackendTraits,
    Notify,
    Presenter,
    RaisePopup,
    ShowPopup,
    UnreadChanged,
    alias_error_words,
)
from messengerd.tray.text import POPUP_MAX_ROWS, first_line, popup_rows, visible_text
from messengerd.tray.windows import menu_position
from tests.conftest import need

XORG = BackendTraits.of("xorg", has_notification=False, has_menu=False)
GTK = BackendTraits.of("gtk", has_notification=True, has_menu=True)
WIN32 = BackendTraits.of("win32", has_notification=True, has_menu=True)


def message(text: str, sender: str = "ALICE", recipient: str = "BOB") -> Message:
    return Message(sender, recipient, text, "session", "127.0.0.1", datetime.now(UTC))


def stored(data_dir: Path, *messages: Message) -> list[StoredMessage]:
    """Store `messages` in the inbox as the daemon does; they come back with their ids."""

    async def store_all() -> list[StoredMessage]:
        async with Inbox(data_dir) as inbox:
            return [StoredMessage.from_message(m, id=(await inbox.store(m)).id) for m in messages]

    return asyncio.run(store_all())


def shown(effects) -> list:
    return [effect.popup for effect in effects if isinstance(effect, ShowPopup)]


@pytest.fixture
def inbox(tmp_path) -> Inbox:
    stored(tmp_path)  # creates the file
    return Inbox(tmp_path, create=False)


def test_a_burst_of_20_pops_20_windows_none_lost_none_twice(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=XORG)
    presenter.load()
    burst = stored(tmp_path, *(message(f"burst {n}") for n in range(20)))

    popups = []
    for m in burst:
        popups += shown(presenter.receive(m))
    assert len(popups) == MAX_OPEN_POPUPS, "a flood queues instead of covering the screen"
    assert presenter.waiting == 20 - MAX_OPEN_POPUPS
    assert presenter.unread == 20
    assert len(presenter.history()) == 20

    # OK on each window in turn: every closed one lets the next queued one in.
    closed = 0
    while presenter.open_popups:
        popup = presenter.open_popups[0]
        popups += shown(presenter.popup_closed(popup.id))
        closed += 1
    assert closed == 20
    texts = [popup.text for popup in popups]
    assert sorted(texts) == sorted(f"burst {n}" for n in range(20))
    assert len({popup.id for popup in popups}) == 20
    assert presenter.unread == 0
    assert inbox.count(unread_only=True) == 0, "OK marks the message read in the inbox"


def test_stacked_popups_take_their_own_places(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=XORG)
    first, second, third = stored(tmp_path, message("one"), message("two"), message("three"))
    a, b = shown(presenter.receive(first)) + shown(presenter.receive(second))
    assert (a.slot, b.slot) == (0, 1)
    assert a.offset != b.offset
    presenter.popup_closed(a.id)
    (c,) = shown(presenter.receive(third))
    assert c.slot == 0, "the freed place is reused, the open window keeps its own"
    assert {popup.key for popup in presenter.open_popups} == {second.id, third.id}


def test_the_same_message_delivered_twice_pops_once(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=XORG)
    (m,) = stored(tmp_path, message("once"))
    assert len(shown(presenter.receive(m))) == 1
    assert presenter.receive(m) == []


def test_do_not_disturb_stores_without_popping(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=GTK, popups=True, dnd=True)
    quiet = stored(tmp_path, *(message(f"quiet {n}") for n in range(3)))
    for m in quiet:
        effects = presenter.receive(m)
        assert not any(isinstance(e, (ShowPopup, Notify)) for e in effects)
        assert isinstance(effects[-1], UnreadChanged)
    assert presenter.unread == 3
    assert [entry.message.text for entry in presenter.recent()] == ["quiet 2", "quiet 1", "quiet 0"]
    assert "do not disturb" in presenter.tooltip()
    assert presenter.set_dnd(False) == [], "what came during DND waits in history, unread"
    (loud,) = stored(tmp_path, message("loud"))
    effects = presenter.receive(loud)
    assert [p.text for p in shown(effects)] == ["loud"]
    assert any(isinstance(e, Notify) for e in effects)


def test_popups_queued_before_dnd_come_after_it(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=XORG)
    for m in stored(tmp_path, *(message(f"q {n}") for n in range(MAX_OPEN_POPUPS + 2))):
        presenter.receive(m)
    presenter.set_dnd(True)
    for popup in presenter.open_popups:
        assert shown(presenter.popup_closed(popup.id)) == [], "DND: the queue holds"
    assert [p.text for p in shown(presenter.set_dnd(False))] == ["q 8", "q 9"]


def test_notifications_where_the_backend_has_them_popups_where_not(tmp_path, inbox):
    (m,) = stored(tmp_path, message("hello"))
    with_notify = Presenter(store=inbox, traits=GTK)
    effects = with_notify.receive(m)
    assert with_notify.popups is False
    assert [type(e) for e in effects] == [UnreadChanged, Notify]
    without = Presenter(store=inbox, traits=XORG)
    assert without.popups is True
    assert [type(e) for e in without.receive(m)] == [UnreadChanged, ShowPopup]
    both = Presenter(store=inbox, traits=WIN32, popups=True)
    assert {type(e) for e in both.receive(m)} == {UnreadChanged, Notify, ShowPopup}


def test_notification_text_is_not_read_as_markup_and_fits_windows_limits():
    text = "<b>bold</b> & <a href='x'>link</a>\x07" + "é" * 400
    gtk = Presenter(traits=GTK).receive(message(text, sender="A" * 80))
    (note,) = [e for e in gtk if isinstance(e, Notify)]
    assert note.body.startswith("&lt;b&gt;bold&lt;/b&gt; &amp; &lt;a href='x'&gt;link")
    assert "&lt;BEL&gt;" in note.body, "the bell made visible, then escaped"
    assert len(note.body) <= NOTIFY_BODY_CHARS
    assert html.unescape(note.body[:-1]) in visible_text(text), "cut, never inside &amp;"
    assert len(note.title) <= NOTIFY_TITLE_CHARS

    win = Presenter(traits=WIN32).receive(message(text))
    (plain,) = [e for e in win if isinstance(e, Notify)]
    assert plain.body.startswith("<b>bold</b> & "), "Windows balloons take text as it is"
    assert len(plain.body) == NOTIFY_BODY_CHARS and plain.body.endswith("…")


def test_text_is_shown_exactly_with_controls_made_visible():
    raw = "Line 1\n\tLine 2 \x07\x1b[31mred\x00\x7f \u202eevil\u202c \u200b \x85 ü €"
    assert visible_text(raw) == (
        "Line 1\n\tLine 2 <BEL><ESC>[31mred<NUL><DEL> <U+202E>evil<U+202C> <U+200B> <U+0085> ü €"
    )
    (popup,) = shown(Presenter(traits=XORG).receive(message(raw, sender="EVE\x1b")))
    assert popup.title == WINDOW_TITLE
    assert popup.text == visible_text(raw)
    assert popup.header.startswith("Message from EVE<ESC> to BOB on ")
    assert visible_text("<b>") == "<b>", "no markup is interpreted, none is escaped either"


@pytest.fixture
def german_dates():
    """LC_TIME set to German (de_DE.UTF-8, made by .ci/setup's localedef) for one test."""
    before = locale.setlocale(locale.LC_TIME)
    try:
        locale.setlocale(locale.LC_TIME, "de_DE.UTF-8")
    except locale.Error:
        need(False, "locale de_DE.UTF-8 missing (localedef -i de_DE -f UTF-8 de_DE.UTF-8)")
    yield
    locale.setlocale(locale.LC_TIME, before)


def test_the_header_reads_as_windows_wrote_it_with_the_desktops_date_format(german_dates):
    m = Message(
        "ALICE", "BOB", "x", "session", "127.0.0.1", datetime(2024, 5, 14, 8, 30, 15, tzinfo=UTC)
    )
    local = m.received_at.astimezone()
    (popup,) = shown(Presenter(traits=XORG).receive(m))
    german = f"{local.day:02}.{local.month:02}.{local.year} {local:%H:%M:%S}"
    assert popup.header == f"Message from ALICE to BOB on {german}"
    (popup,) = shown(Presenter(traits=XORG, iso_dates=True).receive(m))
    assert popup.header == f"Message from ALICE to BOB on {local:%Y-%m-%d %H:%M:%S}"


def test_long_text_scrolls_instead_of_growing():
    assert popup_rows("short") == 1
    assert popup_rows("a\nb\nc") == 3
    assert popup_rows("x" * 10_000) == POPUP_MAX_ROWS
    assert popup_rows("\n" * 500) == POPUP_MAX_ROWS
    # Word-wrapped as Tk wraps: by width, at spaces, long words broken at the edge.
    assert popup_rows("aa bb cc", width=5) == 2
    assert popup_rows("aa bb cc", width=5, measure=lambda piece: 2 * len(piece)) == 3
    assert popup_rows("x" * 12, width=5) == 3


def test_recent_menu_lists_the_last_ten_newest_first_and_opens_them(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=WIN32, popups=False)
    messages = stored(tmp_path, *(message(f"R&D note {n}\nmore") for n in range(12)))
    for m in messages:
        presenter.receive(m)
    recent = presenter.menu()[0]
    assert recent.label == "Recent messages"
    assert len(recent.submenu) == RECENT_COUNT
    assert recent.submenu[0].label == "• ALICE: R&&D note 11", "unread marked; & literal on win32"
    assert recent.submenu[-1].action == ("open", messages[2].id)

    (popup,) = shown(presenter.open(messages[5].id))
    assert popup.text == "R&D note 5\nmore"
    assert presenter.open(messages[5].id) == [RaisePopup(popup.id)], "one message, one window"
    presenter.popup_closed(popup.id)
    assert presenter.unread == 11


def test_load_shows_what_the_inbox_holds_and_catch_up_what_came_meanwhile(tmp_path, inbox):
    stored(tmp_path, *(message(f"before {n}") for n in range(3)))
    presenter = Presenter(store=inbox, traits=XORG)
    assert presenter.load() == [UnreadChanged(3)]
    assert [e.message.text for e in presenter.recent()] == ["before 2", "before 1", "before 0"]
    assert presenter.open_popups == [], "old messages are counted, not popped up at start"
    stored(tmp_path, message("while away"))
    assert [p.text for p in shown(presenter.catch_up())] == ["while away"]
    assert shown(presenter.catch_up()) == []


def test_history_searches_text_and_names_and_marks_read(tmp_path, inbox):
    presenter = Presenter(store=inbox, traits=XORG)
    stored(
        tmp_path,
        message("UPS on battery", sender="UPSMON"),
        message("lunch?", sender="CAROL"),
        message("printer out of paper", sender="PRINTSRV", recipient="CAROL"),
    )
    assert [e.message.text for e in presenter.history()] == [
        "printer out of paper",
        "lunch?",
        "UPS on battery",
    ]
    assert [e.message.text for e in presenter.history("battery")] == ["UPS on battery"]
    assert [e.message.sender for e in presenter.history("carol")] == ["PRINTSRV", "CAROL"]
    keys = [e.key for e in presenter.history("ups")]
    assert presenter.mark_read(keys) == [UnreadChanged(2)]
    assert [e.read for e in presenter.history()] == [False, False, True]
    assert presenter.mark_read(keys, read=False) == [UnreadChanged(3)]


def test_without_an_inbox_the_tray_keeps_count_itself():
    presenter = Presenter(traits=XORG)
    popups = [p for n in range(3) for p in shown(presenter.receive(message(f"m {n}")))]
    assert presenter.unread == 3
    assert all(p.key < 0 for p in popups)
    presenter.popup_closed(popups[0].id)
    assert presenter.unread == 2
    assert [e.message.text for e in presenter.history("m 1")] == ["m 1"]
    assert first_line("\n\n  second\nthird") == "second"


def test_no_daemon_is_said_in_words(tmp_path):
    presenter = Presenter(aliases=ControlAliases(tmp_path), traits=XORG)
    names, error = presenter.alias_names()
    assert names == []
    assert error.startswith("Cannot list the aliases: no messengerd is running for ")
    assert alias_error_words("add X", TimeoutError()) == (
        "Cannot add X: the daemon did not answer in time."
    )
    assert "NoDaemonError" not in error
    assert alias_error_words("add X", NetError(lmerr.NERR_DuplicateName)).startswith(
        "Cannot add X: The name is in use as a message alias on another computer."
    )


def test_a_subscribed_message_keeps_its_inbox_id(tmp_path):
    (m,) = stored(tmp_path, message("über\nzwei"))
    back = message_from_json(m.to_json())
    assert isinstance(back, StoredMessage)
    assert (back.id, back.sender, back.text, back.received_at) == (
        m.id,
        m.sender,
        m.text,
        m.received_at,
    )
    plain = message_from_json(message("no id").to_json())
    assert not isinstance(plain, StoredMessage)
    with pytest.raises(KeyError):
        message_from_json({"from": "A"})


@pytest.mark.parametrize("size", [16, 22, 24, 32, 64])
def test_the_badge_reads_back_from_the_pixels_at_every_tray_size(size):
    assert [badge_text(n) for n in (0, 1, 9, 10, 250)] == ["", "1", "9", "9+", "9+"]
    for unread in (0, 1, 7, 9, 10, 250):
        icon = draw_icon(unread, size)
        assert icon.size == (size, size)
        # White font pixels whole on the red, compared with the font: a sharp, legible badge.
        assert read_badge(icon) == badge_text(unread)
    x0, y0, x1, y1 = badge_box("9+", size)
    assert (x1 - x0) * (y1 - y0) <= size * size // 2, "the letter still shows beside it"


def test_the_icon_corners_are_transparent_and_its_tile_is_not():
    for size in (16, 24, 64):
        icon = draw_icon(0, size)
        for corner in ((0, 0), (size - 1, 0), (0, size - 1)):
            assert icon.getpixel(corner)[3] == 0, f"corner {corner} at {size} px"
        assert icon.getpixel((size // 2, 1))[3] == 255
        assert icon.getpixel((1, size // 2))[3] == 255


def test_the_tray_menu_opens_beside_the_icon_with_room_for_its_submenu():
    screen = (1024, 768)
    # trayer at the bottom right: the menu above the icon, shifted left for "Recent".
    icon = (1000, 746, 24, 22)
    x, y = menu_position(icon, (150, 200), 260, screen)
    assert y + 200 <= 746, "the whole menu is above the icon: the pointer rests on no item"
    assert x + 150 + 260 <= 1024, "the submenu opens on the right, beside its parent"
    # A panel at the top left: the menu below the icon, at its left edge.
    assert menu_position((0, 0, 24, 24), (150, 200), 260, screen) == (0, 24)


def test_a_notification_that_fails_pops_the_message_up_instead(tmp_path, inbox):
    (m,) = stored(tmp_path, message("hello"))
    presenter = Presenter(store=inbox, traits=GTK)
    (note,) = [e for e in presenter.receive(m) if isinstance(e, Notify)]
    assert note.key == m.id, "a click opens this message"
    (popup,) = shown(presenter.notification_failed(note.key))
    assert popup.text == "hello"
    both = Presenter(store=inbox, traits=GTK, popups=True)
    both.receive(m)
    assert both.notification_failed(m.id) == [], "it popped up already"
