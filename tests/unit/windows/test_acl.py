"""The control channel's token file on Windows: an explicit DACL, since Windows ignores POSIX
modes. The seam's fake records what SetNamedSecurityInfo would be given (Microsoft's
documentation of SetNamedSecurityInfo and PROTECTED_DACL_SECURITY_INFORMATION: the DACL
given replaces the file's and inherits nothing)."""

from __future__ import annotations

import json
import re
import sys

from messengerd.control import server
from messengerd.windows import acl
from tests.unit.windows.headers import defines, header

OWNER = "S-1-5-21-1004336348-1177238915-682003330-1001"


class FakeFileSecurity:
    def __init__(self) -> None:
        self.dacls: dict[str, list[acl.Allow]] = {}

    def own_sid(self) -> str:
        return OWNER

    def set_dacl(self, path: str, entries: list[acl.Allow]) -> None:
        self.dacls[path] = list(entries)


def mask(name: str) -> int:
    """An access mask of winnt.h, its `A | B | 0x1FF` expression worked out."""
    text = header("winnt.h")
    known = defines(text)
    expression = re.search(rf"#define {name} \((.*?)\)\s*$", text, re.MULTILINE)
    assert expression, name
    value = 0
    for term in expression.group(1).split("|"):
        term = term.strip()
        value |= known[term] if term in known else int(term, 0)
    return value


def test_the_masks_are_winnt_hs():
    assert mask("FILE_ALL_ACCESS") == acl.FILE_ALL_ACCESS
    assert mask("FILE_GENERIC_READ") == acl.FILE_GENERIC_READ


def test_the_token_file_admits_the_daemon_system_administrators_and_interactive_users_only():
    security = FakeFileSecurity()
    acl.protect_token_file("C:\\ProgramData\\messengerd\\control.tcp", security)
    (entries,) = security.dacls.values()
    assert {(entry.sid, entry.mask) for entry in entries} == {
        (OWNER, acl.FILE_ALL_ACCESS),
        ("S-1-5-18", acl.FILE_ALL_ACCESS),
        ("S-1-5-32-544", acl.FILE_ALL_ACCESS),
        ("S-1-5-4", acl.FILE_GENERIC_READ),
    }
    assert "S-1-1-0" not in {entry.sid for entry in entries}  # not Everyone


def test_the_control_server_protects_the_token_file_before_the_token_is_in_it(
    tmp_path, monkeypatch
):
    security = FakeFileSecurity()
    seen_empty = []

    def set_dacl(path: str, entries: list[acl.Allow]) -> None:
        with open(path, encoding="utf-8") as file:
            seen_empty.append(file.read() == "")
        security.dacls[path] = entries

    security.set_dacl = set_dacl  # type: ignore[method-assign]
    monkeypatch.setattr(acl, "Win32FileSecurity", lambda: security)
    monkeypatch.setattr(sys, "platform", "win32")
    path = tmp_path / "control.tcp"
    server._write_private(path, {"token": "secret"})
    monkeypatch.undo()
    assert seen_empty == [True]
    assert json.loads(path.read_text()) == {"token": "secret"}
