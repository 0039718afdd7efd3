"""The systemd unit: what it asks of systemd, read as text (tests/interop/test_service_sandbox.py
runs it under its sandbox; tests/integration/test_service_install.py has systemd check it)."""

import configparser
import shlex
import tomllib
from pathlib import Path

import pytest

from messengerd import service_linux
from messengerd.cli import build_parser
from messengerd.commands.run import OPEN_FILES_NEEDED
from messengerd.config.settings import parse_settings
from messengerd.delivery.routing import SINK_TYPES

REPOSITORY = Path(__file__).resolve().parents[3]
UNIT = REPOSITORY / "service" / "messengerd.service"
VENV = Path("/opt/messengerd")
"""Where the README and service/README.md install messengerd for the service."""


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_the_shipped_unit_is_the_one_service_install_writes():
    documentation = (VENV / service_linux.DOCS / "service" / "README.md").as_uri()
    rendered = service_linux.render_unit(f"{VENV}/bin/messengerd", documentation)
    assert UNIT.read_text(encoding="utf-8") == rendered, (
        "regenerate service/messengerd.service with service_linux.render_unit"
    )


def test_exec_start_parses_as_a_messengerd_run_command_line():
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert argv[0] == f"{VENV}/bin/messengerd"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert str(args.data_dir) == "/var/lib/messengerd"
    assert args.control_group == unit()["Service"]["Group"] == "messengerd"


def test_unit_runs_unprivileged_with_only_the_bind_capability():
    service = unit()["Service"]
    assert service["User"] == "messengerd"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["NoNewPrivileges"] == "yes"
    assert service["RestrictAddressFamilies"] == "AF_INET AF_UNIX"
    assert service["RestartPreventExitStatus"] == "2"


def test_unit_stops_nothing_else():
    """Conflicts=nmbd smbd silently ended the host's file sharing; a taken port is exit 2."""
    assert not unit().has_option("Unit", "Conflicts")
    assert not any(key.startswith("ExecStartPre") for key in unit()["Service"])


def test_open_files_allow_every_session_and_control_connection():
    limit = int(unit()["Service"]["LimitNOFILE"])
    assert limit == service_linux.LIMIT_NOFILE
    assert limit >= OPEN_FILES_NEEDED > 1024  # above a login session's soft limit


def test_documentation_is_a_file_the_install_puts_there():
    documentation = unit()["Unit"]["Documentation"]
    installed = Path(documentation.removeprefix("file://")).relative_to(VENV)
    data_files = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["tool"]["setuptools"][
        "data-files"
    ]
    assert "service/README.md" in data_files[str(installed.parent)]
    assert installed.name == "README.md"


def test_the_settings_file_it_writes_is_valid():
    text = service_linux.SETTINGS_TEMPLATE.format(path="/etc/messengerd/messengerd.toml")
    settings = parse_settings(text, "/etc/messengerd/messengerd.toml", sink_types=SINK_TYPES)
    assert settings.daemon.aliases is None  # all commented: the defaults stand


@pytest.mark.parametrize(
    "program",
    ["/home/alice/venv/bin/messengerd", "/root/.local/bin/messengerd", "/tmp/v/bin/messengerd"],
)
def test_install_refuses_a_messengerd_the_sandbox_hides(program):
    with pytest.raises(service_linux.ServiceError, match="cannot see"):
        service_linux.check_visible(Path(program))


def test_install_takes_a_messengerd_in_opt():
    service_linux.check_visible(VENV / "bin" / "messengerd")
