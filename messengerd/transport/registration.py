"""Runs the B-node registration machine (messengerd.protocol.registration) on the event loop."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.protocol.events import Dropped
from messengerd.protocol.registration import (
    TRN_ID_MODULUS,
    Broadcast,
    LateObjection,
    NameConflict,
    NameRegistered,
    Registrar,
)
from messengerd.wire.names import NetBIOSName
from messengerd.wire.nbns import RegistrationResponse, WaitForAcknowledgement

log = logging.getLogger(__name__)


class RegistrationRunner:
    """Runs a Registrar on the event loop: sends its broadcasts, wakes it when due.

    `send` puts one packet on the wire to the broadcast address; it must not block.
    Hand it every registration answer the name service receives (`answer_received`).
    `label` names where the broadcasts go (an interface and its subnet) in the log.

    A registration request that cannot be sent (OSError: no route, the interface gone) ends
    that registration with NERR_NetworkError: a name nobody was asked about is not ours.
    """

    def __init__(
        self, registrar: Registrar, send: Callable[[bytes], None], *, label: str = ""
    ) -> None:
        self.registrar = registrar
        self.send = send
        self.label = label
        self._loop = asyncio.get_running_loop()
        self._waiting: dict[NetBIOSName, asyncio.Future[None]] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task = self._loop.create_task(self._run())

    @staticmethod
    def random_trn_id() -> int:
        """A first NAME_TRN_ID that differs between runs, so that a late answer to the last
        run's request is not taken for one to this run's (RFC 1002 §4.2.1.1)."""
        return random.randrange(TRN_ID_MODULUS)

    async def register(self, name: NetBIOSName) -> None:
        """Register `name`; return once it is ours, NetError(NERR_DuplicateName) if it is not."""
        name = NetBIOSName(name.name, name.suffix)
        if self._task.done():
            raise NetError(lmerr.NERR_NetworkError, "name registration is not running")
        future: asyncio.Future[None] = self._loop.create_future()
        self.registrar.register(name, self._loop.time())
        self._waiting[name] = future
        self._wake.set()
        try:
            await future
        except asyncio.CancelledError:
            self.registrar.cancel(name)
            raise
        finally:
            if self._waiting.get(name) is future:
                del self._waiting[name]

    def release(self, name: NetBIOSName) -> None:
        """Release `name` in the background (three broadcasts, BCAST_REQ_RETRY_TIMEOUT apart)."""
        self.registrar.release(name, self._loop.time())
        self._wake.set()

    def answer_received(
        self, response: RegistrationResponse | WaitForAcknowledgement, source: str
    ) -> None:
        """A registration response the name service received from `source`."""
        self.registrar.receive_answer(response, source)
        self._handle()

    async def close(self, *, release: bool = True) -> None:
        """Stop: registrations under way fail, and with `release` every name we hold is
        released first (this waits for the releases to be sent: about half a second)."""
        self._fail_waiting(NetError(lmerr.NERR_NetworkError, "messengerd is stopping"))
        if release and not self._task.done():
            self.registrar.release_all(self._loop.time())
            self._idle.clear()
            self._wake.set()
            idle = self._loop.create_task(self._idle.wait())
            # Bounded by the release schedule: retry_count sends, retry_timeout apart.
            await asyncio.wait([idle, self._task], return_when=asyncio.FIRST_COMPLETED)
            idle.cancel()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            while True:
                self.registrar.expire(self._loop.time())
                self._handle()
                if not self.registrar.busy:
                    self._idle.set()
                deadline = self.registrar.next_deadline()
                self._wake.clear()
                timeout = None if deadline is None else max(0.0, deadline - self._loop.time())
                try:
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        except Exception:
            log.exception("name registration stopped")
            self._fail_waiting(NetError(lmerr.NERR_NetworkError, "name registration failed"))
            raise

    def _fail_waiting(self, error: NetError) -> None:
        for name, future in list(self._waiting.items()):
            self.registrar.cancel(name)
            if not future.done():
                future.set_exception(error)

    def _handle(self) -> None:
        """Carry out what the machine has to say."""
        while True:
            event = self.registrar.next_event()
            if isinstance(event, Broadcast):
                log.debug("broadcasting name %s for %s %s", event.what, event.name, self._on())
                try:
                    self.send(event.data)
                except OSError as exc:
                    self._not_sent(event, exc)
            elif isinstance(event, NameRegistered):
                self._resolve(event.name, None)
            elif isinstance(event, NameConflict):
                log.warning(
                    "%s is registered by %s (RCODE %d): not ours",
                    event.name, event.owner, event.rcode,
                )  # fmt: skip
                self._resolve(
                    event.name,
                    NetError(lmerr.NERR_DuplicateName, f"{event.name} is held by {event.owner}"),
                )
            elif isinstance(event, LateObjection):
                log.warning(
                    "%s objects to %s (RCODE %d) after it became ours; keeping it",
                    event.owner, event.name, event.rcode,
                )  # fmt: skip
            elif isinstance(event, Dropped):
                log.debug("registration: ignored %s", event.reason)
            else:
                return

    def _on(self) -> str:
        return f"on {self.label}" if self.label else ""

    def _not_sent(self, event: Broadcast, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        if event.what != "registration":
            where = self._on()
            log.warning("name %s for %s %s not sent: %s", event.what, event.name, where, reason)
            return
        log.error(
            "%s not registered %s: its registration request could not be sent (%s)",
            event.name, self._on() or "", reason,
        )  # fmt: skip
        self.registrar.cancel(event.name)
        where = self.label or "the network"
        self._resolve(
            event.name, NetError(lmerr.NERR_NetworkError, f"cannot send to {where}: {reason}")
        )

    def _resolve(self, name: NetBIOSName, error: NetError | None) -> None:
        future = self._waiting.get(name)
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
