"""pytest fixtures for testing software that sends Messenger messages (entry point pytest11).

`messenger_receiver` is a MessengerController running for one test; `messenger_receiver_session`
one shared by the whole run. The aliases they receive under come from the
`messenger_aliases` marker, else the `messenger_aliases` ini option, else RECEIVER.
messengerd.testing is imported only when a fixture is used: pytest loads this module in every
run of every project installed beside messengerd, and the daemon takes a while to import.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from messengerd.testing import MessengerController

ALIASES_OPTION = "messenger_aliases"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        ALIASES_OPTION,
        type="args",
        default=["RECEIVER"],
        help="names the messenger_receiver fixtures receive under (default: RECEIVER)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{ALIASES_OPTION}(*names): the names messenger_receiver receives under in this test",
    )


def _controller(aliases: list[str]) -> MessengerController:
    from messengerd.testing import MessengerController

    return MessengerController(aliases)


@pytest.fixture
def messenger_receiver(request: pytest.FixtureRequest) -> Iterator[MessengerController]:
    """A messengerd receiver on free loopback ports for this test; stopped after it."""
    marker = request.node.get_closest_marker(ALIASES_OPTION)
    aliases = list(marker.args) if marker else request.config.getini(ALIASES_OPTION)
    with _controller(aliases) as controller:
        yield controller


@pytest.fixture(scope="session")
def messenger_receiver_session(pytestconfig: pytest.Config) -> Iterator[MessengerController]:
    """One receiver for the whole test run; call clear() and faults.reset() between uses."""
    with _controller(pytestconfig.getini(ALIASES_OPTION)) as controller:
        yield controller
