"""Netbios() in netapi32 behind one seam, and NCBs awaited off the event loop.

`NetbiosApi` is every Win32 call the NCB path makes: Netbios() itself and the manual-reset
event it signals. `Netapi32` is the real one (ctypes; Windows only); tests use a fake that
follows Microsoft's documentation of Netbios() and the NCB structure.

`NcbRunner.submit()` sends an NCB with ASYNCH and an event, from a thread of its own that
waits for the event: the documentation says a pending NCB submitted with an event is
cancelled when the thread that submitted it ends, so that thread stays until the NCB is done.
Cancelling the awaiting task, or a timeout, issues NCBCANCEL and still waits (a bounded time)
for the NCB to complete, because the driver owns the NCB and its buffer until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import sys
import threading
from collections.abc import Callable
from typing import Protocol

from messengerd.windows import nb30
from messengerd.windows.nb30 import NCBStructure

log = logging.getLogger(__name__)

MAX_PENDING_NCBS = 1024
"""NCBs outstanding at once (each holds a waiting thread). The backend needs one NCBLISTEN
per alias per LANA, one NCBRECV per session and two datagram receives per LANA; XP's
Messenger reset each LANA for 254 sessions (nb30.RESET_CALLNAME)."""

CANCEL_GRACE = 5.0
"""Seconds to wait for an NCB to complete after NCBCANCEL before it is abandoned to its
thread (which keeps the NCB and its buffer alive until the driver lets go)."""

WAIT_INFINITE = None
"""`NetbiosApi.wait` timeout meaning INFINITE."""

UNAVAILABLE = (
    "the NetBIOS API (Netbios() in netapi32.dll) exists only on Windows: "
    "run without --backend netbios to use the sockets backend"
)


class NetbiosUnavailable(Exception):
    """Netbios() cannot be used here; the message says what to do instead, in one line."""


class NetbiosApi(Protocol):
    """The Win32 calls of the NCB path (nb30.h Netbios; synchapi.h events)."""

    def netbios(self, ncb: NCBStructure) -> int:
        """Netbios(&ncb): the NCB's return code, or 0 when an ASYNCH NCB is pending."""
        ...

    def create_event(self) -> int:
        """CreateEventW(NULL, TRUE, FALSE, NULL): a manual-reset event, not signalled."""
        ...

    def wait(self, event: int, timeout: float | None) -> bool:
        """WaitForSingleObject: True once `event` is signalled, False after `timeout` s."""
        ...

    def close_event(self, event: int) -> None:
        """CloseHandle(event)."""
        ...


class Netapi32:
    """The real NetbiosApi: netapi32!Netbios and kernel32's events through ctypes."""

    WAIT_OBJECT_0 = 0x00000000
    WAIT_TIMEOUT = 0x00000102
    INFINITE = 0xFFFFFFFF

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise NetbiosUnavailable(UNAVAILABLE)
        from ctypes import wintypes

        try:
            netapi32 = ctypes.WinDLL("netapi32")
            kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
            self._netbios = netapi32.Netbios
        except (OSError, AttributeError) as exc:
            raise NetbiosUnavailable(
                f"Netbios() cannot be loaded ({exc}): run without --backend netbios "
                "to use the sockets backend"
            ) from None
        self._netbios.argtypes = [ctypes.c_void_p]
        self._netbios.restype = ctypes.c_ubyte
        self._create_event = kernel32.CreateEventW
        self._create_event.argtypes = [
            ctypes.c_void_p,
            wintypes.BOOL,
            wintypes.BOOL,
            wintypes.LPCWSTR,
        ]
        self._create_event.restype = wintypes.HANDLE
        self._wait = kernel32.WaitForSingleObject
        self._wait.argtypes = [wintypes.HANDLE, wintypes.DWORD]
        self._wait.restype = wintypes.DWORD
        self._close = kernel32.CloseHandle
        self._close.argtypes = [wintypes.HANDLE]
        self._close.restype = wintypes.BOOL

    def netbios(self, ncb: NCBStructure) -> int:
        return int(self._netbios(ctypes.addressof(ncb)))

    def create_event(self) -> int:
        handle = self._create_event(None, True, False, None)
        if not handle:
            raise OSError(ctypes.get_last_error(), "CreateEventW failed")
        return int(handle)

    def wait(self, event: int, timeout: float | None) -> bool:
        milliseconds = self.INFINITE if timeout is None else max(0, int(timeout * 1000))
        result = self._wait(event, milliseconds)
        if result == self.WAIT_OBJECT_0:
            return True
        if result == self.WAIT_TIMEOUT:
            return False
        raise OSError(ctypes.get_last_error(), "WaitForSingleObject failed")

    def close_event(self, event: int) -> None:
        self._close(event)


class NcbRunner:
    """Runs NCBs: `call()` synchronously off the loop, `submit()` asynchronously with an event."""

    def __init__(self, api: NetbiosApi, *, max_pending: int = MAX_PENDING_NCBS) -> None:
        self.api = api
        self.max_pending = max_pending
        self.pending = 0
        """NCBs submitted and not yet complete (or abandoned after NCBCANCEL)."""

    async def call(self, ncb: NCBStructure) -> int:
        """Netbios(&ncb) without ASYNCH, in a worker thread; the NCB's return code."""
        return await asyncio.to_thread(self.api.netbios, ncb)

    async def submit(self, ncb: NCBStructure, *, timeout: float | None = None) -> int:
        """Submit `ncb` with ASYNCH and wait for it to complete; its final return code.

        `timeout`: seconds after which the NCB is cancelled with NCBCANCEL (the result is
        then the driver's, usually NRC_CMDCAN). Cancelling the caller cancels the NCB too
        and waits for it to complete before CancelledError propagates. Commands that
        NCBCANCEL cannot cancel (NCBADDNAME, NCBDELNAME, NCBRESET) are waited for.
        """
        if self.pending >= self.max_pending:
            # A bound the backend's own limits keep under; reaching it is a bug there.
            raise RuntimeError(f"{self.max_pending} NCBs already pending")
        loop = asyncio.get_running_loop()
        done: asyncio.Future[int] = loop.create_future()
        submitted: asyncio.Future[int] = loop.create_future()
        event = self.api.create_event()
        ncb.ncb_event = event
        ncb.ncb_command |= nb30.ASYNCH
        self.pending += 1
        done.add_done_callback(self._settled)
        command = nb30.COMMAND_NAMES.get(ncb.ncb_command & ~nb30.ASYNCH, "NCB?")
        waiter = threading.Thread(
            target=self._submit_and_wait,
            args=(ncb, event, _resolver(loop, submitted), _resolver(loop, done)),
            name=f"ncb-{command}-lana{ncb.ncb_lana_num}",
            daemon=True,
        )
        waiter.start()
        try:
            return await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            await self._cancel(ncb, submitted, done)
            return done.result() if done.done() else nb30.NRC_CMDTMO
        except asyncio.CancelledError:
            await self._cancel(ncb, submitted, done)
            raise

    def _settled(self, _: asyncio.Future[int]) -> None:
        self.pending -= 1

    def _submit_and_wait(
        self,
        ncb: NCBStructure,
        event: int,
        submitted: Callable[[int], None],
        resolve: Callable[[int], None],
    ) -> None:
        """In the NCB's own thread: Netbios(), then wait for the event, then report."""
        code = nb30.NRC_SYSTEM
        try:
            code = self.api.netbios(ncb)
            submitted(code)
            # 0 is "pending" or "already completed with NRC_GOODRET"; either way the
            # event is or will be signalled and ncb_cmd_cplt holds the final code.
            if code == nb30.NRC_GOODRET:
                self.api.wait(event, WAIT_INFINITE)
                code = ncb.ncb_cmd_cplt
        except OSError as exc:
            log.error("Netbios() wait failed: %s", exc)
            code = nb30.NRC_SYSTEM
        finally:
            submitted(code)  # a no-op when Netbios() returned: the future is set once
            self.api.close_event(event)
        resolve(code)

    async def _cancel(
        self, ncb: NCBStructure, submitted: asyncio.Future[int], done: asyncio.Future[int]
    ) -> None:
        """NCBCANCEL for a pending `ncb`, then wait (bounded) for it to complete.

        The NCB's thread may not have called Netbios() yet (a thread starts when the system
        gets round to it): an NCBCANCEL then would find nothing to cancel, and the NCB would
        be submitted after it and stay pending. So wait for the submission first.
        """
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(submitted), CANCEL_GRACE)
        if done.done():
            return
        cancel = nb30.new_ncb(nb30.NCBCANCEL, lana=ncb.ncb_lana_num)
        cancel.ncb_buffer = ctypes.addressof(ncb)
        result = await asyncio.to_thread(self.api.netbios, cancel)
        if result not in (nb30.NRC_GOODRET, nb30.NRC_CANOCCR):
            log.debug("NCBCANCEL answered %s", nb30.describe_return_code(result))
        try:
            await asyncio.wait_for(asyncio.shield(done), CANCEL_GRACE)
        except TimeoutError:
            log.warning(
                "an NCB did not complete %.0f s after NCBCANCEL; left to its thread",
                CANCEL_GRACE,
            )


def _resolver(loop: asyncio.AbstractEventLoop, done: asyncio.Future[int]) -> Callable[[int], None]:
    """Set `done` from another thread, unless the loop is gone."""

    def resolve(code: int) -> None:
        def settle() -> None:
            if not done.done():
                done.set_result(code)

        # RuntimeError: the loop closed, so nobody awaits this NCB any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)

    return resolve
