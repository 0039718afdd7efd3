"""Popups from the service, as XP's Messenger showed them: WTSSendMessageW to the console.

A service runs in session 0, which has no desktop since Vista, so a message box of its own
would be seen by nobody; WTSSendMessageW shows one in another session instead. This sink
shows each message in the active console session (WTSGetActiveConsoleSessionId), titled
"Messenger Service", with XP's "Message from FROM to TO on DATE TIME" line above the text,
and does not wait for the button (bWait FALSE), so a message nobody dismisses holds up
nothing. The two calls sit behind the `WtsApi` seam.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys
from typing import Protocol

from messengerd.core.message import Message
from messengerd.tray.text import visible_text

log = logging.getLogger(__name__)

TITLE = "Messenger Service"
"""The title bar XP's Messenger popups had."""
MB_OK = 0x00000000
MB_ICONINFORMATION = 0x00000040
MB_SETFOREGROUND = 0x00010000
STYLE = MB_OK | MB_ICONINFORMATION | MB_SETFOREGROUND
"""One OK button, the information icon, brought to the front (winuser.h)."""
IDASYNC = 32001
"""pResponse when bWait is FALSE: the box is up and nobody waits for it (wtsapi32.h)."""
NO_CONSOLE_SESSION = 0xFFFFFFFF
"""WTSGetActiveConsoleSessionId when no session is attached to the console."""
POPUP_TIMEOUT = 0
"""Seconds until the box closes by itself: 0, never, as XP's stayed until OK."""
MAX_POPUP_CHARS = 4095
"""Characters of text shown; Windows' popup showed at most 4095 (PROTOCOL.md §5)."""


class WtsApi(Protocol):
    """The two Win32 calls (kernel32 WTSGetActiveConsoleSessionId, wtsapi32 WTSSendMessageW)."""

    def active_console_session(self) -> int:
        """The session at the physical console, or NO_CONSOLE_SESSION."""
        ...

    def send_message(self, session: int, title: str, text: str, style: int, timeout: int) -> int:
        """WTSSendMessageW(WTS_CURRENT_SERVER_HANDLE, ..., bWait=FALSE): the response (IDASYNC);
        OSError with the Win32 error when the call fails."""
        ...


class Wtsapi32:
    """The real WtsApi, through ctypes (Windows only)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("WTSSendMessageW exists only on Windows")
        from ctypes import wintypes

        self._console = ctypes.WinDLL("kernel32").WTSGetActiveConsoleSessionId
        self._console.argtypes = []
        self._console.restype = wintypes.DWORD
        self._send = ctypes.WinDLL("wtsapi32", use_last_error=True).WTSSendMessageW
        self._send.argtypes = [
            wintypes.HANDLE,
            wintypes.DWORD,
            wintypes.LPWSTR,
            wintypes.DWORD,
            wintypes.LPWSTR,
            wintypes.DWORD,
            wintypes.DWORD,
            wintypes.DWORD,
            ctypes.POINTER(wintypes.DWORD),
            wintypes.BOOL,
        ]
        self._send.restype = wintypes.BOOL
        self._dword = wintypes.DWORD

    def active_console_session(self) -> int:
        return int(self._console())

    def send_message(self, session: int, title: str, text: str, style: int, timeout: int) -> int:
        response = self._dword(0)
        title_buffer = ctypes.create_unicode_buffer(title)
        text_buffer = ctypes.create_unicode_buffer(text)
        # Lengths are in bytes, without the terminating NUL (WTSSendMessageW documentation).
        ok = self._send(
            None, session, title_buffer, len(title) * 2, text_buffer, len(text) * 2,
            style, timeout, ctypes.byref(response), False,
        )  # fmt: skip
        if not ok:
            error = ctypes.get_last_error()
            raise OSError(error, ctypes.FormatError(error))
        return int(response.value)


def popup_text(message: Message) -> str:
    """XP's popup body: who to whom and when, a blank line, then the text, controls shown."""
    when = message.received_at.astimezone()
    heading = (
        f"Message from {visible_text(message.sender)} to {visible_text(message.recipient)} "
        f"on {when.strftime('%x')} {when.strftime('%X')}"
    )
    text = visible_text(message.text[:MAX_POPUP_CHARS]).replace("\n", "\r\n")
    return f"{heading}\r\n\r\n{text}"


class WtsPopupSink:
    """Shows each message in the active console session; the Windows service's default."""

    name = "wts-popup"

    def __init__(self, api: WtsApi) -> None:
        self.api = api

    async def deliver(self, message: Message) -> None:
        await asyncio.to_thread(self._show, popup_text(message))

    def _show(self, text: str) -> None:
        session = self.api.active_console_session()
        if session == NO_CONSOLE_SESSION:
            log.info("no one at the console: message not shown (it is in the inbox)")
            return
        try:
            self.api.send_message(session, TITLE, text, STYLE, POPUP_TIMEOUT)
        except OSError as exc:
            log.error("popup in session %d failed: %s", session, exc)
