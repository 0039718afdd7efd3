"""The README's examples work as written: every TOML block passes `messengerd config check`,
and every `messengerd ...` command line in README.md and service/README.md parses."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from messengerd.cli import build_parser, main
from messengerd.commands import run
from messengerd.config import settings
from tests.deployed import code_blocks, shell_lines

REPOSITORY = Path(__file__).resolve().parents[3]
READMES = (REPOSITORY / "README.md", REPOSITORY / "service" / "README.md")


def toml_examples() -> list[tuple[str, str]]:
    """(where, text) of each ```toml block in the READMEs and the settings module's docstring."""
    examples = []
    for readme in READMES:
        for index, block in enumerate(code_blocks(readme.read_text(encoding="utf-8"), "toml")):
            examples.append((f"{readme.relative_to(REPOSITORY)} block {index + 1}", block))
    for index, block in enumerate(code_blocks(settings.__doc__ or "", "toml")):
        examples.append((f"messengerd/config/settings.py block {index + 1}", block))
    return examples


def command_lines() -> list[str]:
    """Each line of the READMEs' sh blocks that runs messengerd, without the program."""
    lines = []
    for readme in READMES:
        for block in code_blocks(readme.read_text(encoding="utf-8"), "sh"):
            for line in shell_lines(block):
                program, _, rest = line.removeprefix("sudo ").partition(" ")
                if program.split("/")[-1] == "messengerd":
                    lines.append(rest.removesuffix("&").strip())
    return lines


def test_the_readme_has_settings_examples():
    assert len([where for where, _ in toml_examples() if where.startswith("README")]) >= 1


@pytest.mark.parametrize(
    ("where", "text"), [pytest.param(where, text, id=where) for where, text in toml_examples()]
)
def test_settings_example_passes_config_check(where, text, tmp_path, capsys):
    path = tmp_path / "messengerd.toml"
    path.write_text(text, encoding="utf-8")
    assert main(["config", "check", str(path)]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"{path}: OK\n"


def test_the_readmes_run_messengerd_commands():
    assert any(line.startswith("run ") for line in command_lines())
    assert any(line.startswith("service install") for line in command_lines())


@pytest.mark.parametrize("line", command_lines())
def test_readme_command_line_parses(line):
    args = build_parser().parse_args(shlex.split(line))
    assert args.handler is not None


def test_verbose_is_taken_after_the_subcommand_too():
    parser = build_parser()
    for argv in (["run", "-v"], ["-v", "run"], ["names", "list", "-v"], ["status", "--verbose"]):
        assert parser.parse_args(argv).verbose is True, argv
    assert parser.parse_args(["run"]).verbose is False


def test_the_options_table_lists_every_run_option():
    """Each `--option` of `messengerd run --help` appears in the README's options table."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("### `messengerd run` options") :]
    table = table[: table.index("\n\n", table.index("|"))]
    subcommands = argparse.ArgumentParser().add_subparsers()
    run.add_parser(subcommands)
    run_help = subcommands.choices["run"].format_help()
    options = set(re.findall(r"--[a-z][-a-z]+", run_help)) - {"--help"}
    missing = {option for option in options if option not in table}
    assert not missing
