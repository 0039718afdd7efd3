"""The Windows NetBIOS API's structures and codes, as nb30.h declares them (PROTOCOL.md §9).

NCB is built twice, for 32-bit and 64-bit Windows, with its pointer-sized fields (ncb_buffer,
ncb_post, ncb_event) as unsigned integers of that size, so both layouts are checked on any
host; `NCB` is the one for this interpreter. Pointers are stored as addresses (ints).
"""

from __future__ import annotations

import ctypes
from typing import Any

from messengerd.core import lmerr

NCBNAMSZ = 16
"""Bytes of a NetBIOS name in an NCB: 15 padded bytes and the suffix (nb30.h)."""
MAX_LANA = 254
"""Highest LANA number; LANA_ENUM holds MAX_LANA + 1 entries (nb30.h)."""

# Commands (nb30.h); ASYNCH or-ed in submits one without waiting.
NCBCALL = 0x10
NCBLISTEN = 0x11
NCBHANGUP = 0x12
NCBSEND = 0x14
NCBRECV = 0x15
NCBRECVANY = 0x16
NCBCHAINSEND = 0x17
NCBDGSEND = 0x20
NCBDGRECV = 0x21
NCBDGSENDBC = 0x22
NCBDGRECVBC = 0x23
NCBADDNAME = 0x30
NCBDELNAME = 0x31
NCBRESET = 0x32
NCBASTAT = 0x33
NCBSSTAT = 0x34
NCBCANCEL = 0x35
NCBADDGRNAME = 0x36
NCBENUM = 0x37
NCBFINDNAME = 0x78
ASYNCH = 0x80

# Return codes (nb30.h), in ncb_retcode and ncb_cmd_cplt.
NRC_GOODRET = 0x00
NRC_BUFLEN = 0x01
NRC_ILLCMD = 0x03
NRC_CMDTMO = 0x05
NRC_INCOMP = 0x06
NRC_BADDR = 0x07
NRC_SNUMOUT = 0x08
NRC_NORES = 0x09
NRC_SCLOSED = 0x0A
NRC_CMDCAN = 0x0B
NRC_DUPNAME = 0x0D
NRC_NAMTFUL = 0x0E
NRC_ACTSES = 0x0F
NRC_LOCTFUL = 0x11
NRC_REMTFUL = 0x12
NRC_ILLNN = 0x13
NRC_NOCALL = 0x14
NRC_NOWILD = 0x15
NRC_INUSE = 0x16
NRC_NAMERR = 0x17
NRC_SABORT = 0x18
NRC_NAMCONF = 0x19
NRC_IFBUSY = 0x21
NRC_TOOMANY = 0x22
NRC_BRIDGE = 0x23
NRC_CANOCCR = 0x24
NRC_CANCEL = 0x26
NRC_DUPENV = 0x30
NRC_ENVNOTDEF = 0x34
NRC_OSRESNOTAV = 0x35
NRC_MAXAPPS = 0x36
NRC_NOSAPS = 0x37
NRC_NORESOURCES = 0x38
NRC_INVADDRESS = 0x39
NRC_INVDDID = 0x3B
NRC_LOCKFAIL = 0x3C
NRC_OPENERR = 0x3F
NRC_SYSTEM = 0x40
NRC_PENDING = 0xFF

RETURN_CODE_NAMES: dict[int, str] = {
    code: name
    for name, code in dict(globals()).items()
    if name.startswith("NRC_") and isinstance(code, int)
}
COMMAND_NAMES: dict[int, str] = {
    code: name
    for name, code in dict(globals()).items()
    if name.startswith("NCB") and name != "NCBNAMSZ" and isinstance(code, int)
}

RESET_CALLNAME = bytes([0xFE, 0x00, 0xFD, 0x00])
"""ncb_callname of NCBRESET as Windows' services issue it: 254 sessions, default commands,
253 names, and no NAME_NUMBER_1 (PROTOCOL.md §9)."""
ANY_NAME_NUMBER = 0xFF
"""ncb_num for NCBDGRECV and NCBRECVANY: receive for any of our names (NCB documentation)."""
ANY_CALLER = b"*" + b" " * (NCBNAMSZ - 1)
"""ncb_callname of an NCBLISTEN that takes a call from any name (NCB documentation)."""
TIMEOUT_UNIT = 0.5
"""Seconds in one unit of ncb_rto / ncb_sto; 0 means no timeout (NCB documentation)."""


def _ncb_fields(pointer: Any) -> list[tuple[str, Any]]:
    """The fields of nb30.h's `struct _NCB` with pointers of type `pointer`."""
    reserve = 18 if ctypes.sizeof(pointer) == 8 else 10  # `#ifdef _WIN64` in nb30.h
    return [
        ("ncb_command", ctypes.c_ubyte),
        ("ncb_retcode", ctypes.c_ubyte),
        ("ncb_lsn", ctypes.c_ubyte),
        ("ncb_num", ctypes.c_ubyte),
        ("ncb_buffer", pointer),
        ("ncb_length", ctypes.c_ushort),
        ("ncb_callname", ctypes.c_ubyte * NCBNAMSZ),
        ("ncb_name", ctypes.c_ubyte * NCBNAMSZ),
        ("ncb_rto", ctypes.c_ubyte),
        ("ncb_sto", ctypes.c_ubyte),
        ("ncb_post", pointer),
        ("ncb_lana_num", ctypes.c_ubyte),
        ("ncb_cmd_cplt", ctypes.c_ubyte),
        ("ncb_reserve", ctypes.c_ubyte * reserve),
        ("ncb_event", pointer),
    ]


class NCB32(ctypes.Structure):
    """A network control block on 32-bit Windows (nb30.h `NCB`; size 64)."""

    _fields_ = _ncb_fields(ctypes.c_uint32)


class NCB64(ctypes.Structure):
    """A network control block on 64-bit Windows (nb30.h `NCB`; size 96)."""

    _fields_ = _ncb_fields(ctypes.c_uint64)


NCBStructure = NCB32 | NCB64
NCB: type[NCB32] | type[NCB64] = NCB64 if ctypes.sizeof(ctypes.c_void_p) == 8 else NCB32
"""The NCB layout of this interpreter, the one Netbios() in netapi32 takes."""


class LANA_ENUM(ctypes.Structure):
    """NCBENUM's answer: how many LANAs, then their numbers (nb30.h `LANA_ENUM`)."""

    _fields_ = [("length", ctypes.c_ubyte), ("lana", ctypes.c_ubyte * (MAX_LANA + 1))]


def new_ncb(command: int, *, lana: int = 0) -> NCB32 | NCB64:
    """A zeroed NCB for `command` on LANA `lana`, as every caller must start from."""
    ncb = NCB()
    ncb.ncb_command = command
    ncb.ncb_lana_num = lana
    return ncb


def set_name(field: Any, raw16: bytes) -> None:
    """Copy a 16-byte NetBIOS name (or a shorter prefix such as RESET_CALLNAME) into a field."""
    if len(raw16) > NCBNAMSZ:
        raise ValueError(f"a NetBIOS name field holds {NCBNAMSZ} bytes, not {len(raw16)}")
    ctypes.memmove(field, raw16, len(raw16))


def get_name(field: Any) -> bytes:
    """The 16 bytes of an ncb_name or ncb_callname field."""
    return bytes(field)


def describe_return_code(code: int) -> str:
    """`NRC_DUPNAME (0x0D)`, or the bare number for a code nb30.h does not name."""
    name = RETURN_CODE_NAMES.get(code, "NRC_?")
    return f"{name} (0x{code:02X})"


NRC_TO_NET_ERROR: dict[int, int] = {
    NRC_GOODRET: lmerr.NERR_Success,
    NRC_NORES: lmerr.NERR_NoNetworkResource,
    NRC_DUPNAME: lmerr.NERR_AlreadyExists,
    NRC_NAMTFUL: lmerr.NERR_TooManyNames,
    NRC_ACTSES: lmerr.NERR_DeleteLater,
    NRC_REMTFUL: lmerr.ERROR_REM_NOT_LIST,
    NRC_NOCALL: lmerr.NERR_NameNotFound,
    NRC_NOWILD: lmerr.ERROR_INVALID_PARAMETER,
    NRC_INUSE: lmerr.NERR_DuplicateName,
    NRC_NAMERR: lmerr.ERROR_INVALID_PARAMETER,
    NRC_NAMCONF: lmerr.NERR_DuplicateName,
}
"""How Windows' own services turn an NCB return code into a network-management result
(svchost's NetpNetBiosStatusToApiStatus; PROTOCOL.md §9); any other code is
NERR_NetworkError."""


def net_error_code(nrc: int) -> int:
    """The lmerr/winerror code Windows' services report for NCB return code `nrc`."""
    return NRC_TO_NET_ERROR.get(nrc, lmerr.NERR_NetworkError)
