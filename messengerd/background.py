"""A daemon on its own asyncio loop in a background thread.

For `messengerd tray --standalone`, where the GUI toolkit owns the main thread, and for the
loopback test target (messengerd.testing), where the test does. Everything that crosses
over is handed across thread-safely: calls onto the daemon's loop with `call()`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from messengerd.daemon import Daemon

START_TIMEOUT = 20.0
"""Seconds for the listeners to open (and the aliases to register) before start() gives up."""

STOP_TIMEOUT = 10.0
"""Seconds stop() waits for sessions to close and the inbox to commit."""

CALL_TIMEOUT = 10.0
"""Seconds an alias change may take on the daemon's loop before the tray says so; adding one
registers it by broadcast first (three tries 250 ms apart: RFC 1002 §6, BCAST_REQ_RETRY_*)."""

T = TypeVar("T")


class DaemonThread:
    """Runs a Daemon on a new event loop in a thread: start() returns once it listens."""

    def __init__(
        self,
        daemon: Daemon,
        *,
        start_timeout: float = START_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        self.daemon = daemon
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="messengerd-daemon", daemon=True)

    def start(self) -> None:
        """Open the listeners; raise what Daemon.start() raised (ListenError) in this thread."""
        self._thread.start()
        if not self._ready.wait(self.start_timeout):
            self.stop()
            raise TimeoutError(f"the daemon did not start within {self.start_timeout:g} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = self._error or exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        try:
            await self.daemon.start()
        except BaseException as exc:
            self._error = exc
            return
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            await self.daemon.stop()

    def call(self, function: Callable[..., Coroutine[Any, Any, T]], *args: object) -> T:
        """`await function(*args)` on the daemon's loop; its result, or what it raised."""
        if self._loop is None or not self._thread.is_alive():
            raise ConnectionError("the daemon is not running")
        future = asyncio.run_coroutine_threadsafe(function(*args), self._loop)
        try:
            return future.result(CALL_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise

    def stop(self) -> None:
        """Close the listeners and wait (at most STOP_TIMEOUT) for the inbox to commit."""
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(self.stop_timeout)


class LocalAliases:
    """The in-process daemon's aliases through its API, changed on its own loop (AliasBackend)."""

    def __init__(self, runner: DaemonThread) -> None:
        self.runner = runner

    def names(self) -> list[str]:
        # NetMessageNameEnum with no size limit hands back the whole table at once; reading
        # it needs no trip to the daemon's loop (enum_aliases is safe from any thread).
        return [info.name for info in self.runner.daemon.enum_aliases().entries]

    def add(self, name: str) -> None:
        self.runner.call(self.runner.daemon.add_alias, name)

    def delete(self, name: str) -> None:
        self.runner.call(self.runner.daemon.delete_alias, name)
