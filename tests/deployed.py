"""messengerd installed as the README's Quick start installs it, and the system accounts a
service and its desktop users are, for the tests of deployment (service unit, control
group, quick start).

Everything an unprivileged test user runs must be readable by that user, so the venv and
every file those users touch live in a world-readable folder under /tmp (pytest's own
tmp_path is its owner's alone), removed at the end of the run.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import need

REPOSITORY = Path(__file__).resolve().parents[1]
README = REPOSITORY / "README.md"
SOURCES = ("messengerd", "service", "pyproject.toml", "README.md")
"""What `pip install` needs of the checkout; copied, so the build writes nothing here."""

QUICK_START_VENV = "~/messengerd"
QUICK_START_CHECKOUT = "/path/to/messengerd"
"""The README's placeholders for the venv and the checkout, replaced by the tests' own."""

INSTALL_TIMEOUT = 600.0
"""Seconds the Quick start's venv and pip install may take (downloads on a cold cache)."""

SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""PATH for processes run as test users (the one systemd gives services)."""


def markdown_section(title: str, text: str | None = None) -> str:
    """The text of README.md's `## title` section, up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8") if text is None else text
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match[1]


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ```language fenced blocks in `text`, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def shell_lines(block: str) -> list[str]:
    """A sh block's commands: one a line, comments and blank lines dropped."""
    lines = []
    for line in block.splitlines():
        command = line.split("  #", 1)[0].strip()
        if command and not command.startswith("#"):
            lines.append(command)
    return lines


@dataclass(frozen=True)
class Deployment:
    """A venv made by the Quick start's commands, in a folder every user can read."""

    public: Path
    """World-readable scratch folder (the venv is in it; tests add their own folders)."""
    venv: Path

    @property
    def messengerd(self) -> Path:
        return self.venv / "bin" / "messengerd"

    def quick_start(self, command: str) -> str:
        """A Quick start command with the README's placeholders replaced by this venv's."""
        return command.replace(QUICK_START_VENV, os.fspath(self.venv)).replace(
            QUICK_START_CHECKOUT, os.fspath(self.public / "checkout")
        )

    def folder(self, name: str, owner: str | None = None, mode: int = 0o755) -> Path:
        """A fresh folder in the public scratch space, owned by `owner` (a user name)."""
        path = self.public / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(mode=mode)
        os.chmod(path, mode)
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        return path


def install_block() -> list[str]:
    """The Quick start's install commands: its first sh block but the apt-get line and the
    last line (`messengerd run`, which tests/e2e/test_quick_start.py runs)."""
    block = code_blocks(markdown_section("Quick start"), "sh")[0]
    return [line for line in shell_lines(block)[:-1] if "apt-get" not in line]


def deploy(public: Path) -> Deployment:
    """Run the Quick start's install commands into `public` (see Deployment)."""
    need(os.geteuid() == 0, "tests with real users need root")
    need(shutil.which("python3", path="/usr/bin") is not None, "no /usr/bin/python3 (Debian's)")
    checkout = public / "checkout"
    checkout.mkdir()
    for name in SOURCES:
        source = REPOSITORY / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, checkout / name)
    deployment = Deployment(public=public, venv=public / "venv")
    # Debian's python3 and a clean environment, as a newcomer's shell has: not this test
    # run's interpreter or PYTHONPATH.
    env = {"PATH": SAFE_PATH, "HOME": os.fspath(public), "LANG": "C.UTF-8"}
    env.update((key, value) for key, value in os.environ.items() if key.startswith("PIP_"))
    for command in install_block():
        result = subprocess.run(
            shlex.split(deployment.quick_start(command)),
            capture_output=True, text=True, env=env, cwd=public, timeout=INSTALL_TIMEOUT,
        )  # fmt: skip
        need(
            result.returncode == 0,
            f"the Quick start's `{command}` failed (python3-venv and pip's index needed): "
            + (result.stderr.strip().splitlines() or ["?"])[-1],
        )
    return deployment


@contextmanager
def public_folder() -> Iterator[Path]:
    """A world-readable scratch folder under /tmp, removed afterwards."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="messengerd-deploy-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- accounts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    uid: int
    gid: int
    home: Path


class Accounts:
    """System users and groups a test makes with useradd/groupadd, removed at exit."""

    def __init__(self, prefix: str) -> None:
        need(os.geteuid() == 0, "creating users needs root")
        need(shutil.which("useradd", path=SAFE_PATH) is not None, "useradd missing (passwd)")
        self.prefix = prefix
        self.users: list[str] = []
        self.groups: list[str] = []

    def user(
        self,
        name: str,
        *,
        groups: tuple[str, ...] = (),
        system: bool = False,
        home: Path | None = None,
    ) -> Account:
        """A new user `PREFIX-NAME` with its own group (and `groups` beside); its home is
        `home` (which the caller makes), else a path that does not exist."""
        full = f"{self.prefix}-{name}"
        self._remove_user(full)
        home = home or Path("/nonexistent") / full
        command = ["useradd", "--user-group", "--no-create-home", "--home-dir", os.fspath(home),
                   "--shell", "/usr/sbin/nologin"]  # fmt: skip
        if system:
            command.append("--system")
        if groups:
            command += ["--groups", ",".join(groups)]
        subprocess.run([*command, full], check=True, capture_output=True, timeout=30)
        self.users.append(full)
        entry = pwd.getpwnam(full)
        return Account(full, entry.pw_uid, entry.pw_gid, home)

    def __enter__(self) -> Accounts:
        return self

    def __exit__(self, *exc: object) -> None:
        for name in reversed(self.users):
            self._remove_user(name)

    @staticmethod
    def _remove_user(name: str) -> None:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        # userdel keeps a user group that has other members, and one left by a crashed run.
        try:
            grp.getgrnam(name)
        except KeyError:
            return
        subprocess.run(["groupdel", name], capture_output=True, timeout=30)


def as_user(account: Account, *command: str, **options) -> subprocess.CompletedProcess:
    """Run `command` as `account` with its groups from the group database, in the clean
    environment a login gives it (setpriv, from util-linux)."""
    env = {
        "PATH": SAFE_PATH, "HOME": os.fspath(account.home), "USER": account.name,
        "LOGNAME": account.name, "LANG": "C.UTF-8",
    }  # fmt: skip
    return subprocess.run(
        ["setpriv", f"--reuid={account.name}", f"--regid={account.gid}", "--init-groups",
         *command],
        capture_output=True, text=True, env=env, timeout=options.pop("timeout", 60), **options,
    )  # fmt: skip
