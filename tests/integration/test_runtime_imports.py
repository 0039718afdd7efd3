"""The runtime imports no scapy: the daemon, the sender, the test target and every command but
`decode` load without it (scapy costs 40 MiB, 0.4 s, and opens a netlink socket at import that
the systemd unit's RestrictAddressFamilies answers by killing the daemon).

Each check is a fresh interpreter run with `-X importtime`, which lists every module the run
imports, so nothing a test imported first can hide or fake an import.
"""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import messengerd.commands

REPOSITORY = Path(messengerd.commands.__file__).resolve().parents[2]
"""The checkout this test's messengerd comes from: the subprocesses run there, so that they
import the same code (`-c` and `-m` put the working directory first on sys.path)."""

RUNTIME_MODULES = [
    "messengerd.daemon",
    "messengerd.cli",
    "messengerd.sender",
    "messengerd.testing",
    "messengerd.background",
]


def command_modules() -> list[str]:
    """Every `messengerd.commands` module but `decode`, which reads captures with scapy."""
    return [
        f"messengerd.commands.{module.name}"
        for module in pkgutil.iter_modules(messengerd.commands.__path__)
        if module.name != "decode"
    ]


def imported_modules(*arguments: str) -> list[str]:
    """The modules `python -X importtime ARGUMENTS` imports, from its import time report."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPOSITORY,
        check=True,
    )
    # Lines read `import time:   self [us] | cumulative | imported package`; names are indented.
    return [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    ]


def scapy_modules(modules: list[str]) -> list[str]:
    return [module for module in modules if module.split(".")[0] == "scapy"]


def test_the_import_report_sees_scapy_where_it_is_imported():
    """The check itself can fail: `messengerd decode`'s package does import scapy (and reads
    replies with messengerd.wire, not through the sender)."""
    modules = imported_modules("-c", "import messengerd.decode")
    assert "messengerd.decode.capture" in modules
    assert scapy_modules(modules)
    assert "messengerd.sender" not in modules


def test_runtime_modules_import_no_scapy():
    targets = [*RUNTIME_MODULES, *command_modules()]
    assert "messengerd.commands.send" in targets
    modules = imported_modules("-c", "; ".join(f"import {name}" for name in targets))
    assert set(targets) <= set(modules)
    assert scapy_modules(modules) == []


@pytest.mark.parametrize("arguments", [["--help"], ["names", "--help"], ["send", "--help"]])
def test_cli_help_imports_no_scapy(arguments):
    modules = imported_modules("-m", "messengerd", *arguments)
    assert "messengerd.cli" in modules
    assert scapy_modules(modules) == []
