"""`messengerd tray` attached to a running daemon through its control channel's client.

Aliases are requests on short connections; new messages arrive on one `subscribe`
connection, read by a thread that hands each to the GUI. When the daemon goes away the
thread tries again every RECONNECT_DELAY seconds, and once back, the tray catches up on
what the inbox stored meanwhile. When the daemon says it dropped messages this reader was
too slow for (the `dropped` event), the tray catches up from the inbox the same way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from messengerd.control.client import ControlClient
from messengerd.control.protocol import ControlError
from messengerd.core.lmerr import NetError
from messengerd.core.message import Message
from messengerd.core.store.inbox import StoredMessage

log = logging.getLogger(__name__)

CALL_TIMEOUT = 10.0
"""Seconds an alias request may take; adding one registers it by broadcast first."""

RECONNECT_DELAY = 5.0
"""Seconds between tries to reach a daemon that went away (restarted, upgraded)."""


def message_from_json(document: dict[str, Any]) -> Message:
    """A message from the control channel's `{"event": "message"}` (keys of `run --json`).

    With the inbox's id (the daemon stores before it tells), a StoredMessage, so the tray
    can mark it read; ValueError or KeyError for a document that is not a message.
    """
    fields = {
        "sender": str(document["from"]),
        "recipient": str(document["to"]),
        "text": str(document["text"]),
        "path": document["path"],
        "peer": str(document["peer"]),
        "received_at": datetime.fromisoformat(document["received_at"]),
    }
    if "codepage" in document:
        fields["codepage"] = str(document["codepage"])
    if isinstance(document.get("id"), int):
        return StoredMessage(**fields, id=document["id"], read=bool(document.get("read")))
    return Message(**fields)


class ControlAliases:
    """The daemon's alias table over the control channel (an AliasBackend)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def _request(self, op: str, **params: Any) -> dict[str, Any]:
        with ControlClient(self.data_dir, timeout=CALL_TIMEOUT) as client:
            return client.request(op, **params)

    def names(self) -> list[str]:
        reply = self._request("names.list")
        return [str(entry["name"]) for entry in reply.get("entries", [])]

    def add(self, name: str) -> None:
        self._request("names.add", name=name)

    def delete(self, name: str) -> None:
        self._request("names.del", name=name)


class Subscription:
    """Reads `subscribe` in a thread: `on_message(message)` and `on_connected()` run there.

    `on_connected()` means "catch up from the inbox": after a reconnect, and when the daemon
    dropped messages this reader fell behind on. Both callbacks must only hand work over
    (TrayApp.post); they are called from this thread, never the GUI's.
    """

    def __init__(
        self,
        data_dir: Path,
        on_message: Callable[[Message], None],
        on_connected: Callable[[], None],
    ) -> None:
        self.data_dir = data_dir
        self._on_message = on_message
        self._on_connected = on_connected
        self._client: ControlClient | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="messengerd-tray-subscribe", daemon=True
        )

    def start(self) -> None:
        """Connect once here (NoDaemonError, ControlError if that fails), then read on."""
        self._client = ControlClient(self.data_dir)
        self._thread.start()

    def _run(self) -> None:
        again = lost = False
        while not self._stopped.is_set():
            try:
                if again:
                    self._client = ControlClient(self.data_dir)
                    log.info("tray: attached to the daemon again")
                    lost = False
                    # Only after a reconnect: at the first, load() read the inbox already.
                    self._on_connected()
                self._read(catch_up=again)
            except (ControlError, NetError, OSError) as exc:
                if self._stopped.is_set():
                    return
                # Once per outage, not every RECONNECT_DELAY while the daemon is down.
                log.log(
                    logging.DEBUG if lost else logging.WARNING,
                    "tray: lost the daemon (%s); trying again every %.0f s",
                    exc,
                    RECONNECT_DELAY,
                )
                lost = True
            finally:
                self._close()
            again = True
            self._stopped.wait(RECONNECT_DELAY)

    def _read(self, catch_up: bool) -> None:
        assert self._client is not None
        for document in self._client.subscribe(on_dropped=self._dropped):
            if catch_up:
                # Once more, now the subscription surely stands: a message stored between
                # the first catch-up and `subscribe` would be missed otherwise.
                self._on_connected()
                catch_up = False
            try:
                message = message_from_json(document)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("tray: not a message from the daemon (%s): %.200r", exc, document)
                continue
            self._on_message(message)
        raise ControlError("the subscription ended")

    def _dropped(self, count: int) -> None:
        # Every dropped message is in the inbox already (stored before it is sent).
        log.warning("tray: fell %d message(s) behind the daemon; catching up from the inbox", count)
        self._on_connected()

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.close()

    def stop(self) -> None:
        """Stop reconnecting. The reader stays blocked in its read (a daemon thread, it ends
        with the process): closing its socket from here would wait on the reader's lock."""
        self._stopped.set()
