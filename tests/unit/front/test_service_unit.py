"""The systemd unit starts messengerd with a command line the CLI accepts."""

import configparser
import shlex
from pathlib import Path

from messengerd.cli import build_parser

UNIT = Path(__file__).resolve().parents[3] / "service" / "messengerd.service"


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def test_exec_start_parses_as_a_messengerd_run_command_line():
    argv = shlex.split(unit()["Service"]["ExecStart"])
    assert Path(argv[0]).name == "messengerd"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert str(args.data_dir) == "/var/lib/messengerd"


def test_unit_runs_unprivileged_with_only_the_bind_capability():
    service = unit()["Service"]
    assert service["User"] == "messengerd"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["RestartPreventExitStatus"] == "2"
