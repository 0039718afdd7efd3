"""The tray's alias window against a real daemon on its own loop (background.DaemonThread),
through LocalAliases: what a person sees when adding and removing names."""

from __future__ import annotations

import pytest

from messengerd.background import DaemonThread, LocalAliases
from messengerd.config.options import DaemonConfig
from messengerd.core import lmerr
from messengerd.daemon import Daemon
from messengerd.tray.attach import ControlAliases
from messengerd.tray.presenter import BackendTraits, Presenter

XORG = BackendTraits.of("xorg", has_notification=False, has_menu=False)


@pytest.fixture
def daemon(tmp_path):
    """A real daemon on free loopback ports, run as `tray --standalone` runs it."""
    config = DaemonConfig(
        bind="127.0.0.1",
        broadcast="127.255.255.255",
        name_port=0,
        datagram_port=0,
        session_port=0,
        rpc_port=0,
        aliases=["BOB"],
        data_dir=tmp_path,
    )
    runner = DaemonThread(Daemon(config))
    runner.start()
    yield runner
    runner.stop()


def test_alias_errors_come_out_as_words(daemon, tmp_path):
    for backend in (LocalAliases(daemon), ControlAliases(tmp_path)):
        presenter = Presenter(aliases=backend, traits=XORG)
        assert presenter.alias_names() == (["BOB"], None)
        assert presenter.add_alias("bob") == (
            "Cannot add bob: This message alias already exists locally. "
            f"(NERR_AlreadyExists {lmerr.NERR_AlreadyExists})"
        )
        assert presenter.remove_alias("NOBODY") == (
            "Cannot remove NOBODY: The name is not on the local computer. "
            f"(NERR_NotLocalName {lmerr.NERR_NotLocalName})"
        )
        too_long = presenter.add_alias("A" * 20)
        assert too_long.startswith("Cannot add " + "A" * 20 + ": The parameter is incorrect. (")
        assert too_long.endswith(f"(ERROR_INVALID_PARAMETER {lmerr.ERROR_INVALID_PARAMETER})")
        assert presenter.add_alias("  ") == "Cannot add an alias: type a name first."


def test_aliases_added_and_removed_through_the_tray_reach_the_daemon(daemon, tmp_path):
    presenter = Presenter(aliases=ControlAliases(tmp_path), traits=XORG)
    assert presenter.add_alias("carol") is None
    assert presenter.alias_names() == (["BOB", "CAROL"], None)
    assert [info.name for info in daemon.daemon.aliases.enum().entries] == ["BOB", "CAROL"]
    assert presenter.remove_alias("BOB") is None
    assert Presenter(aliases=LocalAliases(daemon)).alias_names() == (["CAROL"], None)
