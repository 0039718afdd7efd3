"""What the Windows service runs: the daemon with the machine-wide settings, until stopped.

Platform-neutral on purpose, so the same function that pythonservice.exe reaches through
MessengerdService.SvcDoRun is run for real in the tests on Linux, with fakes in place of the
event log and WTSSendMessageW.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from messengerd.commands.run import daemon_config
from messengerd.config.settings import Settings, load_settings
from messengerd.core.policy import Policy
from messengerd.daemon import Daemon
from messengerd.delivery import Sink
from messengerd.delivery.routing import SINK_TYPES, build_sinks
from messengerd.windows.service import EventLogSink
from messengerd.windows.wts import WtsApi, Wtsapi32, WtsPopupSink

log = logging.getLogger(__name__)


def service_sinks(
    settings: Settings, *, event_log: Callable[[str], object], wts: WtsApi | None
) -> list[Sink]:
    """The Application event log and the console popup, plus the settings' own [[sink]]s
    (a service has no console, so no console sink by default)."""
    sinks: list[Sink] = build_sinks(settings) if settings.sinks else []
    sinks.append(EventLogSink(event_log))
    sinks.append(WtsPopupSink(wts if wts is not None else Wtsapi32()))
    return sinks


async def run_service(
    stop: asyncio.Event,
    *,
    settings_file: Path,
    data: Path,
    event_log: Callable[[str], object],
    wts: WtsApi | None = None,
    started: Callable[[Daemon], object] | None = None,
) -> None:
    """Run the daemon with `settings_file` (if it exists) and state in `data` until `stop`."""
    if settings_file.is_file():
        settings = load_settings(settings_file, sink_types=SINK_TYPES)
    else:
        settings = Settings()
    config = daemon_config(argparse.Namespace(data_dir=data), settings)
    sinks = service_sinks(settings, event_log=event_log, wts=wts)
    daemon = Daemon(config, sinks, policy=Policy(**settings.policy_arguments()))
    await daemon.start()
    if started is not None:
        started(daemon)
    try:
        await stop.wait()
    finally:
        await daemon.stop()
