"""`messengerd tray --autostart on|off`: start the tray when the user logs on.

Windows: the current user's Run key (messengerd.windows.autostart). Linux and other
freedesktop desktops: a `.desktop` file in `$XDG_CONFIG_HOME/autostart` (the freedesktop
Desktop Application Autostart Specification), which GNOME, KDE, Xfce and LXQt read at logon.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

DESKTOP_FILE = "messengerd-tray.desktop"
"""Our file in the autostart directory."""


def autostart_dir(environ: dict[str, str] | None = None) -> Path:
    """$XDG_CONFIG_HOME/autostart, ~/.config/autostart when it is unset or not absolute."""
    environ = dict(os.environ) if environ is None else environ
    config = environ.get("XDG_CONFIG_HOME", "")
    base = Path(config) if config and Path(config).is_absolute() else Path.home() / ".config"
    return base / "autostart"


def desktop_entry(python: str = sys.executable) -> str:
    """The autostart entry: this interpreter's `messengerd tray`, which attaches to the
    running daemon (the user's own, or the system service)."""
    command = shlex.join([python, "-m", "messengerd", "tray"])
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=messengerd tray\n"
        "Comment=Windows Messenger-service messages (net send) at this desk\n"
        f"Exec={command}\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def set_autostart(enabled: bool, *, platform: str = sys.platform) -> str:
    """Turn starting at logon on or off; the one line that says what was done.

    OSError when the entry cannot be written or removed; NotImplementedError on a platform
    with neither a Run key nor freedesktop autostart (macOS).
    """
    if platform == "win32":
        from messengerd.windows import autostart
        from messengerd.windows.registry import RegistryError, WinReg

        try:
            autostart.set_autostart(WinReg(), enabled)
        except RegistryError as exc:
            raise OSError(str(exc)) from None
        where = f"HKCU\\{autostart.RUN_KEY}"
    elif platform == "darwin":
        raise NotImplementedError(
            "macOS: add `messengerd tray` to System Settings > General > Login Items"
        )
    else:
        path = autostart_dir() / DESKTOP_FILE
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(desktop_entry(), encoding="utf-8")
        else:
            path.unlink(missing_ok=True)
        where = str(path)
    if enabled:
        return f"messengerd tray will start when you log on ({where})"
    return f"messengerd tray will no longer start when you log on ({where})"
