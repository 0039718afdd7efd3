"""The loopback test target as its users meet it: a test file of theirs, run by pytest in a
subprocess with the messengerd plugin, using the fixtures and every fault."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender import net_message_buffer_send
from messengerd.testing import MessengerController

pytest_plugins = ["pytester"]

PLUGIN = "messengerd.pytest_plugin"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

USER_TESTS = '''
"""An alerting tool's tests: it tells the operator on duty with net send."""

import pytest

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.sender import net_message_buffer_send


def notify_operator(text, **where):
    """The code under test."""
    return net_message_buffer_send("OPERATOR", text, fromname="UPSMON", **where)


def test_alert_reaches_the_operator(messenger_receiver):
    assert notify_operator("On battery, 12 min left", **messenger_receiver.send_options) == 0
    message = messenger_receiver.wait_for(lambda m: m.sender == "UPSMON")
    assert (message.recipient, message.text) == ("OPERATOR", "On battery, 12 min left")


def test_alert_found_by_name_query(messenger_receiver):
    where = dict(messenger_receiver.send_options)
    del where["host"]
    notify_operator("found by broadcast", **where)
    assert messenger_receiver.wait_for().text == "found by broadcast"


def test_refused_name_is_name_not_found(messenger_receiver):
    messenger_receiver.faults.refused_names.add("operator")
    with pytest.raises(NetError) as error:
        notify_operator("anyone there?", **messenger_receiver.send_options)
    assert error.value.code == lmerr.NERR_NameNotFound


def test_smb_error_is_network_error(messenger_receiver):
    messenger_receiver.faults.smb_error = True
    with pytest.raises(NetError) as error:
        notify_operator("no room", **messenger_receiver.send_options)
    assert error.value.code == lmerr.NERR_NetworkError
    assert "ERRnoroom" in error.value.detail
    assert messenger_receiver.messages == []


def test_slow_receiver_is_network_error_for_an_impatient_sender(messenger_receiver):
    messenger_receiver.faults.reply_delay = 3.0
    with pytest.raises(NetError) as error:
        notify_operator("hurry", timeout=0.3, **messenger_receiver.send_options)
    assert error.value.code == lmerr.NERR_NetworkError
    assert "no reply" in error.value.detail


def test_slow_receiver_still_gets_a_patient_senders_message(messenger_receiver):
    messenger_receiver.faults.reply_delay = 0.2
    notify_operator("take your time", **messenger_receiver.send_options)
    assert messenger_receiver.wait_for().text == "take your time"


def test_lost_datagram_never_arrives(messenger_receiver):
    messenger_receiver.faults.drop_datagrams = True
    notify_operator("into the void", via="mailslot", **messenger_receiver.send_options)
    with pytest.raises(TimeoutError):
        messenger_receiver.wait_for(timeout=0.5)


@pytest.mark.messenger_aliases("PAGER")
def test_marker_names_the_aliases(messenger_receiver):
    net_message_buffer_send("PAGER", "beep", **messenger_receiver.send_options)
    assert messenger_receiver.wait_for().recipient == "PAGER"


def test_one_receiver_for_the_whole_run(messenger_receiver_session):
    notify_operator("shared receiver", **messenger_receiver_session.send_options)
    assert messenger_receiver_session.wait_for().text == "shared receiver"
'''


def plugin_options() -> list[str]:
    """Nothing once the pytest11 entry point is installed; until then, load it by name."""
    installed = any(entry.value == PLUGIN for entry in entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


def test_plugin_is_declared_as_a_pytest11_entry_point():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert project.get("entry-points", {}).get("pytest11") == {"messengerd": PLUGIN}


def test_a_users_tests_pass_with_the_fixtures_and_faults(pytester: pytest.Pytester):
    pytester.makeini("[pytest]\nmessenger_aliases = OPERATOR\n")
    pytester.makepyfile(test_alerts=USER_TESTS)
    result = pytester.runpytest_subprocess(*plugin_options(), "-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=9)


def test_a_failing_expectation_fails_the_users_test(pytester: pytest.Pytester):
    """The fixture can fail a test: a message that never comes is a TimeoutError."""
    pytester.makepyfile(
        test_silence="""
        def test_expects_a_message_nobody_sends(messenger_receiver):
            messenger_receiver.wait_for(timeout=0.2)
        """
    )
    result = pytester.runpytest_subprocess(*plugin_options(), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*TimeoutError: no matching message within 0.2 s*"])


# The controller itself, as a script or another test framework would drive it.


def test_controller_runs_again_after_stop_and_says_when_it_is_not_running():
    controller = MessengerController(["BOB"])
    with pytest.raises(RuntimeError, match="not running"):
        controller.ports  # noqa: B018 - the property is what is tested
    for round_trip in ("first run", "second run"):
        with controller:
            net_message_buffer_send("BOB", round_trip, **controller.send_options)
            assert controller.wait_for(lambda m, text=round_trip: m.text == text)
        with pytest.raises(RuntimeError, match="not running"):
            controller.ports  # noqa: B018
    controller.stop()  # harmless when stopped


def test_controller_with_a_bad_alias_fails_to_start_with_the_lmerr_code():
    with pytest.raises(NetError) as caught:
        MessengerController(["A-NAME-OF-20-LETTERS"]).start()
    assert caught.value.code == lmerr.ERROR_INVALID_PARAMETER
