"""The daemon's settings, with Windows' defaults for the aliases and the standard ports."""

from __future__ import annotations

import getpass
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from messengerd.core.limits import SESSION_IDLE_TIMEOUT
from messengerd.core.store.retention import Retention
from messengerd.wire.names import NETBIOS_NAME_LENGTH
from messengerd.wire.text import DEFAULT_CODEPAGE

NAME_SERVICE_PORT = 137
DATAGRAM_SERVICE_PORT = 138
SESSION_SERVICE_PORT = 139
"""The NetBIOS-over-TCP/IP ports (RFC 1002 §3)."""
RPC_PORT = 135
"""The endpoint mapper's UDP port (C706 Appendix O), where messenger spam sent NetrSendMessage
straight away; XP's own msgsvcsend endpoint was dynamic (PROTOCOL.md §6)."""

DEFAULT_WORKGROUP = "WORKGROUP"


SERVICE_DATA_DIR = Path("/var/lib/messengerd")
"""The system service's state directory (service/messengerd.service: StateDirectory)."""
SERVICE_USER = "messengerd"
"""The system service's user and group (service/messengerd.service: User, Group)."""


def _netbios_length(name: str) -> str:
    """`name` cut to what fits a NetBIOS name, as Windows cut computer names to 15 bytes."""
    while len(name.upper().encode(DEFAULT_CODEPAGE, errors="replace")) > NETBIOS_NAME_LENGTH:
        name = name[:-1]
    return name


def default_computer_name() -> str:
    """The host name without its domain, at most 15 bytes: the computer's NAME<03>."""
    return _netbios_length(socket.gethostname().split(".")[0])


def default_aliases() -> list[str]:
    """The host name and the logged-in user, as Windows' Messenger registered them; the
    system service's own account (SERVICE_USER) is no person, and no alias."""
    names = [default_computer_name()]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = ""
    if user and user != SERVICE_USER and user.upper() != names[0].upper():
        names.append(_netbios_length(user))
    return [name for name in names if name]


def default_data_dir() -> Path:
    """Where `messengerd run` keeps the alias table, the inbox and the control socket by
    default: the platform's per-user data directory (root's too: the system service names
    its own, SERVICE_DATA_DIR, in its unit)."""
    return Path(platformdirs.user_data_dir("messengerd", appauthor=False))


BACKENDS = ("sockets", "netbios")
"""How messages arrive (DaemonConfig.backend)."""


def default_rpc_port() -> int | None:
    """UDP 135 for the RPC path; none on Windows, where RPCSS holds 135 (`doctor` says so)."""
    return None if sys.platform == "win32" else RPC_PORT


def front_end_data_dir(marker: str) -> Path:
    """The data directory a front end acts on when given none: the user's own when it holds
    `marker` (the control socket for names, status and the tray; the inbox for history),
    else the system service's when it exists (Unix), else the user's own again.

    A service directory this user may not enter is still chosen, so that the front end can
    say so (messengerd.core.datadir.unreachable) instead of "no daemon".
    """
    own = default_data_dir()
    if os.path.lexists(own / marker) or sys.platform == "win32":
        return own
    if SERVICE_DATA_DIR.is_dir():
        return SERVICE_DATA_DIR
    return own


@dataclass
class DaemonConfig:
    """Everything `messengerd run` can set."""

    bind: str = "0.0.0.0"
    broadcast: str | None = None
    name_port: int = NAME_SERVICE_PORT
    datagram_port: int = DATAGRAM_SERVICE_PORT
    session_port: int = SESSION_SERVICE_PORT
    rpc_port: int | None = field(default_factory=default_rpc_port)
    """The UDP port of the RPC path (NetrSendMessage and ept_map); None: no RPC listener."""
    aliases: list[str] = field(default_factory=default_aliases)
    workgroups: list[str] = field(default_factory=lambda: [DEFAULT_WORKGROUP])
    codepage: str = DEFAULT_CODEPAGE
    data_dir: Path = field(default_factory=default_data_dir)
    store: bool = True
    """Keep every message in the inbox before acknowledging it; False only prints them."""
    interfaces: list[str] = field(default_factory=list)
    """Which interfaces the default bind registers our names on (smb.conf's `interfaces`:
    names with shell wildcards, addresses or networks); empty: every one that broadcasts."""
    retention: Retention = field(default_factory=Retention)
    """How much the inbox keeps (the settings' `[store]`); the oldest messages go first."""
    computer_name: str = field(default_factory=default_computer_name)
    """NetMessageNameDel refuses to delete this alias (NERR_DelComputerName) when it is one."""
    keep_aliases: bool = True
    """Load the alias table from data_dir/aliases.json at start and store it after changes."""
    register: bool = True
    """Register the aliases by broadcast (RFC 1002 B node) and defend them. False answers for
    them without asking the network: only for a receiver nobody else shares a segment with."""
    name_ttl: int | None = None
    """Seconds our registrations and query answers ask to be kept, refreshed at half of it;
    None: Windows' 300000 (messengerd.wire.nbns.DEFAULT_TTL)."""
    control_group: str | None = None
    """A group whose members may use the control channel and read the inbox (Unix;
    messengerd.core.datadir); None: the daemon's user and root only."""
    backend: str = "sockets"
    """How messages arrive: "sockets" (NetBIOS over TCP/IP of our own, UDP 137/138 and TCP
    139) or "netbios" (Windows' NetBIOS API beside its own NetBT: experimental)."""
    session_idle_timeout: float = SESSION_IDLE_TIMEOUT
    """Seconds a session may go without completing a frame before it is closed."""
    control: str = "auto"
    """The control channel: "unix" socket, loopback "tcp" with a token file, "auto" (unix
    where the platform has it), or "none"."""
