"""The Windows service: `messengerd service install|remove|start|stop|status`, and its body.

The service control manager is reached through one seam, `ServiceControl`; the real one is
pywin32's win32serviceutil/win32service. Installed as XP's Messenger was set up to run, and
more robust: delayed automatic start (after the network is up), restart on failure (three
times, a minute apart, counters reset after a day), the daemon's settings in
%PROGRAMDATA%\\messengerd\\messengerd.toml and its state in %PROGRAMDATA%\\messengerd\\data,
each message and each error in the Application event log, and each message shown in the
console session (windows.wts) unless the settings turn popups off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from messengerd.core.message import Message
from messengerd.tray.text import visible_text

SERVICE_NAME = "messengerd"
DISPLAY_NAME = "messengerd (Messenger service receiver)"
DESCRIPTION = (
    "Receives Windows Messenger-service messages (net send, NetMessageBufferSend, WinPopup) "
    "and shows them in the console session."
)
SERVICE_CLASS = "messengerd.windows.service.MessengerdService"
"""What pythonservice.exe imports to run the service (win32serviceutil.InstallService)."""

RESTART_DELAY_MS = 60_000
"""Milliseconds before the service manager restarts a failed service."""
RESTARTS = 3
"""Restarts after failures; the counter resets after FAILURE_RESET_SECONDS."""
FAILURE_RESET_SECONDS = 86_400

# winsvc.h / winerror.h
SC_ACTION_RESTART = 1
ERROR_ACCESS_DENIED = 5
ERROR_SERVICE_ALREADY_RUNNING = 1056
ERROR_SERVICE_DOES_NOT_EXIST = 1060
ERROR_SERVICE_NOT_ACTIVE = 1062
ERROR_SERVICE_MARKED_FOR_DELETE = 1072
ERROR_SERVICE_EXISTS = 1073

STATES = {
    1: "stopped",
    2: "starting",
    3: "stopping",
    4: "running",
    5: "resuming",
    6: "pausing",
    7: "paused",
}
"""SERVICE_STATUS.dwCurrentState (winsvc.h SERVICE_STOPPED .. SERVICE_PAUSED)."""
NOT_INSTALLED = "not installed"


def program_data() -> Path:
    """%PROGRAMDATA%\\messengerd: the machine-wide settings and state of the service."""
    return Path(os.environ.get("PROGRAMDATA", r"C:\ProgramData")) / "messengerd"


def settings_path() -> Path:
    return program_data() / "messengerd.toml"


def data_dir() -> Path:
    return program_data() / "data"


@dataclass(frozen=True)
class FailureAction:
    """One SC_ACTION of SERVICE_FAILURE_ACTIONS: what to do, and after how many ms."""

    kind: int
    delay_ms: int


FAILURE_ACTIONS = tuple(FailureAction(SC_ACTION_RESTART, RESTART_DELAY_MS) for _ in range(RESTARTS))


class ServiceControl(Protocol):
    """The service control manager calls (advapi32, through pywin32).

    Each raises OSError with the Win32 error code as `winerror` (and errno) on failure.
    """

    def install(self, *, python_class: str, delayed: bool) -> None:
        """CreateService (auto start), its description, and ChangeServiceConfig2 with
        SERVICE_CONFIG_DELAYED_AUTO_START_INFO when `delayed`."""
        ...

    def set_failure_actions(self, actions: tuple[FailureAction, ...], reset_seconds: int) -> None:
        """ChangeServiceConfig2(SERVICE_CONFIG_FAILURE_ACTIONS)."""
        ...

    def remove(self) -> None:
        """DeleteService."""
        ...

    def start(self) -> None:
        """StartService."""
        ...

    def stop(self) -> None:
        """ControlService(SERVICE_CONTROL_STOP)."""
        ...

    def state(self) -> int:
        """QueryServiceStatus: dwCurrentState."""
        ...


class ServiceCommandError(Exception):
    """A service command failed; the message says what happened and what to do."""


def _code(exc: OSError) -> int | None:
    """The Win32 error of a failed call: OSError(winerror, strerror) puts it in errno."""
    return exc.errno


def _explain(exc: OSError, action: str) -> ServiceCommandError:
    code = _code(exc)
    if code == ERROR_ACCESS_DENIED:
        return ServiceCommandError(
            f"cannot {action} the service: access is denied; run this in an elevated "
            "PowerShell (Run as administrator)"
        )
    if code == ERROR_SERVICE_DOES_NOT_EXIST:
        return ServiceCommandError(
            "the messengerd service is not installed: run `messengerd service install` first"
        )
    if code == ERROR_SERVICE_EXISTS:
        return ServiceCommandError(
            "the messengerd service is already installed: `messengerd service remove` first "
            "to install it again"
        )
    if code == ERROR_SERVICE_MARKED_FOR_DELETE:
        return ServiceCommandError(
            "the messengerd service is being removed: close the Services console (services.msc) "
            "and try again"
        )
    detail = exc.strerror or str(exc)
    return ServiceCommandError(f"cannot {action} the service: {detail} (error {code})")


def install(control: ServiceControl) -> str:
    """Install the service with delayed auto start and restart on failure."""
    try:
        control.install(python_class=SERVICE_CLASS, delayed=True)
        control.set_failure_actions(FAILURE_ACTIONS, FAILURE_RESET_SECONDS)
    except OSError as exc:
        raise _explain(exc, "install") from None
    return (
        f"installed {SERVICE_NAME} (delayed automatic start, restarted on failure); settings "
        f"in {settings_path()}; start it with `messengerd service start`"
    )


def remove(control: ServiceControl) -> str:
    try:
        if control.state() != 1:
            control.stop()
        control.remove()
    except OSError as exc:
        raise _explain(exc, "remove") from None
    return f"removed {SERVICE_NAME}; its settings and messages stay in {program_data()}"


def start(control: ServiceControl) -> str:
    return _change(control.start, "start", "started", ERROR_SERVICE_ALREADY_RUNNING, "running")


def stop(control: ServiceControl) -> str:
    return _change(control.stop, "stop", "stopped", ERROR_SERVICE_NOT_ACTIVE, "not running")


def _change(call: Callable[[], None], verb: str, done: str, already: int, state: str) -> str:
    """Start or stop; a service already in that state is no error ("is already running")."""
    try:
        call()
    except OSError as exc:
        if _code(exc) == already:
            return f"{SERVICE_NAME} is {'already ' if state == 'running' else ''}{state}"
        raise _explain(exc, verb) from None
    return f"{done} {SERVICE_NAME}"


def status(control: ServiceControl) -> str:
    """The service's state: one of STATES' words, or NOT_INSTALLED."""
    try:
        return STATES.get(control.state(), "unknown")
    except OSError as exc:
        if _code(exc) == ERROR_SERVICE_DOES_NOT_EXIST:
            return NOT_INSTALLED
        raise _explain(exc, "query") from None


class Win32ServiceControl:
    """The real ServiceControl: pywin32's win32serviceutil and win32service (Windows only)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise OSError("the service control manager exists only on Windows")

    if sys.platform == "win32":

        @staticmethod
        def _call(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            import pywintypes

            try:
                return function(*args, **kwargs)
            except pywintypes.error as exc:
                error = OSError(exc.winerror, exc.strerror)
                raise error from None

        def install(self, *, python_class: str, delayed: bool) -> None:
            import win32service
            import win32serviceutil

            self._call(
                win32serviceutil.InstallService,
                python_class,
                SERVICE_NAME,
                DISPLAY_NAME,
                startType=win32service.SERVICE_AUTO_START,
                description=DESCRIPTION,
                delayedstart=delayed,
            )

        def set_failure_actions(
            self, actions: tuple[FailureAction, ...], reset_seconds: int
        ) -> None:
            import win32service

            def change() -> None:
                manager = win32service.OpenSCManager(None, None, win32service.SC_MANAGER_CONNECT)
                try:
                    handle = win32service.OpenService(
                        manager, SERVICE_NAME, win32service.SERVICE_CHANGE_CONFIG
                    )
                    try:
                        win32service.ChangeServiceConfig2(
                            handle,
                            win32service.SERVICE_CONFIG_FAILURE_ACTIONS,
                            {
                                "ResetPeriod": reset_seconds,
                                "RebootMsg": None,
                                "Command": None,
                                "Actions": [(a.kind, a.delay_ms) for a in actions],
                            },
                        )
                    finally:
                        win32service.CloseServiceHandle(handle)
                finally:
                    win32service.CloseServiceHandle(manager)

            self._call(change)

        def remove(self) -> None:
            import win32serviceutil

            self._call(win32serviceutil.RemoveService, SERVICE_NAME)

        def start(self) -> None:
            import win32serviceutil

            self._call(win32serviceutil.StartService, SERVICE_NAME)

        def stop(self) -> None:
            import win32serviceutil

            self._call(win32serviceutil.StopService, SERVICE_NAME)

        def state(self) -> int:
            import win32serviceutil

            return int(self._call(win32serviceutil.QueryServiceStatus, SERVICE_NAME)[1])


class EventLogSink:
    """Writes each message to the Application event log (as the service's source)."""

    name = "eventlog"

    def __init__(self, write: Callable[[str], object]) -> None:
        self._write = write

    async def deliver(self, message: Message) -> None:
        when = message.received_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        line = (
            f"Message from {visible_text(message.sender)} to {visible_text(message.recipient)} "
            f"on {when} ({message.path}, {visible_text(message.peer)}):\r\n"
            f"{visible_text(message.text)}"
        )
        await asyncio.to_thread(self._write, line)


class EventLogHandler(logging.Handler):
    """Sends the daemon's warnings and errors to the Application event log."""

    def __init__(self, info: Callable[[str], object], error: Callable[[str], object]) -> None:
        super().__init__(logging.WARNING)
        self._info = info
        self._error = error

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = visible_text(self.format(record))
            (self._error if record.levelno >= logging.ERROR else self._info)(text)
        except Exception:
            self.handleError(record)


if sys.platform == "win32":
    import servicemanager
    import win32service
    import win32serviceutil

    class MessengerdService(win32serviceutil.ServiceFramework):
        """The service pythonservice.exe runs: the daemon, until the SCM says stop."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self._loop: asyncio.AbstractEventLoop | None = None
            self._stop: asyncio.Event | None = None

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
            if self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)

        def SvcDoRun(self) -> None:
            from messengerd.windows.service_main import run_service

            logging.getLogger().addHandler(
                EventLogHandler(servicemanager.LogWarningMsg, servicemanager.LogErrorMsg)
            )
            servicemanager.LogInfoMsg(f"{SERVICE_NAME} starting")

            async def main() -> None:
                self._loop = asyncio.get_running_loop()
                self._stop = asyncio.Event()
                await run_service(
                    self._stop,
                    settings_file=settings_path(),
                    data=data_dir(),
                    event_log=servicemanager.LogInfoMsg,
                )

            try:
                asyncio.run(main())
            except Exception as exc:
                servicemanager.LogErrorMsg(f"{SERVICE_NAME} failed: {visible_text(str(exc))}")
                raise
            servicemanager.LogInfoMsg(f"{SERVICE_NAME} stopped")
