"""The tray's model: messages, unread count, popups, do-not-disturb, aliases (DESIGN.md, issue 5).

Sans-I/O like the protocol machines: the windows and the tray icon are thin views that
call these methods on the GUI thread and carry out the effects they return. Nothing here
imports tkinter or pystray, so the tests drive it without a display.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.core.store.inbox import InboxError
from messengerd.tray.text import ELLIPSIS, first_line, shorten, visible_text, when_text

log = logging.getLogger(__name__)

WINDOW_TITLE = "Messenger Service"
"""The popup's title, as Windows' Messenger service (and `xdotool search --name`) know it."""

RECENT_COUNT = 10
"""Messages listed under "Recent messages" in the tray menu (issue 5)."""

MAX_OPEN_POPUPS = 8
"""Popups on screen at once; a flood queues behind them instead of covering the desktop."""

MAX_WAITING_POPUPS = 200
"""Popups queued behind the open ones; past that a message only goes to history (unread)."""

MAX_KEPT_MESSAGES = 500
"""Messages held in memory for the menu and, with no inbox (--no-store), for history."""

HISTORY_LIMIT = 500
"""Rows the history window lists for one search (the newest matching)."""

POPUP_CASCADE = 24
"""Pixels each stacked popup sits right of and below the one before, as dialogs cascade."""

NOTIFY_TITLE_CHARS = 63
NOTIFY_BODY_CHARS = 255
"""Longest notification title and text: NOTIFYICONDATAW's szInfoTitle[64] and szInfo[256]
(shellapi.h), each less its NUL; pystray's win32 backend fails on anything longer."""

TOOLTIP_CHARS = 127
"""Longest icon tooltip: NOTIFYICONDATAW's szTip[128] less its NUL (shellapi.h)."""


def header(message: Message, iso_dates: bool = False) -> str:
    """The popup's first line, in the words of Windows' Messenger service."""
    return (
        f"Message from {visible_text(message.sender)} to {visible_text(message.recipient)} "
        f"on {when_text(message, iso_dates)}"
    )


@dataclass(frozen=True)
class BackendTraits:
    """What the tray backend (pystray's, or none) can do, and what it reads into text."""

    name: str
    has_notification: bool = False
    has_menu: bool = False
    notification_markup: bool = False
    """Freedesktop notification servers may read <b>, <a href> and &amp; in the body."""
    menu_mnemonics: bool = False
    """Win32 menus take `&` as the mark of a keyboard shortcut."""

    @classmethod
    def of(
        cls,
        name: str,
        *,
        has_notification: bool,
        has_menu: bool,
        notification_markup: bool | None = None,
    ) -> BackendTraits:
        """The traits of pystray backend `name` (win32, gtk, appindicator, darwin, xorg).

        `notification_markup`: whether the notification service reads markup; None for
        pystray's own notifications (gtk and appindicator hand them to libnotify, which does).
        """
        if notification_markup is None:
            notification_markup = name in ("gtk", "appindicator")
        return cls(
            name,
            has_notification=has_notification,
            has_menu=has_menu,
            notification_markup=notification_markup,
            menu_mnemonics=name == "win32",
        )


class MessageStore(Protocol):
    """The part of messengerd.core.store.inbox.Inbox the tray uses (reads and the read flag)."""

    def query(
        self,
        *,
        sender: str | None = None,
        recipient: str | None = None,
        grep: str | None = None,
        limit: int | None = None,
        after_id: int | None = None,
    ) -> Sequence[Message]: ...

    def get(self, id: int) -> Message | None: ...

    def count(self, *, unread_only: bool = False) -> int: ...

    def latest_id(self) -> int: ...

    def mark_read(self, ids: Iterable[int] | None = None, *, read: bool = True) -> int: ...


class AliasBackend(Protocol):
    """The daemon's alias table, in process or over the control channel.

    Each call raises NetError (an lmerr code) when the daemon refuses, OSError or
    TimeoutError when it cannot be reached.
    """

    def names(self) -> list[str]: ...

    def add(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class Entry:
    """A message the tray knows: its key (the inbox id, or a negative serial) and read flag."""

    key: int
    message: Message
    read: bool = False

    @property
    def label(self) -> str:
        """`FROM: first line` for a menu item."""
        return f"{visible_text(self.message.sender)}: {first_line(self.message.text)}"


@dataclass(frozen=True)
class Popup:
    """One classic popup window: which message, where it stacks, and what it shows."""

    id: int
    slot: int
    key: int
    title: str
    header: str
    text: str

    @property
    def offset(self) -> int:
        """Pixels right and down from the first popup's place."""
        return self.slot * POPUP_CASCADE


@dataclass(frozen=True)
class ShowPopup:
    """Open a popup window."""

    popup: Popup


@dataclass(frozen=True)
class RaisePopup:
    """Bring an open popup to the front (its message was asked for again)."""

    popup_id: int


@dataclass(frozen=True)
class Notify:
    """Show a desktop notification; clicked, it opens message `key` (Presenter.open)."""

    title: str
    body: str
    key: int


@dataclass(frozen=True)
class UnreadChanged:
    """The unread count changed: redraw the badge, the tooltip and the menu."""

    unread: int


Effect = ShowPopup | RaisePopup | Notify | UnreadChanged


@dataclass(frozen=True)
class MenuEntry:
    """One tray menu item: `action` is what the app does when it is chosen."""

    label: str
    action: tuple[object, ...] = ()
    checked: bool | None = None
    enabled: bool = True
    submenu: tuple[MenuEntry, ...] = ()
    separator: bool = False


SEPARATOR = MenuEntry("", separator=True)


@dataclass
class Presenter:
    """Everything the tray shows and decides, driven from one (the GUI) thread."""

    store: MessageStore | None = None
    aliases: AliasBackend | None = None
    traits: BackendTraits = field(default_factory=lambda: BackendTraits("none"))
    popups: bool | None = None
    """Show the classic popup window; None: only where there are no notifications."""
    dnd: bool = False
    """Do not disturb: keep messages (unread) but pop nothing up."""
    iso_dates: bool = False
    """Dates and times as ISO 8601 instead of in the desktop's locale format."""

    def __post_init__(self) -> None:
        if self.popups is None:
            self.popups = not self.traits.has_notification
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._open: dict[int, Popup] = {}
        self._waiting: deque[Entry] = deque()
        self._next_popup = 1
        self._next_local_key = -1
        self._unread = 0
        self._latest_id = 0
        self._delivered: OrderedDict[int, None] = OrderedDict()

    # -- messages ------------------------------------------------------------------------

    def load(self) -> list[Effect]:
        """Fill the Recent menu and the unread count from the inbox (at start)."""
        if self.store is not None:
            self._latest_id = self.store.latest_id()
            for message in self.store.query(limit=RECENT_COUNT):
                self._keep(self._entry(message))
        return [self._count()]

    def catch_up(self) -> list[Effect]:
        """Back in touch with the daemon: take what the inbox stored while we were not."""
        if self.store is None:
            return []
        effects: list[Effect] = []
        for message in self.store.query(after_id=self._latest_id, limit=MAX_WAITING_POPUPS):
            effects += self.receive(message)
        return effects

    def receive(self, message: Message) -> list[Effect]:
        """A new message arrived: keep it, count it unread, and pop it up unless DND."""
        entry = self._entry(message)
        if entry.key in self._delivered:
            return []  # delivered twice (by the subscription and a catch-up): shown once
        self._delivered[entry.key] = None
        if len(self._delivered) > MAX_KEPT_MESSAGES:
            self._delivered.popitem(last=False)
        self._keep(entry)
        effects: list[Effect] = [self._count()]
        if self.dnd:
            return effects
        if self.traits.has_notification:
            effects.append(self._notification(entry))
        if self.popups:
            if len(self._open) < MAX_OPEN_POPUPS:
                effects.append(ShowPopup(self._new_popup(entry)))
            elif len(self._waiting) < MAX_WAITING_POPUPS:
                self._waiting.append(entry)
        return effects

    def open(self, key: int) -> list[Effect]:
        """The person asked to see a message (Recent menu, history): show it or raise it."""
        for popup in self._open.values():
            if popup.key == key:
                return [RaisePopup(popup.id)]
        entry = self._entries.get(key) or self._lookup(key)
        if entry is None:
            return []
        self._waiting = deque(waiting for waiting in self._waiting if waiting.key != key)
        # Asked for by hand, so shown even past MAX_OPEN_POPUPS: one click, one window.
        return [ShowPopup(self._new_popup(entry))]

    def notification_failed(self, key: int) -> list[Effect]:
        """A notification could not be shown: the message pops up instead, unless it did."""
        if self.popups or self.dnd:
            return []
        return self.open(key)

    def when(self, message: Message) -> str:
        """When `message` arrived, as the tray writes dates (locale's or ISO)."""
        return when_text(message, self.iso_dates)

    def popup_closed(self, popup_id: int) -> list[Effect]:
        """OK was pressed (or the window closed): the message is read; the next one pops."""
        popup = self._open.pop(popup_id, None)
        if popup is None:
            return []
        self._set_read([popup.key])
        effects: list[Effect] = [self._count()]
        effects += self._pop_waiting()
        return effects

    def mark_read(self, keys: Iterable[int], read: bool = True) -> list[Effect]:
        """Mark messages read (or unread again) from the history window."""
        self._set_read(list(keys), read)
        return [self._count()]

    def set_dnd(self, on: bool) -> list[Effect]:
        """Switch do-not-disturb; switched off, popups queued before it take free places."""
        self.dnd = on
        return [] if on else self._pop_waiting()

    def set_popups(self, on: bool) -> list[Effect]:
        """Switch the classic popup window on or off (notifications are not affected)."""
        self.popups = on
        if not on:
            self._waiting.clear()
            return []
        return self._pop_waiting()

    @property
    def unread(self) -> int:
        """Messages not yet marked read: in the inbox, or those kept here without one."""
        return self._unread

    @property
    def open_popups(self) -> list[Popup]:
        """The popups on screen, oldest first."""
        return list(self._open.values())

    @property
    def waiting(self) -> int:
        """Popups queued behind the open ones."""
        return len(self._waiting)

    def recent(self) -> list[Entry]:
        """The last RECENT_COUNT messages, newest first."""
        return list(reversed(self._entries.values()))[:RECENT_COUNT]

    def history(self, search: str = "") -> list[Entry]:
        """Messages for the history window, newest first; `search` matches text, From or To.

        The text matches as a substring ignoring case, a name as a whole name ignoring case.
        """
        search = search.strip()
        if self.store is not None:
            found: dict[int, Entry] = {}
            store, limit = self.store, HISTORY_LIMIT
            if search:
                results = [
                    store.query(grep=search, limit=limit),
                    store.query(sender=search, limit=limit),
                    store.query(recipient=search, limit=limit),
                ]
            else:
                results = [store.query(limit=limit)]
            for messages in results:
                for message in messages:
                    entry = self._entry(message)
                    found[entry.key] = entry
            rows = sorted(found.values(), key=lambda entry: entry.key, reverse=True)
            return rows[:HISTORY_LIMIT]
        folded = search.casefold()
        rows = [
            entry
            for entry in reversed(self._entries.values())
            if not folded
            or folded in entry.message.text.casefold()
            or folded in (entry.message.sender.casefold(), entry.message.recipient.casefold())
        ]
        return rows[:HISTORY_LIMIT]

    # -- words for the views -------------------------------------------------------------

    def tooltip(self) -> str:
        """The icon's tooltip: the service's name and what waits."""
        status = f"{self._unread} unread" if self._unread else "no unread messages"
        if self.dnd:
            status += ", do not disturb"
        return shorten(f"{WINDOW_TITLE}: {status}", TOOLTIP_CHARS)

    def menu_text(self, text: str) -> str:
        """A menu label as the backend will show it literally (`&&` for a win32 `&`)."""
        return text.replace("&", "&&") if self.traits.menu_mnemonics else text

    def menu(self) -> list[MenuEntry]:
        """The tray menu, top to bottom."""
        recent = tuple(
            MenuEntry(
                self.menu_text(("" if entry.read else "• ") + entry.label), ("open", entry.key)
            )
            for entry in self.recent()
        ) or (MenuEntry("(none yet)", enabled=False),)
        return [
            MenuEntry("Recent messages", submenu=recent),
            MenuEntry("History…", ("history",)),
            MenuEntry("Aliases…", ("aliases",)),
            SEPARATOR,
            MenuEntry("Popup window", ("popups",), checked=bool(self.popups)),
            MenuEntry("Do not disturb", ("dnd",), checked=self.dnd),
            SEPARATOR,
            MenuEntry("Quit", ("quit",)),
        ]

    # -- aliases -------------------------------------------------------------------------

    def alias_names(self) -> tuple[list[str], str | None]:
        """The daemon's aliases, and the reason in words when they cannot be had."""
        if self.aliases is None:
            return [], "No daemon is attached."
        try:
            return sorted(self.aliases.names()), None
        except Exception as exc:
            return [], alias_error_words("list the aliases", exc)

    def add_alias(self, name: str) -> str | None:
        """NetMessageNameAdd through the alias backend; None, or what went wrong in words."""
        return self._alias_call("add", name)

    def remove_alias(self, name: str) -> str | None:
        """NetMessageNameDel through the alias backend; None, or what went wrong in words."""
        return self._alias_call("delete", name)

    def _alias_call(self, operation: str, name: str) -> str | None:
        name = name.strip()
        verb = "add" if operation == "add" else "remove"
        if not name:
            return f"Cannot {verb} an alias: type a name first."
        if self.aliases is None:
            return f"Cannot {verb} {name}: no daemon is attached."
        try:
            getattr(self.aliases, operation)(name)
        except Exception as exc:
            return alias_error_words(f"{verb} {visible_text(name)}", exc)
        return None

    # -- inside --------------------------------------------------------------------------

    def _entry(self, message: Message) -> Entry:
        key = getattr(message, "id", None)
        if key is None:
            key = self._next_local_key
            self._next_local_key -= 1
        return Entry(key, message, read=bool(getattr(message, "read", False)))

    def _keep(self, entry: Entry) -> None:
        self._latest_id = max(self._latest_id, entry.key)
        self._entries[entry.key] = entry
        self._entries.move_to_end(entry.key)
        while len(self._entries) > MAX_KEPT_MESSAGES:
            self._entries.popitem(last=False)

    def _lookup(self, key: int) -> Entry | None:
        if self.store is None or key < 0:
            return None
        message = self.store.get(key)
        return None if message is None else self._entry(message)

    def _new_popup(self, entry: Entry) -> Popup:
        used = {popup.slot for popup in self._open.values()}
        slot = next(n for n in range(len(used) + 1) if n not in used)
        message = entry.message
        popup = Popup(
            id=self._next_popup,
            slot=slot,
            key=entry.key,
            title=WINDOW_TITLE,
            header=header(message, self.iso_dates),
            text=visible_text(message.text),
        )
        self._next_popup += 1
        self._open[popup.id] = popup
        return popup

    def _pop_waiting(self) -> list[Effect]:
        effects: list[Effect] = []
        if self.dnd or not self.popups:
            return effects
        while self._waiting and len(self._open) < MAX_OPEN_POPUPS:
            effects.append(ShowPopup(self._new_popup(self._waiting.popleft())))
        return effects

    def _notification(self, entry: Entry) -> Notify:
        message = entry.message
        title = shorten(
            f"Message from {visible_text(message.sender)} to {visible_text(message.recipient)}",
            NOTIFY_TITLE_CHARS,
        )
        body = visible_text(message.text)
        if self.traits.notification_markup:
            # Escape first, then cut, and never cut inside an entity such as &amp;.
            body = html.escape(body, quote=False)
            if len(body) > NOTIFY_BODY_CHARS:
                cut = body[: NOTIFY_BODY_CHARS - 1]
                amp = cut.rfind("&")
                if amp != -1 and ";" not in cut[amp:]:
                    cut = cut[:amp]
                body = cut + ELLIPSIS
            return Notify(title, body, entry.key)
        return Notify(title, shorten(body, NOTIFY_BODY_CHARS), entry.key)

    def _set_read(self, keys: list[int], read: bool = True) -> None:
        for key in keys:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries[key] = Entry(entry.key, entry.message, read)
        stored = [key for key in keys if key > 0]
        if self.store is not None and stored:
            try:
                self.store.mark_read(stored, read=read)
            except InboxError as exc:
                # The window still closes and the next popup still comes; only the flag waits.
                log.error("tray: cannot mark %d message(s) read: %s", len(stored), exc)

    def _count(self) -> UnreadChanged:
        if self.store is not None:
            try:
                self._unread = self.store.count(unread_only=True)
            except InboxError as exc:
                log.error("tray: cannot count unread messages: %s", exc)
        else:
            self._unread = sum(not entry.read for entry in self._entries.values())
        return UnreadChanged(self._unread)


def alias_error_words(what: str, exc: BaseException) -> str:
    """`Cannot add BOB: This message alias already exists locally. (NERR_AlreadyExists 2176)`."""
    if isinstance(exc, NetError):
        words = lmerr.describe(exc.code)
        if exc.code == lmerr.ERROR_INVALID_PARAMETER and exc.detail:
            words += f" ({exc.detail})"
        return f"Cannot {what}: {words} ({exc.name} {exc.code})"
    if isinstance(exc, TimeoutError):
        return f"Cannot {what}: the daemon did not answer in time."
    if isinstance(exc, OSError):
        return f"Cannot {what}: the daemon cannot be reached ({exc.strerror or exc})."
    return f"Cannot {what}: {exc}"
