"""`messengerd tray --autostart on|off` on a freedesktop desktop: the autostart entry."""

from __future__ import annotations

import configparser
import shlex
import sys

from messengerd import cli
from messengerd.tray.autostart import DESKTOP_FILE


def test_autostart_on_writes_an_entry_that_starts_this_tray_and_off_removes_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    entry = tmp_path / "autostart" / DESKTOP_FILE

    assert cli.main(["tray", "--autostart", "on"]) == 0
    assert capsys.readouterr().out == f"messengerd tray will start when you log on ({entry})\n"
    desktop = configparser.ConfigParser(interpolation=None)
    desktop.read(entry)
    section = desktop["Desktop Entry"]
    assert section["Type"] == "Application"
    assert shlex.split(section["Exec"]) == [sys.executable, "-m", "messengerd", "tray"]

    assert cli.main(["tray", "--autostart", "off"]) == 0
    assert not entry.exists()
    assert "no longer" in capsys.readouterr().out
    assert cli.main(["tray", "--autostart", "off"]) == 0  # already off: nothing to undo


def test_an_unwritable_configuration_directory_is_one_line_and_exit_2(
    tmp_path, monkeypatch, capsys
):
    blocked = tmp_path / "config"
    blocked.write_text("a file where a directory should be")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(blocked))
    assert cli.main(["tray", "--autostart", "on"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("messengerd: cannot change the autostart entry: ")
    assert err.count("\n") == 1
