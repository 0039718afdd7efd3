"""The WTS popup sink against a fake WtsApi that follows Microsoft's documentation of
WTSGetActiveConsoleSessionId (0xFFFFFFFF while no session is attached to the console) and
WTSSendMessageW (bWait FALSE: returns at once with pResponse IDASYNC; a session that does not
exist fails with ERROR_FILE_NOT_FOUND)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from messengerd.core.message import Message
from messengerd.windows import wts
from tests.unit.windows.headers import defines, header

ERROR_FILE_NOT_FOUND = 2


class FakeWts:
    def __init__(self, console: int = 1, sessions: frozenset[int] = frozenset({1})) -> None:
        self.console = console
        self.sessions = sessions
        self.shown: list[tuple[int, str, str, int, int]] = []

    def active_console_session(self) -> int:
        return self.console

    def send_message(self, session: int, title: str, text: str, style: int, timeout: int) -> int:
        if session not in self.sessions:
            raise OSError(ERROR_FILE_NOT_FOUND, "The system cannot find the file specified.")
        self.shown.append((session, title, text, style, timeout))
        return wts.IDASYNC


def message(text: str = "Line one\nline two", sender: str = "ALICE") -> Message:
    return Message(
        sender=sender, recipient="BOB", text=text, path="session", peer="ALICE<00> (LANA 0)",
        received_at=datetime(2026, 12, 5, 7, 15, 44, tzinfo=UTC),
    )  # fmt: skip


@pytest.mark.asyncio
async def test_each_message_pops_up_in_the_console_session_as_xp_showed_it():
    fake = FakeWts()
    await wts.WtsPopupSink(fake).deliver(message())
    [(session, title, text, style, timeout)] = fake.shown
    assert (session, title, style, timeout) == (1, "Messenger Service", wts.STYLE, 0)
    heading, blank, *body = text.split("\r\n")
    assert heading.startswith("Message from ALICE to BOB on ")
    assert (blank, body) == ("", ["Line one", "line two"])


@pytest.mark.asyncio
async def test_control_characters_a_sender_sends_are_shown_not_obeyed():
    fake = FakeWts()
    await wts.WtsPopupSink(fake).deliver(message("ring\x07 \x1b[2J\u202egnp.exe", "EV\x1bIL"))
    text = fake.shown[0][2]
    assert "Message from EV<ESC>IL to BOB" in text
    assert text.endswith("ring<BEL> <ESC>[2J<U+202E>gnp.exe")
    assert not any(ord(char) < 0x20 and char not in "\r\n" for char in text)


@pytest.mark.asyncio
async def test_with_nobody_at_the_console_the_message_is_only_logged(caplog):
    fake = FakeWts(console=wts.NO_CONSOLE_SESSION)
    with caplog.at_level(logging.INFO, logger="messengerd.windows.wts"):
        await wts.WtsPopupSink(fake).deliver(message())
    assert fake.shown == []
    assert "no one at the console" in caplog.text


@pytest.mark.asyncio
async def test_a_failed_popup_is_logged_not_raised(caplog):
    fake = FakeWts(console=2)  # the console session vanished between the two calls
    await wts.WtsPopupSink(fake).deliver(message())
    assert "popup in session 2 failed" in caplog.text


def test_style_and_response_codes_match_the_sdk_headers():
    values = defines(header("winuser.h")) | defines(header("wtsapi32.h"))
    values["MB_ICONINFORMATION"] = values["MB_ICONASTERISK"]
    assert values["MB_OK"] == wts.MB_OK
    assert values["MB_ICONINFORMATION"] == wts.MB_ICONINFORMATION
    assert values["MB_SETFOREGROUND"] == wts.MB_SETFOREGROUND
    assert values["IDASYNC"] == wts.IDASYNC
