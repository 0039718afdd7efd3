"""The tray's HKCU Run entry, against a fake registry with winreg's documented behaviour."""

from __future__ import annotations

from messengerd.windows import autostart
from tests.unit.windows.fake_registry import FakeRegistry


def test_autostart_on_adds_the_windowless_tray_and_off_removes_it():
    fake = FakeRegistry(elevated=False)  # HKCU needs no administrator
    autostart.set_autostart(
        fake, True, command=autostart.tray_command(r"C:\venv\Scripts\python.exe")
    )
    assert autostart.autostart_command(fake) == r"C:\venv\Scripts\pythonw.exe -m messengerd tray"
    assert fake.read("HKCU", autostart.RUN_KEY, "messengerd tray") is not None
    autostart.set_autostart(fake, False)
    assert autostart.autostart_command(fake) is None
    autostart.set_autostart(fake, False)  # already off: nothing to do, no error


def test_a_path_with_spaces_is_quoted_for_the_run_key():
    command = autostart.tray_command(r"C:\Program Files\Python311\python.exe")
    assert command == r'"C:\Program Files\Python311\pythonw.exe" -m messengerd tray'
