"""`messengerd service` against a fake service control manager that answers as Microsoft
documents CreateService, DeleteService, StartService, ControlService and QueryServiceStatus:
ERROR_SERVICE_EXISTS (1073) for a second install, ERROR_SERVICE_DOES_NOT_EXIST (1060) for a
service not installed, ERROR_SERVICE_ALREADY_RUNNING (1056), ERROR_SERVICE_NOT_ACTIVE (1062),
and ERROR_ACCESS_DENIED (5) for changes without administrator rights."""

from __future__ import annotations

import argparse
import re
import sys

from messengerd.commands import service as command
from messengerd.windows import service
from tests.unit.windows.headers import defines, header


class FakeScm:
    def __init__(self, *, elevated: bool = True) -> None:
        self.elevated = elevated
        self.installed: dict | None = None
        self.running = False

    def _fail(self, code: int, text: str) -> None:
        raise OSError(code, text)

    def _need_service(self) -> None:
        if self.installed is None:
            self._fail(1060, "The specified service does not exist as an installed service.")

    def _need_rights(self) -> None:
        if not self.elevated:
            self._fail(5, "Access is denied.")

    def install(self, *, python_class: str, delayed: bool) -> None:
        self._need_rights()
        if self.installed is not None:
            self._fail(1073, "The specified service already exists.")
        self.installed = {"class": python_class, "delayed": delayed}

    def set_failure_actions(self, actions, reset_seconds: int) -> None:
        self._need_service()
        self.installed["failure"] = (actions, reset_seconds)

    def remove(self) -> None:
        self._need_rights()
        self._need_service()
        self.installed = None

    def start(self) -> None:
        self._need_service()
        if self.running:
            self._fail(1056, "An instance of the service is already running.")
        self.running = True

    def stop(self) -> None:
        self._need_service()
        if not self.running:
            self._fail(1062, "The service has not been started.")
        self.running = False

    def state(self) -> int:
        self._need_service()
        return 4 if self.running else 1


def run(action: str, scm: FakeScm, capsys) -> tuple[int, str, str]:
    code = command.cmd_service(argparse.Namespace(action=action), control=scm)
    out, err = capsys.readouterr()
    return code, out.strip(), err.strip()


def test_install_sets_delayed_start_and_restart_on_failure(capsys):
    scm = FakeScm()
    code, out, _ = run("install", scm, capsys)
    assert code == 0 and out.startswith("installed messengerd (delayed automatic start")
    assert scm.installed["class"] == "messengerd.windows.service.MessengerdService"
    assert scm.installed["delayed"] is True
    actions, reset = scm.installed["failure"]
    assert [(a.kind, a.delay_ms) for a in actions] == [(service.SC_ACTION_RESTART, 60_000)] * 3
    assert reset == 86_400


def test_the_lifecycle_reads_as_a_person_expects(capsys):
    scm = FakeScm()
    assert run("status", scm, capsys) == (0, "not installed", "")
    run("install", scm, capsys)
    assert run("status", scm, capsys)[1] == "stopped"
    assert run("start", scm, capsys)[1] == "started messengerd"
    assert run("start", scm, capsys)[1] == "messengerd is already running"
    assert run("status", scm, capsys)[1] == "running"
    assert run("stop", scm, capsys)[1] == "stopped messengerd"
    assert run("stop", scm, capsys)[1] == "messengerd is not running"
    run("start", scm, capsys)
    code, out, _ = run("remove", scm, capsys)  # stops it first
    assert code == 0 and out.startswith("removed messengerd") and scm.installed is None


def test_failures_say_what_to_do_in_one_line(capsys):
    assert run("start", FakeScm(), capsys) == (
        2, "", "messengerd: the messengerd service is not installed: run "
        "`messengerd service install` first",
    )  # fmt: skip
    scm = FakeScm()
    run("install", scm, capsys)
    assert "already installed: `messengerd service remove` first" in run("install", scm, capsys)[2]
    code, _, err = run("install", FakeScm(elevated=False), capsys)
    assert code == 2 and err.endswith("run this in an elevated PowerShell (Run as administrator)")


def test_elsewhere_the_command_points_at_the_service_readme(capsys, monkeypatch):
    # Neither Windows nor Linux (systemd's: tests/integration/test_service_install.py).
    monkeypatch.setattr(sys, "platform", "darwin")
    code = command.cmd_service(argparse.Namespace(action="install"))
    assert code == 2
    assert capsys.readouterr().err == command.ELSEWHERE + "\n"
    assert "service/README.md" in command.ELSEWHERE


def test_error_codes_and_states_match_the_sdk_headers():
    values = defines(header("winerror.h")) | defines(header("winsvc.h"))
    for name in ("ERROR_ACCESS_DENIED", "ERROR_SERVICE_ALREADY_RUNNING",
                 "ERROR_SERVICE_DOES_NOT_EXIST", "ERROR_SERVICE_NOT_ACTIVE",
                 "ERROR_SERVICE_MARKED_FOR_DELETE", "ERROR_SERVICE_EXISTS"):  # fmt: skip
        assert values[name] == getattr(service, name), name
    enum = re.search(r"SC_ACTION_RESTART\s*=\s*(\d+)", header("winsvc.h"))
    assert enum is not None and int(enum.group(1)) == service.SC_ACTION_RESTART
    header_states = {
        "SERVICE_STOPPED": "stopped", "SERVICE_START_PENDING": "starting",
        "SERVICE_STOP_PENDING": "stopping", "SERVICE_RUNNING": "running",
        "SERVICE_CONTINUE_PENDING": "resuming", "SERVICE_PAUSE_PENDING": "pausing",
        "SERVICE_PAUSED": "paused",
    }  # fmt: skip
    assert {values[name]: word for name, word in header_states.items()} == service.STATES
