"""AliasTable: NetMessageNameAdd / Del / Enum / GetInfo and their result codes (PROTOCOL.md §7)."""

import pytest

from messengerd.core import lmerr
from messengerd.core.aliases import (
    ALIAS_FILE,
    MAX_ALIAS_FILE_BYTES,
    MAX_ALIASES,
    AliasFileError,
    AliasTable,
    MessageInfo,
    load_aliases,
    save_aliases,
)
from messengerd.core.lmerr import NetError
from messengerd.wire.names import NetBIOSName


def code_of(call, *args, **kwargs) -> int:
    with pytest.raises(NetError) as caught:
        call(*args, **kwargs)
    return caught.value.code


def test_add_upper_cases_and_is_local_answers_for_the_03_name():
    table = AliasTable()
    assert table.add("bob") == NetBIOSName(b"BOB", 0x03)
    assert table.is_local(NetBIOSName(b"BOB", 0x03))
    assert not table.is_local(NetBIOSName(b"BOB", 0x20))


def test_add_existing_alias_is_nerr_already_exists():
    table = AliasTable(["BOB"])
    assert code_of(table.add, "Bob") == lmerr.NERR_AlreadyExists == 2276


def test_name_longer_than_15_bytes_is_invalid_parameter():
    assert code_of(AliasTable().add, "A" * 16) == lmerr.ERROR_INVALID_PARAMETER == 87
    assert code_of(AliasTable().add, "") == 87


def test_table_full_is_nerr_too_many_names():
    table = AliasTable([f"N{i}" for i in range(MAX_ALIASES)])
    assert code_of(table.add, "ONEMORE") == lmerr.NERR_TooManyNames == 2277


def test_delete_unknown_is_nerr_not_local_name_and_computer_name_is_kept():
    table = AliasTable(["ALICE"], computer_name="HOST1")
    assert code_of(table.delete, "BOB") == lmerr.NERR_NotLocalName == 2285
    assert code_of(table.delete, "host1") == lmerr.NERR_DelComputerName == 2278
    table.delete("alice")
    assert [str(n) for n in table.names()] == ["HOST1<03>"]


def test_get_info_levels_and_errors():
    table = AliasTable(["BOB"])
    assert table.get_info("bob", 0) == MessageInfo("BOB")
    assert table.get_info("bob", 1) == MessageInfo("BOB", forward_flag=0, forward=None)
    assert code_of(table.get_info, "bob", 2) == lmerr.ERROR_INVALID_LEVEL == 124
    assert code_of(table.get_info, "carol") == lmerr.NERR_NotLocalName


def test_enum_bad_level_is_invalid_level():
    assert code_of(AliasTable().enum, 3) == lmerr.ERROR_INVALID_LEVEL


def test_enum_resume_handle_walks_a_full_table_of_256_once_each():
    table = AliasTable([f"USER{i:03d}" for i in range(MAX_ALIASES)])
    seen, handle, calls = [], 0, 0
    while True:
        result = table.enum(1, prefmaxlen=200, resume_handle=handle)
        calls += 1
        assert result.total_entries == MAX_ALIASES
        seen += [entry.name for entry in result.entries]
        if result.status == lmerr.NERR_Success:
            assert result.resume_handle == 0
            break
        assert result.status == lmerr.ERROR_MORE_DATA == 234
        handle = result.resume_handle
    assert seen == sorted(f"USER{i:03d}" for i in range(MAX_ALIASES))
    # 12-byte record + 8 UTF-16 units = 28 bytes each: 7 fit in 200 bytes.
    assert calls == -(-MAX_ALIASES // 7)


def test_enum_with_no_limit_returns_everything_at_once():
    table = AliasTable(["A", "B", "C"])
    result = table.enum(0)
    assert [e.name for e in result.entries] == ["A", "B", "C"]
    assert result.status == lmerr.NERR_Success


def test_enum_always_makes_progress_even_with_a_tiny_buffer():
    table = AliasTable(["A", "B"])
    result = table.enum(0, prefmaxlen=1)
    assert len(result.entries) == 1 and result.status == lmerr.ERROR_MORE_DATA


def test_groups_and_name_table():
    table = AliasTable(["BOB"], workgroups=["lab"])
    assert table.is_group(NetBIOSName(b"*", 0x03))
    assert table.is_group(NetBIOSName(b"LAB", 0x03))
    assert not table.is_group(NetBIOSName(b"BOB", 0x03))
    assert table.name_table() == [(NetBIOSName(b"BOB", 0x03), False)]


def test_error_carries_code_and_lmerr_name():
    error = NetError(lmerr.NERR_DuplicateName)
    assert error.name == "NERR_DuplicateName"
    assert "2297" in str(error)


def test_check_add_refuses_what_add_would_without_adding():
    table = AliasTable(["BOB"])
    assert table.check_add("carol") == NetBIOSName(b"CAROL", 0x03)
    assert NetBIOSName(b"CAROL", 0x03) not in table
    assert code_of(table.check_add, "bob") == lmerr.NERR_AlreadyExists
    pending = {NetBIOSName(b"CAROL", 0x03)}
    assert code_of(table.check_add, "carol", pending) == lmerr.NERR_AlreadyExists
    assert code_of(table.check_add, "A" * 16) == lmerr.ERROR_INVALID_PARAMETER


def test_check_add_counts_pending_names_against_the_limit():
    table = AliasTable([f"N{i}" for i in range(MAX_ALIASES - 1)])
    pending = {NetBIOSName(b"LAST", 0x03)}
    assert code_of(table.check_add, "ONEMORE", pending) == lmerr.NERR_TooManyNames


def test_remove_takes_out_even_the_computer_name():
    table = AliasTable(["BOB"], computer_name="HOST1")
    host = NetBIOSName(b"HOST1", 0x03)
    assert table.computer_name == host
    assert table.remove(host) and not table.remove(host)
    assert len(table) == 1
    table.add("host1")
    assert code_of(table.delete, "HOST1") == lmerr.NERR_DelComputerName


def test_aliases_round_trip_through_the_data_dir(tmp_path):
    assert load_aliases(tmp_path) == []
    save_aliases(tmp_path, ["BOB", "JÜRGEN"])
    assert load_aliases(tmp_path) == ["BOB", "JÜRGEN"]
    save_aliases(tmp_path, ["BOB"])
    assert load_aliases(tmp_path) == ["BOB"]
    assert [p.name for p in tmp_path.iterdir()] == [ALIAS_FILE], "no temporary file left"


def test_save_makes_a_missing_data_dir_private(tmp_path):
    data_dir = tmp_path / "new"
    save_aliases(data_dir, ["BOB"])
    assert data_dir.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize(
    "content",
    [b"{not json", b'["BOB"]', b'{"aliases": "BOB"}', b'{"aliases": [1]}', b"\xff\xfe"],
)
def test_an_unreadable_alias_file_is_an_error_naming_the_file(tmp_path, content):
    (tmp_path / ALIAS_FILE).write_bytes(content)
    with pytest.raises(AliasFileError, match=ALIAS_FILE):
        load_aliases(tmp_path)


def test_an_oversized_alias_file_is_not_read(tmp_path):
    (tmp_path / ALIAS_FILE).write_bytes(b" " * (MAX_ALIAS_FILE_BYTES + 1))
    with pytest.raises(AliasFileError, match="over"):
        load_aliases(tmp_path)


def test_a_long_host_name_is_cut_to_15_bytes_for_the_default_aliases(monkeypatch):
    from messengerd.config import options as config

    monkeypatch.setattr(config.socket, "gethostname", lambda: "build-server-number-twelve.lab")
    assert config.default_computer_name() == "build-server-nu"
    assert AliasTable(config.default_aliases())  # every default is a valid alias


def test_blank_or_nul_names_are_invalid_parameter():
    assert code_of(AliasTable().add, " ") == lmerr.ERROR_INVALID_PARAMETER
    assert code_of(AliasTable().add, "a\x00") == lmerr.ERROR_INVALID_PARAMETER


def test_the_system_services_own_user_is_no_default_alias(monkeypatch):
    """The unit runs as `messengerd`: Windows registered the person logged in, and that
    account is none."""
    from messengerd.config import options as config

    monkeypatch.setattr(config.socket, "gethostname", lambda: "fileserver")
    monkeypatch.setattr(config.getpass, "getuser", lambda: config.SERVICE_USER)
    assert config.default_aliases() == ["fileserver"]
    monkeypatch.setattr(config.getpass, "getuser", lambda: "alice")
    assert config.default_aliases() == ["fileserver", "alice"]
