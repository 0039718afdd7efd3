"""The Windows package imports everywhere: Win32-only modules load only on Windows."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import messengerd.windows

MODULES = sorted(info.name for info in pkgutil.iter_modules(messengerd.windows.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_every_windows_module_imports_here(name):
    importlib.import_module(f"messengerd.windows.{name}")
    if sys.platform != "win32":
        assert not {"win32service", "win32serviceutil", "servicemanager", "winreg"} & set(
            sys.modules
        )
