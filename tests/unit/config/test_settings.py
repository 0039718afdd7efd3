"""The settings file: typed values, and every bad key named with the line it is on."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import platformdirs
import pytest

from messengerd import cli
from messengerd.commands.exits import EXIT_OK, EXIT_USAGE, UsageError
from messengerd.commands.run import daemon_config
from messengerd.config.options import DaemonConfig
from messengerd.config.settings import (
    MAX_CONFIG_BYTES,
    Settings,
    SettingsError,
    default_config_path,
    find_settings,
    load_settings,
    parse_settings,
)
from messengerd.core.store.retention import Retention
from messengerd.delivery.routing import SINK_TYPES

FULL = """\
# messengerd settings
[daemon]
bind = "192.0.2.10"
broadcast = "192.0.2.255"
name_port = 10137
datagram_port = 10138
session_port = 10139
aliases = ["ALERTS", "Jürgen"]
workgroups = ["OFFICE"]
codepage = "cp437"
data_dir = "state"
store = true

[[sink]]
type = "console"
json = true

[[sink]]
type = "command"
name = "popup"
command = "notify-send -- %f %s"
timeout = 5
shell = false

[[sink]]
type = "forward"
name = "desk"
to = "OPERATOR"

[routing]
default = ["console", "desk"]
aliases = { ALERTS = ["popup", "console"] }

[policy]
allow_sources = ["192.0.2.0/24"]
deny_sources = ["192.0.2.66"]
deny_senders = ["SPAM*"]
rate_limit = 12.5
rate_burst = 4
store_refused = true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse_settings(textwrap.dedent(text), "messengerd.toml", sink_types=SINK_TYPES)
    return info.value.lines()


def test_a_full_file_gives_typed_settings(tmp_path):
    path = tmp_path / "messengerd.toml"
    path.write_text(FULL, encoding="utf-8")
    settings = load_settings(path, sink_types=SINK_TYPES)
    daemon = settings.daemon
    assert (daemon.bind, daemon.broadcast) == ("192.0.2.10", "192.0.2.255")
    assert (daemon.name_port, daemon.datagram_port, daemon.session_port) == (10137, 10138, 10139)
    assert daemon.aliases == ["ALERTS", "Jürgen"]
    assert daemon.workgroups == ["OFFICE"]
    assert daemon.codepage == "cp437"
    assert daemon.data_dir == tmp_path.resolve() / "state", "relative to the settings file"
    assert daemon.store is True
    assert [(s.type, s.name, s.line) for s in settings.sinks] == [
        ("console", "console", 14),
        ("command", "popup", 18),
        ("forward", "desk", 25),
    ]
    assert settings.sinks[0].options == {"json": True}
    assert settings.sinks[1].options == {
        "command": "notify-send -- %f %s",
        "timeout": 5.0,
        "shell": False,
    }
    assert settings.sinks[2].options == {"to": "OPERATOR"}
    assert settings.routing.default == ["console", "desk"]
    assert settings.routing.aliases == {"ALERTS": ["popup", "console"]}
    assert settings.policy_arguments() == {
        "allow_sources": ["192.0.2.0/24"],
        "deny_sources": ["192.0.2.66"],
        "allow_senders": [],
        "deny_senders": ["SPAM*"],
        "rate_limit": 12.5,
        "rate_burst": 4,
        "store_refused": True,
    }


def test_an_empty_file_is_all_defaults():
    settings = parse_settings("", sink_types=SINK_TYPES)
    assert settings.daemon == Settings().daemon
    assert settings.sinks == []
    assert settings.routing.default is None
    assert settings.policy_arguments()["store_refused"] is False
    assert settings.store == Retention(365, 100_000, 100)


def test_the_store_table_sets_the_retention_limits_and_the_daemon_gets_them():
    text = "[store]\nmax_age_days = 30\nmax_size_mb = 0.5\n"
    settings = parse_settings(text, sink_types=SINK_TYPES)
    assert settings.store == Retention(max_age_days=30, max_messages=100_000, max_size_mb=0.5)
    assert daemon_config(cli_args(), settings).retention == settings.store
    off = parse_settings("[store]\nmax_messages = 0\n", sink_types=SINK_TYPES).store
    assert off.max_messages == 0 and off.describe() == "365 days, 100 MiB"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            """\
            [daemon]
            bind = "127.0.0.1"
            sesion_port = 139
            """,
            "messengerd.toml:3: key 'daemon.sesion_port': unknown key (known: bind, ",
        ),
        (
            """\
            [daemon]
            name_port = "137"
            """,
            "messengerd.toml:2: key 'daemon.name_port': must be an integer, not a string",
        ),
        (
            """\
            [daemon]
            session_port = 70000
            """,
            "messengerd.toml:2: key 'daemon.session_port': 70000 is not a port number",
        ),
        (
            """\
            [daemon]
            store = 1
            """,
            "messengerd.toml:2: key 'daemon.store': must be true or false, not an integer",
        ),
        (
            """\
            [daemon]
            bind = "localhost"
            """,
            "messengerd.toml:2: key 'daemon.bind': 'localhost' is not an IPv4 address",
        ),
        (
            """\
            [daemon]
            codepage = "cp9999"
            """,
            "messengerd.toml:2: key 'daemon.codepage': unknown code page 'cp9999'",
        ),
        (
            """\
            [daemon]
            aliases = ["BOB", 7]
            """,
            "messengerd.toml:2: key 'daemon.aliases': must be a list of strings; 7 is an integer",
        ),
        (
            """\
            [daemon]
            aliases = ["THIS-NAME-IS-FAR-TOO-LONG"]
            """,
            "messengerd.toml:2: key 'daemon.aliases': 'THIS-NAME-IS-FAR-TOO-LONG' (item 1): ",
        ),
        (
            """\
            [deamon]
            bind = "127.0.0.1"
            """,
            "messengerd.toml:1: key 'deamon': unknown section (known: daemon, sink, routing, "
            "policy, store)",
        ),
        (
            """\
            [store]
            max_messages = 1.5
            """,
            "messengerd.toml:2: key 'store.max_messages': must be an integer, not a float",
        ),
        (
            """\
            [policy]
            deny_sources = [
                "10.0.0.0/8",
                "not-a-network",
            ]
            """,
            "messengerd.toml:2: key 'policy.deny_sources': 'not-a-network' is not an address",
        ),
        (
            """\
            [policy]
            rate_limit = -5
            """,
            "messengerd.toml:2: key 'policy.rate_limit': must be a finite number, 0 or more",
        ),
        (
            """\
            [policy]
            rate_burst = 0
            """,
            "messengerd.toml:2: key 'policy.rate_burst': must be 1 or more, not 0",
        ),
    ],
)
def test_a_bad_key_is_named_with_its_line(text, expected):
    lines = problems(text)
    assert len(lines) == 1
    assert lines[0].startswith(expected), lines[0]


def test_sink_problems_name_the_sink_by_position_and_line():
    lines = problems(
        """\
        [[sink]]
        type = "console"

        [[sink]]
        type = "command"
        name = "popup"
        command = "xmessage %x"

        [[sink]]
        type = "command"
        name = "popup"
        command = "true"

        [[sink]]
        type = "forward"
        hots = "192.0.2.5"

        [[sink]]
        type = "notify"
        queue = 0

        [[sink]]
        name = "untyped"
        """
    )
    assert lines == [
        "messengerd.toml:7: key 'sink[2].command': unknown substitution %x (known: %s file, "
        "%f from, %t to, %I peer IP, %m client name, %% a literal %)",
        "messengerd.toml:11: key 'sink[3].name': a sink named 'popup' exists already",
        "messengerd.toml:14: key 'sink[4]': a forward sink needs 'host', or 'to' to look up "
        "by name",
        "messengerd.toml:16: key 'sink[4].hots': unknown key (known: host, to, via, port, "
        "datagram_port, name_port, broadcast, codepage, fromname, timeout, concurrency, queue)",
        # A retired kind (0.1's "notify") is still checked, and not offered.
        "messengerd.toml:20: key 'sink[5].queue': must be 1 or more, not 0",
        "messengerd.toml:22: key 'sink[6]': a [[sink]] needs a type (console | command | forward)",
    ]


def test_a_sink_written_as_a_table_says_to_use_double_brackets():
    assert problems(
        """\
        [sink]
        type = "console"
        """
    ) == ["messengerd.toml:1: key 'sink': must be an array of tables: write [[sink]], not [sink]"]


def test_routes_must_name_existing_sinks():
    assert problems(
        """\
        [[sink]]
        type = "command"
        name = "popup"
        command = "true"

        [routing]
        default = ["popup"]
        aliases = { BOB = ["popup", "console"] }
        """
    ) == ["messengerd.toml:8: key 'routing.aliases.BOB': no sink is named 'console' (sinks: popup)"]


def test_routes_may_name_the_console_when_no_sinks_are_configured():
    settings = parse_settings('[routing]\ndefault = ["console"]\n', sink_types=SINK_TYPES)
    assert settings.routing.default == ["console"]


def test_every_problem_is_reported_in_line_order():
    lines = problems(
        """\
        [policy]
        rate_burst = 0
        [daemon]
        bind = 1
        colour = "blue"
        """
    )
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5"]


def test_a_toml_syntax_error_gives_its_line():
    lines = problems(
        """\
        [daemon]
        bind = "127.0.0.1"
        aliases = ["BOB"
        codepage = "cp850"
        """
    )
    assert len(lines) == 1
    assert lines[0].startswith("messengerd.toml:4: not valid TOML: ")
    assert "(at line" not in lines[0]


def test_strings_that_look_like_keys_do_not_move_the_line():
    lines = problems(
        '''\
        [[sink]]
        type = "command"
        command = """
        bogus = 1
        [[sink]]
        """
        shell = "no"
        '''
    )
    assert lines[0].startswith("messengerd.toml:7: key 'sink[1].shell': must be true or false")


def test_an_unreadable_or_huge_file_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match=r"missing\.toml: cannot read"):
        load_settings(tmp_path / "missing.toml", sink_types=SINK_TYPES)
    huge = tmp_path / "huge.toml"
    huge.write_text("# " + "x" * MAX_CONFIG_BYTES, encoding="utf-8")
    with pytest.raises(SettingsError, match="larger than"):
        load_settings(huge, sink_types=SINK_TYPES)
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(b'[daemon]\naliases = ["J\xfcrgen"]\n')
    with pytest.raises(SettingsError, match=r"latin1\.toml:2: not UTF-8 text"):
        load_settings(latin1, sink_types=SINK_TYPES)


def test_default_config_path_is_in_the_user_config_dir():
    path = default_config_path()
    assert path.name == "messengerd.toml"
    assert path.parent == Path(platformdirs.user_config_dir("messengerd", appauthor=False))


def cli_args(**given) -> argparse.Namespace:
    """What `messengerd run` parses when only `given` options are on the command line."""
    options = dict.fromkeys(
        (
            "bind",
            "broadcast",
            "name_port",
            "datagram_port",
            "session_port",
            "alias",
            "workgroup",
            "codepage",
            "data_dir",
            "store",
        )
    )
    return argparse.Namespace(**{**options, **given})


def test_command_line_flags_override_the_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "messengerd.toml"
    path.write_text(FULL, encoding="utf-8")
    settings = load_settings(path, sink_types=SINK_TYPES)
    config = daemon_config(
        cli_args(bind="127.0.0.1", session_port=0, alias=["BOB"], store=False), settings
    )
    assert config.bind == "127.0.0.1"
    assert config.session_port == 0
    assert config.aliases == ["BOB"]
    assert config.store is False
    assert config.broadcast == "192.0.2.255"
    assert config.name_port == 10137
    assert config.workgroups == ["OFFICE"]
    assert config.codepage == "cp437"
    assert config.data_dir == tmp_path.resolve() / "state"


def test_without_file_or_flags_the_daemon_defaults_stand():
    config = daemon_config(cli_args(), Settings())
    defaults = DaemonConfig()
    assert config == defaults


def test_a_bad_codepage_flag_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown code page 'nope'"):
        daemon_config(cli_args(codepage="nope"), Settings())


def config_check(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(["config", "check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_config_check_says_ok_for_a_good_file(tmp_path, capsys):
    path = tmp_path / "messengerd.toml"
    path.write_text(FULL, encoding="utf-8")
    assert config_check(capsys, str(path)) == (EXIT_OK, f"{path}: OK\n", "")


def test_config_check_names_each_bad_key_and_line_and_exits_2(tmp_path, capsys):
    path = tmp_path / "messengerd.toml"
    path.write_text('[daemon]\nbind = "127.0.0.1"\nsesion_port = 139\nstore = "yes"\n')
    code, out, err = config_check(capsys, str(path))
    assert code == EXIT_USAGE
    assert out == ""
    assert err.splitlines() == [
        f"messengerd: {path}:3: key 'daemon.sesion_port': unknown key (known: bind, broadcast, "
        "name_port, datagram_port, session_port, rpc_port, rpc, aliases, workgroups, codepage, "
        "data_dir, store, control_group, backend, session_idle_timeout, interfaces)",
        f"messengerd: {path}:4: key 'daemon.store': must be true or false, not a string",
    ]


def test_config_check_of_a_missing_file_exits_2(tmp_path, capsys):
    code, _, err = config_check(capsys, str(tmp_path / "nope.toml"))
    assert code == EXIT_USAGE
    assert err.startswith(f"messengerd: {tmp_path / 'nope.toml'}: cannot read: ")


def test_find_settings_reads_the_named_file_or_the_default_if_present(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert default_config_path() == tmp_path / "config" / "messengerd" / "messengerd.toml"
    assert find_settings(None, sink_types=SINK_TYPES).path is None, "no default file: all defaults"
    default_config_path().parent.mkdir(parents=True)
    default_config_path().write_text('[daemon]\naliases = ["DEFAULT"]\n', encoding="utf-8")
    assert find_settings(None, sink_types=SINK_TYPES).daemon.aliases == ["DEFAULT"]
    named = tmp_path / "named.toml"
    named.write_text('[daemon]\naliases = ["NAMED"]\n', encoding="utf-8")
    assert find_settings(named, sink_types=SINK_TYPES).daemon.aliases == ["NAMED"]
    with pytest.raises(SettingsError, match="cannot read"):
        find_settings(tmp_path / "missing.toml", sink_types=SINK_TYPES)
