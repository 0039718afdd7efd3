"""`messengerd service install|remove|start|stop|status` on Linux: the systemd unit.

`install` (as root) creates the `messengerd` system user and group, writes the unit with
ExecStart pointing at the messengerd this interpreter runs, writes a settings file to start
from (only when there is none), and enables and starts the service. `remove` stops and
disables it and removes the unit; the user, group, data and settings stay. start, stop and
status go to systemctl. service/messengerd.service in the source tree is render_unit() for
the venv the README's install uses (/opt/messengerd), kept equal by a test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from messengerd.commands.exits import EXIT_OK, EXIT_USAGE
from messengerd.config.options import SERVICE_DATA_DIR, SERVICE_USER
from messengerd.config.settings import CONFIG_FILE_NAME

UNIT_NAME = "messengerd.service"
UNIT_DIR = Path("/etc/systemd/system")
"""Where units an administrator installs go (systemd.unit(5))."""
SETTINGS_DIR = Path("/etc") / "messengerd"
"""The service's settings folder: the unit sets XDG_CONFIG_HOME=/etc, so messengerd reads
/etc/messengerd/messengerd.toml as its default settings file, when there is one."""
DOCS = Path("share") / "doc" / "messengerd"
"""Where pip puts the docs under the install's prefix (pyproject.toml's data-files)."""
SYSTEMD_RUNNING = Path("/run/systemd/system")
"""Present only while systemd is the init system (sd_booted(3))."""
NOLOGIN = "/usr/sbin/nologin"
LIMIT_NOFILE = 4096
"""The unit's LimitNOFILE: messengerd.commands.run.OPEN_FILES_NEEDED (2176: 2048 sessions, 64
control connections, 64 more) rounded up to a power of two."""
HIDDEN_FROM_SERVICE = tuple(map(Path, ("/home", "/root", "/run/user", "/tmp", "/var/tmp")))
"""Folders the unit's ProtectHome= and PrivateTmp= hide: a messengerd there cannot start."""

ACTIONS = ("install", "remove", "start", "stop", "status")
WINDOWS = "this is systemd's service; on Windows `messengerd service` installs Windows' own"

SETTINGS_TEMPLATE = """\
# The messengerd service's settings (`messengerd config check {path}` checks them).
# Every key is optional; README.md's "The settings file" lists them all. The unit's
# command line (data directory, control group) wins over [daemon] here. After a change:
# systemctl restart messengerd

[daemon]
# aliases = ["ALERTS"]        # names to receive under (default: this host's name)
# bind = "192.0.2.10"         # one interface (default: every interface)
# codepage = "cp850"          # the senders' OEM code page
"""


class ServiceError(Exception):
    """The service cannot be installed or acted on here; one line saying why and what to do."""


Run = Callable[..., subprocess.CompletedProcess]


def messengerd_command() -> str:
    """ExecStart's program: the `messengerd` script beside this interpreter, else
    `python -m messengerd` with this interpreter."""
    script = Path(sys.executable).with_name("messengerd")
    if script.is_file() and os.access(script, os.X_OK):
        return os.fspath(script)
    return f"{sys.executable} -m messengerd"


def documentation() -> str | None:
    """The unit's Documentation=: this install's copy of service/README.md (a pip install
    puts it under the prefix; a source checkout has it in place); None if there is none."""
    for path in (
        Path(sys.prefix) / DOCS / "service" / "README.md",
        Path(__file__).resolve().parents[1] / "service" / "README.md",
    ):
        if path.is_file():
            return path.as_uri()
    return None


def render_unit(command: str, documentation: str | None) -> str:
    """The systemd unit that runs `command run` as the messengerd service."""
    docs = f"Documentation={documentation}\n" if documentation else ""
    return f"""\
# messengerd as a system service: receives Messenger messages for the whole machine.
# Written by `messengerd service install`, or installed by hand: service/README.md.
[Unit]
Description=messengerd - Windows Messenger-service receiver (net send)
{docs}After=network-online.target
Wants=network-online.target
# Samba's nmbd and smbd use ports 137-139 as well. Nothing here stops them: while one holds
# a port, messengerd exits with code 2 naming it, and is not restarted.

[Service]
Type=exec
User={SERVICE_USER}
Group={SERVICE_USER}
# Members of the group may use `messengerd names`, `status`, `history` and `tray` against
# this service (usermod -aG {SERVICE_USER} USER; they log in again).
ExecStart={command} run --data-dir {SERVICE_DATA_DIR} --control-group {SERVICE_USER}
# The settings file, when there is one: /etc/messengerd/messengerd.toml.
Environment=XDG_CONFIG_HOME=/etc
Restart=on-failure
RestartSec=5s
# A port or setting the user must fix (exit 2) is not worth restarting for.
RestartPreventExitStatus=2
StateDirectory=messengerd
StateDirectoryMode=0750
# One descriptor per session (2048 at most), control connection and listener, and room.
LimitNOFILE={LIMIT_NOFILE}
UMask=0077
# Ports 135 and 137-139 are privileged: grant only that capability, never root.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
PrivateMounts=yes
RestrictAddressFamilies=AF_INET AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
"""


def ensure_account(name: str, home: Path, run: Run = subprocess.run) -> list[str]:
    """Create the system group and user `name` (home `home`, not created, no login shell)
    where they are missing; the commands run. ServiceError when one fails."""
    if sys.platform == "win32":
        raise ServiceError(WINDOWS)
    import grp
    import pwd

    commands = []
    try:
        grp.getgrnam(name)
    except KeyError:
        commands.append(["groupadd", "--system", name])
    try:
        pwd.getpwnam(name)
    except KeyError:
        commands.append(
            ["useradd", "--system", "--gid", name, "--home-dir", os.fspath(home),
             "--no-create-home", "--shell", NOLOGIN, "--comment", "messengerd service", name]
        )  # fmt: skip
    for command in commands:
        _run(run, command)
    return [" ".join(command) for command in commands]


def install(run: Run = subprocess.run) -> list[str]:
    """Install, enable and start the service; what was done, a line each."""
    _check_can_manage()
    command = messengerd_command()
    check_visible(Path(command.split()[0]))
    done = ensure_account(SERVICE_USER, SERVICE_DATA_DIR, run)
    unit = UNIT_DIR / UNIT_NAME
    _write(unit, render_unit(command, documentation()))
    done.append(f"wrote {unit} (ExecStart={command} run ...)")
    settings = SETTINGS_DIR / CONFIG_FILE_NAME
    if not settings.exists():
        _write(settings, SETTINGS_TEMPLATE.format(path=settings))
        done.append(f"wrote {settings}")
    _run(run, ["systemctl", "daemon-reload"])
    _run(run, ["systemctl", "enable", "--now", UNIT_NAME])
    done.append(f"enabled and started {UNIT_NAME}: systemctl status messengerd")
    done.append(f"desktop users: usermod -aG {SERVICE_USER} USER, then they log in again")
    return done


def remove(run: Run = subprocess.run) -> list[str]:
    """Stop, disable and remove the service; the account, data and settings stay."""
    _check_can_manage()
    unit = UNIT_DIR / UNIT_NAME
    _run(run, ["systemctl", "disable", "--now", UNIT_NAME])
    unit.unlink(missing_ok=True)
    _run(run, ["systemctl", "daemon-reload"])
    return [
        f"stopped, disabled and removed {unit}",
        f"kept: the user and group {SERVICE_USER}, {SERVICE_DATA_DIR} and {SETTINGS_DIR} "
        f"(userdel {SERVICE_USER}; rm -r {SERVICE_DATA_DIR} {SETTINGS_DIR} to remove them)",
    ]


def cmd_service(action: str, run: Run = subprocess.run) -> int:
    """`messengerd service ACTION` on Linux: EXIT_OK, systemctl's exit code for start, stop
    and status, or EXIT_USAGE with one line on stderr."""
    try:
        if action in ("start", "stop", "status"):
            _check_systemd()
            return run(["systemctl", action, UNIT_NAME]).returncode
        for line in install(run) if action == "install" else remove(run):
            print(line)
    except ServiceError as exc:
        print(f"messengerd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def check_visible(program: Path) -> None:
    """ServiceError when the unit's sandbox would hide `program` from the service."""
    for hidden in HIDDEN_FROM_SERVICE:
        if program.is_relative_to(hidden):
            raise ServiceError(
                f"{program} is under {hidden}, which the service cannot see (ProtectHome=, "
                "PrivateTmp=): install messengerd in /opt/messengerd (service/README.md)"
            )


def _check_systemd() -> None:
    if shutil.which("systemctl") is None or not SYSTEMD_RUNNING.is_dir():
        raise ServiceError(
            "systemd is not running on this machine: start `messengerd run` from its init "
            "system instead (service/README.md)"
        )


def _check_can_manage() -> None:
    if sys.platform == "win32":
        raise ServiceError(WINDOWS)
    if os.geteuid() != 0:
        raise ServiceError("installing or removing the service needs root: run it with sudo")
    _check_systemd()


def _run(run: Run, command: list[str]) -> None:
    try:
        result = run(command, capture_output=True, text=True)
    except OSError as exc:
        raise ServiceError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        why = (result.stderr or result.stdout).strip().splitlines()
        raise ServiceError(f"{' '.join(command)} failed: {why[-1] if why else result.returncode}")


def _write(path: Path, text: str) -> None:
    """Write `text` to `path` (0644) whole or not at all."""
    try:
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise ServiceError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException as exc:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ServiceError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
