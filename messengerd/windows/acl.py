"""Who may read the control channel's token file on Windows.

Windows ignores POSIX modes, so the 0600 that keeps the token private on Unix means nothing
there. The token file gets an explicit, protected DACL instead: the daemon's own account
(the service's, or the user running it), SYSTEM, Administrators, and INTERACTIVE, the users
logged on at the console or over Remote Desktop, who run the tray. Anyone else cannot read
the token and so cannot use the control channel. Through one seam (FileSecurity), so the
rule is tested against a fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SYSTEM_SID = "S-1-5-18"
ADMINISTRATORS_SID = "S-1-5-32-544"
INTERACTIVE_SID = "S-1-5-4"
"""Well-known SIDs ([MS-DTYP] §2.4.2.4): LocalSystem, BUILTIN\\Administrators, INTERACTIVE."""

FILE_ALL_ACCESS = 0x001F01FF
FILE_GENERIC_READ = 0x00120089
"""winnt.h access masks: full control, and read (data, attributes, extended attributes,
READ_CONTROL, SYNCHRONIZE)."""


@dataclass(frozen=True)
class Allow:
    """One access-allowed ACE: `sid` may do `mask`."""

    sid: str
    mask: int


def token_file_acl(owner_sid: str) -> list[Allow]:
    """The DACL of the token file: full control for the daemon's account, SYSTEM and
    Administrators; read for interactive users."""
    return [
        Allow(owner_sid, FILE_ALL_ACCESS),
        Allow(SYSTEM_SID, FILE_ALL_ACCESS),
        Allow(ADMINISTRATORS_SID, FILE_ALL_ACCESS),
        Allow(INTERACTIVE_SID, FILE_GENERIC_READ),
    ]


class FileSecurity(Protocol):
    """The Win32 calls: this process's account, and a file's DACL."""

    def own_sid(self) -> str:
        """The string SID of the account this process runs as."""
        ...

    def set_dacl(self, path: str, acl: list[Allow]) -> None:
        """Give `path` exactly `acl`, protected from inheritance."""
        ...


class Win32FileSecurity:
    """FileSecurity through pywin32 (OpenProcessToken, SetNamedSecurityInfo)."""

    def own_sid(self) -> str:
        import win32api
        import win32security

        token = win32security.OpenProcessToken(win32api.GetCurrentProcess(), 0x0008)  # QUERY
        sid = win32security.GetTokenInformation(token, win32security.TokenUser)[0]
        return str(win32security.ConvertSidToStringSid(sid))

    def set_dacl(self, path: str, acl: list[Allow]) -> None:
        import win32security

        dacl = win32security.ACL()
        for entry in acl:
            sid = win32security.ConvertStringSidToSid(entry.sid)
            dacl.AddAccessAllowedAce(win32security.ACL_REVISION, entry.mask, sid)
        win32security.SetNamedSecurityInfo(
            path,
            win32security.SE_FILE_OBJECT,
            win32security.DACL_SECURITY_INFORMATION
            | win32security.PROTECTED_DACL_SECURITY_INFORMATION,
            None,
            None,
            dacl,
            None,
        )


def protect_token_file(path: str, security: FileSecurity | None = None) -> None:
    """Give the token file at `path` the DACL token_file_acl() says (before the token is
    written into it)."""
    security = security or Win32FileSecurity()
    security.set_dacl(path, token_file_acl(security.own_sid()))
