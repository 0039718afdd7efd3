"""The NCB and LANA_ENUM layouts and nb30.h's codes, against PROTOCOL.md §9 and the header."""

from __future__ import annotations

import ctypes

import pytest

from messengerd.core import lmerr
from messengerd.windows import nb30
from tests.unit.windows.headers import defines, header, struct_fields

PROTOCOL_OFFSETS = {
    # field: (32-bit offset, 64-bit offset), PROTOCOL.md §9
    "ncb_command": (0, 0),
    "ncb_retcode": (1, 1),
    "ncb_lsn": (2, 2),
    "ncb_num": (3, 3),
    "ncb_buffer": (4, 8),
    "ncb_length": (8, 16),
    "ncb_callname": (10, 18),
    "ncb_name": (26, 34),
    "ncb_rto": (42, 50),
    "ncb_sto": (43, 51),
    "ncb_post": (44, 56),
    "ncb_lana_num": (48, 64),
    "ncb_cmd_cplt": (49, 65),
    "ncb_reserve": (50, 66),
    "ncb_event": (60, 88),
}


@pytest.mark.parametrize(
    ("structure", "column", "size"), [(nb30.NCB32, 0, 64), (nb30.NCB64, 1, 96)]
)
def test_ncb_layout_matches_protocol_md(structure, column, size):
    offsets = {name: getattr(structure, name).offset for name, _ in structure._fields_}
    assert offsets == {name: both[column] for name, both in PROTOCOL_OFFSETS.items()}
    assert ctypes.sizeof(structure) == size


def test_the_native_ncb_is_the_one_for_this_pointer_size():
    assert ctypes.sizeof(nb30.NCB) == (96 if ctypes.sizeof(ctypes.c_void_p) == 8 else 64)


SDK_TYPES = {"UCHAR": ctypes.c_ubyte, "WORD": ctypes.c_ushort}


def _from_header(name: str, *, win64: bool) -> type[ctypes.Structure]:
    """The structure as nb30.h declares it, pointers of the target's size."""
    pointer = ctypes.c_uint64 if win64 else ctypes.c_uint32
    fields = []
    for kind, field, count in struct_fields(header("nb30.h"), name, win64=win64):
        base = SDK_TYPES.get(kind, pointer)  # PUCHAR, HANDLE, the post routine
        fields.append((field, base * count if count else base))
    return type(f"{name}_{'64' if win64 else '32'}", (ctypes.Structure,), {"_fields_": fields})


@pytest.mark.parametrize(("structure", "win64"), [(nb30.NCB32, False), (nb30.NCB64, True)])
def test_ncb_layout_matches_nb30_h(structure, win64):
    reference = _from_header("_NCB", win64=win64)
    ours = [(name, getattr(structure, name).offset, getattr(structure, name).size)
            for name, _ in structure._fields_]  # fmt: skip
    theirs = [(name, getattr(reference, name).offset, getattr(reference, name).size)
              for name, _ in reference._fields_]  # fmt: skip
    assert ours == theirs
    assert ctypes.sizeof(structure) == ctypes.sizeof(reference)


def test_lana_enum_matches_nb30_h():
    reference = _from_header("_LANA_ENUM", win64=True)
    assert ctypes.sizeof(nb30.LANA_ENUM) == ctypes.sizeof(reference) == 256
    assert nb30.LANA_ENUM.lana.offset == reference.lana.offset == 1


def test_commands_and_return_codes_match_nb30_h():
    values = defines(header("nb30.h"))
    ours = {
        name: value
        for name, value in vars(nb30).items()
        if (name.startswith(("NCB", "NRC_")) or name in ("ASYNCH", "MAX_LANA"))
        and isinstance(value, int)
    }
    assert ours == {name: values[name] for name in ours}
    assert len(nb30.RETURN_CODE_NAMES) == len([n for n in values if n.startswith("NRC_")])


def test_lmerr_codes_match_lmerr_h_and_winerror_h():
    values = defines(header("lmerr.h")) | defines(header("winerror.h"))
    for code, name in lmerr.NAMES.items():
        if name != "NERR_Success":
            assert values[name] == code, name


@pytest.mark.parametrize(
    ("nrc", "name"),
    [
        (nb30.NRC_INUSE, "NERR_DuplicateName"),
        (nb30.NRC_NAMCONF, "NERR_DuplicateName"),
        (nb30.NRC_DUPNAME, "NERR_AlreadyExists"),
        (nb30.NRC_NAMTFUL, "NERR_TooManyNames"),
        (nb30.NRC_ACTSES, "NERR_DeleteLater"),
        (nb30.NRC_NORES, "NERR_NoNetworkResource"),
        (nb30.NRC_NOCALL, "NERR_NameNotFound"),
        (nb30.NRC_NAMERR, "ERROR_INVALID_PARAMETER"),
        (nb30.NRC_REMTFUL, "ERROR_REM_NOT_LIST"),
        (nb30.NRC_BRIDGE, "NERR_NetworkError"),
        (nb30.NRC_SYSTEM, "NERR_NetworkError"),
    ],
)
def test_return_codes_map_as_windows_services_map_them(nrc, name):
    assert lmerr.NAMES[nb30.net_error_code(nrc)] == name


def test_every_mapped_code_has_windows_sentence():
    for code in nb30.NRC_TO_NET_ERROR.values():
        assert lmerr.describe(code) != f"System error {code} has occurred."


def test_names_are_copied_whole_into_ncb_fields():
    ncb = nb30.new_ncb(nb30.NCBRESET, lana=3)
    nb30.set_name(ncb.ncb_callname, nb30.RESET_CALLNAME)
    assert nb30.get_name(ncb.ncb_callname)[:4] == b"\xfe\x00\xfd\x00"
    nb30.set_name(ncb.ncb_name, b"BOB            \x03")
    assert nb30.get_name(ncb.ncb_name) == b"BOB            \x03"
    assert ncb.ncb_lana_num == 3
    with pytest.raises(ValueError, match="16 bytes"):
        nb30.set_name(ncb.ncb_name, b"X" * 17)
