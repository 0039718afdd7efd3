"""`messengerd tray --autostart on|off`: the tray app in the current user's Run key.

Windows starts every command listed under HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run
when that user logs on; one value named `messengerd tray` is ours. Through the registry seam
(messengerd.windows.registry.Registry), so it is tested against a fake.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import PureWindowsPath

from messengerd.windows.registry import HKEY_CURRENT_USER, Registry, RegistryError

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
VALUE_NAME = "messengerd tray"


def tray_command(python: str = sys.executable) -> str:
    """The command line Windows runs at logon: the tray under pythonw (no console window)."""
    interpreter = PureWindowsPath(python)
    if interpreter.name.lower() == "python.exe":
        interpreter = interpreter.with_name("pythonw.exe")
    return subprocess.list2cmdline([str(interpreter), "-m", "messengerd", "tray"])


def set_autostart(registry: Registry, enabled: bool, *, command: str | None = None) -> None:
    """Add (True) or remove (False) the tray's entry in the current user's Run key."""
    try:
        if enabled:
            registry.write_string(HKEY_CURRENT_USER, RUN_KEY, VALUE_NAME, command or tray_command())
        else:
            registry.delete_value(HKEY_CURRENT_USER, RUN_KEY, VALUE_NAME)
    except OSError as exc:
        raise RegistryError(f"cannot change {RUN_KEY}: {exc.strerror or exc}") from None


def autostart_command(registry: Registry) -> str | None:
    """The command the Run key starts at logon, or None when autostart is off."""
    value = registry.read(HKEY_CURRENT_USER, RUN_KEY, VALUE_NAME)
    return value if isinstance(value, str) else None
