"""The daemon's alias table at start: the stored aliases.json joined with the configured
aliases, as Windows registered the computer and user names at every start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from messengerd.config.options import DaemonConfig
from messengerd.core.aliases import ALIAS_FILE, AliasFileError
from messengerd.daemon import Daemon


def config(data_dir: Path, *aliases: str) -> DaemonConfig:
    """A daemon built, never started: nothing here opens a socket."""
    return DaemonConfig(
        aliases=list(aliases) or ["RECVR"], computer_name="HOST1", data_dir=data_dir, store=False
    )


@pytest.fixture
def data_dir(tmp_path):
    return tmp_path / "data"


def test_a_corrupt_alias_file_stops_the_daemon_from_starting(data_dir):
    data_dir.mkdir()
    (data_dir / ALIAS_FILE).write_text("{oops")
    with pytest.raises(AliasFileError, match="fix or remove"):
        Daemon(config(data_dir))


def test_stored_names_the_table_refuses_are_skipped(data_dir):
    data_dir.mkdir()
    (data_dir / ALIAS_FILE).write_text(json.dumps({"aliases": ["BOB", "A" * 16, "recvr"]}))
    assert Daemon(config(data_dir, "RECVR")).aliases.texts() == ["BOB", "RECVR"]


def test_the_computer_name_is_protected_only_when_it_is_an_alias(data_dir):
    assert Daemon(config(data_dir, "HOST1", "BOB")).aliases.computer_name is not None
    assert Daemon(config(data_dir, "BOB")).aliases.computer_name is None
