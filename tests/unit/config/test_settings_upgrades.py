"""Upgrades: every settings file an earlier messengerd accepted loads in this one.

settings_corpus/ holds files as earlier versions accepted them, each named by the date and
commit of the version that did (each was checked with that version's own `config check`
when it was added; its first comment says so). Files are added, never edited: a user's file
on disk does not change when messengerd does.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from messengerd.commands.run import daemon_config
from messengerd.config.settings import load_settings
from messengerd.delivery.routing import SINK_TYPES, build_sinks, unwrap

CORPUS = Path(__file__).parent / "settings_corpus"
FILES = sorted(CORPUS.glob("*.toml"))


def no_options() -> argparse.Namespace:
    """`messengerd run` with no command-line option: the file alone decides."""
    return argparse.Namespace()


def test_the_corpus_has_a_file_from_every_version_that_changed_the_keys():
    commits = {path.name.split("-")[3] for path in FILES}
    assert {"e8b60a6", "8dba0c6", "d6da69e"} <= commits


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_a_settings_file_an_earlier_version_accepted_loads_and_builds_a_daemon(path: Path):
    settings = load_settings(path, sink_types=SINK_TYPES)
    config = daemon_config(no_options(), settings)
    sinks = build_sinks(settings, stream=io.StringIO())
    assert sinks, "a daemon always has a sink (the console when none is configured)"
    assert config.retention == settings.store  # no [store] in any of them: the defaults
    assert settings.store.max_messages == 100_000


def test_the_retired_notify_sink_is_read_noted_and_left_out_of_routes():
    path = CORPUS / "2026-11-23-e8b60a6-full-with-notify.toml"
    settings = load_settings(path, sink_types=SINK_TYPES)
    assert [sink.name for sink in settings.sinks] == ["console", "popup"]
    assert settings.routing.default == ["console"]
    assert settings.notes == [
        f"{path}:26: sink 'tray': type 'notify' is no longer needed and is ignored: the tray "
        "and every control-channel subscriber get every message; remove this [[sink]] and "
        "its routes"
    ]
    names = [unwrap(sink).name for sink in build_sinks(settings, stream=io.StringIO())]
    assert names == ["console", "popup"]


def test_an_alias_routed_only_to_the_tray_reaches_no_sink_but_the_subscribers():
    path = CORPUS / "2026-11-23-e8b60a6-alias-to-the-tray-only.toml"
    settings = load_settings(path, sink_types=SINK_TYPES)
    assert settings.routing.aliases == {"NIGHTSHIFT": [], "OPS": ["log"]}
    assert len(settings.notes) == 1


def test_config_check_shows_the_note_and_says_ok(capsys):
    from messengerd.cli import main

    assert main(["config", "check", str(CORPUS / "2026-11-23-e8b60a6-full-with-notify.toml")]) == 0
    out, err = capsys.readouterr()
    assert out.endswith(": OK\n")
    assert "sink 'tray': type 'notify' is no longer needed" in err
