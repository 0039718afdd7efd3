"""The data directory's modes, private or shared with a control group, and which data
directory a front end picks (tests/e2e/test_control_group.py tries them with real users)."""

from __future__ import annotations

import grp
import os
import stat

import pytest

from messengerd.config import options
from messengerd.control.protocol import CONTROL_SOCKET
from messengerd.core import datadir
from messengerd.core.datadir import ControlGroup, DataDirError

INBOX = "messages.sqlite3"


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_dir_is_its_owners_alone(tmp_path):
    data_dir = tmp_path / "data"
    datadir.prepare(data_dir, None, [INBOX])
    assert mode(data_dir) == 0o700
    assert mode(data_dir / INBOX) == 0o600


def test_shared_with_the_daemons_own_group_the_directory_needs_no_setgid(tmp_path):
    group = ControlGroup(grp.getgrgid(os.getegid()).gr_name, os.getegid())
    data_dir = tmp_path / "data"
    datadir.prepare(data_dir, group, [INBOX])
    assert mode(data_dir) == 0o750
    assert mode(data_dir / INBOX) == 0o640
    assert (data_dir / INBOX).stat().st_gid == group.gid


def test_shared_with_another_group_the_directory_passes_it_on(tmp_path):
    """setgid: the -wal and -shm files SQLite makes later belong to the group too."""
    if os.geteuid() != 0:
        pytest.skip("giving a file to a group not one's own needs root or membership")
    other = next(entry for entry in grp.getgrall() if entry.gr_gid != os.getegid())
    group = ControlGroup(other.gr_name, other.gr_gid)
    data_dir = tmp_path / "data"
    datadir.prepare(data_dir, group, [INBOX])
    assert mode(data_dir) == 0o2750
    (data_dir / "later").touch()
    assert (data_dir / "later").stat().st_gid == group.gid


def test_without_the_group_the_inbox_is_private_again(tmp_path):
    group = ControlGroup(grp.getgrgid(os.getegid()).gr_name, os.getegid())
    data_dir = tmp_path / "data"
    datadir.prepare(data_dir, group, [INBOX])
    datadir.prepare(data_dir, None, [INBOX])
    assert mode(data_dir / INBOX) == 0o600


def test_a_group_is_named_or_numbered():
    root = grp.getgrgid(0).gr_name
    assert ControlGroup.named(root) == ControlGroup.named("0") == ControlGroup(root, 0)


def test_a_missing_group_says_how_to_make_one():
    with pytest.raises(DataDirError) as caught:
        ControlGroup.named("no-such-group-here")
    assert str(caught.value) == (
        "there is no group 'no-such-group-here': create it (groupadd no-such-group-here) "
        "or name another with --control-group"
    )


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """The user's own data directory (by XDG_DATA_HOME) and a service directory, both absent."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home"))
    service = tmp_path / "service"
    monkeypatch.setattr(options, "SERVICE_DATA_DIR", service)
    own = options.default_data_dir()
    assert own == tmp_path / "home" / "messengerd"
    return own, service


def test_front_ends_use_the_users_own_daemon_when_there_is_one(homes):
    own, service = homes
    service.mkdir()
    own.mkdir(parents=True)
    (own / CONTROL_SOCKET).touch()
    assert options.front_end_data_dir(CONTROL_SOCKET) == own


def test_front_ends_find_the_service_when_the_user_has_no_daemon(homes):
    own, service = homes
    service.mkdir()
    own.mkdir(parents=True)
    (own / INBOX).touch()  # a Quick start's inbox, but no daemon running
    assert options.front_end_data_dir(CONTROL_SOCKET) == service
    assert options.front_end_data_dir(INBOX) == own


def test_front_ends_fall_back_to_the_users_own_without_a_service(homes):
    own, _ = homes
    assert options.front_end_data_dir(CONTROL_SOCKET) == own
