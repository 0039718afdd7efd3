"""Shared fixtures: the packet captures in ../shared/captures and the real tools tests need."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need(condition: bool, reason: str) -> None:
    """Skip with `reason` when `condition` fails; in CI (CI=true) fail instead of skipping."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def need_tool(name: str, package: str) -> str:
    """The path of a real client or server binary, e.g. smbclient from Debian's `smbclient`."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    need(path is not None, f"{name} not installed (apt-get install {package})")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def captures() -> Path:
    """The folder of real packet captures, read in place (never copied into the repo)."""
    need(CAPTURES.is_dir(), f"packet captures not found at {CAPTURES} (../shared/captures)")
    return CAPTURES


@pytest.fixture(scope="session")
def capture(captures: Path):
    """A function from a capture's file name to its path, skipping when that file is absent."""

    def find(name: str) -> Path:
        path = captures / name
        need(path.is_file(), f"capture {name} not found in {captures}")
        return path

    return find
