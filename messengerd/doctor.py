"""`messengerd doctor`: what stands between this host and receiving messages, and the fix.

Each check is a name, whether it passed, and a detail that, for a failure, says exactly what
to do. The checks:
- ports: each port messengerd needs (name 137/udp, datagram 138/udp, session 139/tcp, or
  the ones given) is tried on the bind address the way the daemon binds it; a taken port
  is traced to its holder: on Linux the process (from /proc/net and /proc/PID/fd, e.g.
  Samba's nmbd with its pid), on Windows NetBT on the adapters where it is enabled;
- netbt (Windows): each adapter's NetbiosOptions, and whether it is in the way;
- firewall (Windows): an inbound Defender Firewall rule for each port;
- data directory and control channel: writable, and whether a daemon answers there;
- service: the systemd unit's or the Windows service's state.
The Windows checks (messengerd.windows.checks) read through the seams in messengerd.windows,
so they are tested on Linux against fakes; the Linux checks are tested for real.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from messengerd.config.options import RPC_PORT, DaemonConfig

UNIX_PATH_MAX = 108
"""Bytes of an AF_UNIX socket path, NUL included (Linux's sockaddr_un.sun_path)."""
SYSTEMCTL_TIMEOUT = 5.0
"""Seconds `systemctl is-active` may take."""
TCP_LISTEN = "0A"
"""/proc/net/tcp's st for a listening socket (include/net/tcp_states.h TCP_LISTEN)."""
WINDOWS_IN_USE = (10048, 10013)
"""WSAEADDRINUSE, and WSAEACCES: what bind() says on Windows for a port another socket
holds exclusively, as NetBT holds 137-139."""
PORT_OPTIONS = {
    "name": "--name-port",
    "datagram": "--datagram-port",
    "session": "--session-port",
    "rpc": "--rpc-port",
}


@dataclass(frozen=True)
class Check:
    """One finding: `detail` says what was found and, when `ok` is False, what to do."""

    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Port:
    """A port the daemon opens: its service, transport and number."""

    service: str
    transport: str
    number: int

    def __str__(self) -> str:
        return f"{self.number}/{self.transport} ({self.service} service)"


def ports(config: DaemonConfig) -> list[Port]:
    """The ports `messengerd run` with this config opens, in the order it opens them."""
    found = [
        Port("name", "udp", config.name_port),
        Port("datagram", "udp", config.datagram_port),
        Port("session", "tcp", config.session_port),
    ]
    if config.rpc_port is not None:
        found.append(Port("rpc", "udp", config.rpc_port))
    return found


@dataclass
class Environment:
    """Where doctor looks: the platform, /proc, and the Windows seams (None elsewhere)."""

    platform: str = sys.platform
    proc: Path = Path("/proc")
    registry: Any = None
    """messengerd.windows.registry.Registry on Windows."""
    firewall: Any = None
    """messengerd.windows.firewall.Firewall on Windows."""
    services: Any = None
    """messengerd.windows.service.ServiceControl on Windows."""
    netbios: Any = None
    """messengerd.windows.netbios.NetbiosApi on Windows, for the experimental backend."""
    program: str | None = field(default_factory=lambda: sys.executable)
    """The program the firewall must admit (a rule for another program does not)."""
    try_bind: Callable[[str, Port], OSError | None] = field(
        default=lambda host, port: _try_bind(host, port)
    )
    """Bind as the daemon would and let go: the OSError bind() raised, or None."""

    @classmethod
    def here(cls) -> Environment:
        """This host's environment, with the real Windows seams on Windows."""
        environment = cls()
        if sys.platform == "win32":
            from messengerd.windows import firewall, netbios, registry, service

            environment.registry = registry.WinReg()
            environment.firewall = firewall.DefenderFirewall()
            environment.services = service.Win32ServiceControl()
            try:
                environment.netbios = netbios.Netapi32()
            except netbios.NetbiosUnavailable:
                environment.netbios = None
        return environment

    @property
    def windows(self) -> bool:
        return self.platform == "win32"


def run_checks(config: DaemonConfig, environment: Environment | None = None) -> list[Check]:
    """Every check for `config`, in the order a person fixes them."""
    environment = environment or Environment.here()
    daemon = _running_daemon(config.data_dir)
    checks = [_port_check(port, config, environment, daemon) for port in ports(config)]
    if config.rpc_port is None:
        checks.append(_rpc_off(environment))
    if environment.windows:
        from messengerd.windows import checks as windows_checks

        checks += windows_checks.netbt_checks(config, environment)
        checks += windows_checks.firewall_checks(config, environment)
        checks.append(windows_checks.netbios_api_check(environment))
    checks.append(_data_dir_check(config.data_dir))
    checks.append(_control_check(config.data_dir, daemon))
    checks.append(_service_check(environment))
    return checks


# -- ports -----------------------------------------------------------------------------------


def _rpc_off(environment: Environment) -> Check:
    """What it means that the RPC path is off, and how to have it."""
    if environment.windows:
        why = "Windows' own RPC endpoint mapper (RPCSS) holds UDP 135"
    else:
        why = "--no-rpc or `rpc = false`"
    return Check(
        "rpc path",
        True,
        f"off ({why}): NetrSendMessage calls are not received; --rpc-port PORT serves them "
        "on a port of your choosing (senders that found the endpoint through ept_map on 135 "
        "will not find it there)",
    )


def _port_check(
    port: Port, config: DaemonConfig, environment: Environment, daemon: dict[str, Any] | None
) -> Check:
    name = f"{port.service} service port"
    if port.number == 0:
        return Check(name, True, f"{port.service} service on any free port (0)")
    where = f"{port} on {config.bind}"
    failure = environment.try_bind(config.bind, port)
    if failure is None:
        return Check(name, True, f"{where} is free")
    if failure.errno in (errno.EACCES, errno.EPERM) and not environment.windows:
        return Check(
            name,
            False,
            f"no permission to listen on {where}: run it as the messengerd service "
            f"(service/README.md), give the capability to a dedicated venv's interpreter only, "
            f"or use a high port with {PORT_OPTIONS[port.service]}",
        )
    if failure.errno == errno.EADDRNOTAVAIL:
        return Check(name, False, f"{config.bind} is not an address of this host: check --bind")
    in_use = failure.errno == errno.EADDRINUSE or (
        environment.windows and failure.errno in WINDOWS_IN_USE
    )
    if not in_use:
        return Check(name, False, f"cannot listen on {where}: {failure.strerror or failure}")
    if environment.windows:
        from messengerd.windows.checks import windows_holder

        if port.service == "rpc" and port.number == RPC_PORT:
            return Check(
                name,
                False,
                f"{where} is held by Windows' RPC endpoint mapper (RPCSS), which Windows "
                "needs: leave it, and choose another port with --rpc-port or turn the RPC "
                "path off with --no-rpc",
            )
        return Check(name, False, windows_holder(port, config, environment))
    holders = port_holders(port, config.bind, environment.proc)
    if daemon is not None and any(pid == daemon.get("pid") for _, pid in holders):
        return Check(name, True, f"{where} is held by the running messengerd (pid {daemon['pid']})")
    if holders:
        named = ", ".join(f"{command} (pid {pid})" for command, pid in holders)
        return Check(
            name,
            False,
            f"{where} is held by {named}: stop it{_stop_hint(holders)}, or choose another "
            f"port with {PORT_OPTIONS[port.service]}",
        )
    return Check(
        name,
        False,
        f"{where} is in use by a process this user cannot see: run `sudo messengerd doctor` "
        f"to name it, or choose another port with {PORT_OPTIONS[port.service]}",
    )


def _try_bind(host: str, port: Port) -> OSError | None:
    """Bind as the daemon does (no SO_REUSEADDR on the unicast socket), then let go."""
    kind = socket.SOCK_DGRAM if port.transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((host, port.number))
            if port.transport == "tcp":
                probe.listen(1)
        except OSError as exc:
            return exc
    return None


def _stop_hint(holders: list[tuple[str, int]]) -> str:
    commands = {command for command, _ in holders}
    if commands & {"nmbd", "smbd", "samba"}:
        return " (Samba: `systemctl stop nmbd smbd`, or `disable netbios = yes` in smb.conf)"
    return ""


def port_holders(port: Port, bind: str, proc: Path = Path("/proc")) -> list[tuple[str, int]]:
    """(command, pid) of each process with a socket on `port` that a bind to `bind` meets.

    Linux: the sockets come from /proc/net/{udp,tcp}{,6} (listening TCP sockets only), their
    owners from the socket:[inode] links in /proc/PID/fd; processes this user may not look
    into are skipped.
    """
    inodes = set(_socket_inodes(port, bind, proc))
    if not inodes:
        return []
    found: list[tuple[str, int]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            try:
                command = (entry / "comm").read_text().strip()
            except OSError:
                command = "?"
            found.append((command, int(entry.name)))
    return sorted(found, key=lambda holder: holder[1])


def _socket_inodes(port: Port, bind: str, proc: Path) -> Iterable[str]:
    for suffix in ("", "6"):
        table = proc / "net" / f"{port.transport}{suffix}"
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            address, _, hex_port = fields[1].rpartition(":")
            if int(hex_port, 16) != port.number:
                continue
            if port.transport == "tcp" and fields[3] != TCP_LISTEN:
                continue
            if _meets(_proc_address(address), bind):
                yield fields[9]


def _proc_address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net's address: 32-bit words in host byte order, printed in hex."""
    raw = bytes.fromhex(hex_address)
    words = [raw[at : at + 4] for at in range(0, len(raw), 4)]
    packed = b"".join(struct.pack("=I", int.from_bytes(word, "big")) for word in words)
    return ipaddress.ip_address(packed)


def _meets(local: ipaddress.IPv4Address | ipaddress.IPv6Address, bind: str) -> bool:
    """True when a socket bound to `local` stops a bind to `bind` on the same port."""
    if isinstance(local, ipaddress.IPv6Address):
        if local.ipv4_mapped is not None:
            local = local.ipv4_mapped
        else:
            return local.is_unspecified  # [::] without IPV6_V6ONLY takes IPv4 too
    wanted = ipaddress.IPv4Address(bind)
    return local.is_unspecified or wanted.is_unspecified or local == wanted


# -- data directory, control channel, service ------------------------------------------------


def _data_dir_check(data_dir: Path) -> Check:
    name = "data directory"
    if data_dir.is_dir():
        if os.access(data_dir, os.W_OK | os.X_OK):
            return Check(name, True, f"{data_dir} is writable")
        return Check(
            name,
            False,
            f"{data_dir} is not writable by this user: run as its "
            f"owner, or `chown -R $(id -un) {data_dir}`, or choose --data-dir",
        )
    if data_dir.exists():
        return Check(
            name,
            False,
            f"{data_dir} exists and is not a directory: remove it or choose another --data-dir",
        )
    parent = data_dir.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        return Check(name, True, f"{data_dir} will be created")
    return Check(
        name,
        False,
        f"{data_dir} cannot be created ({parent} is not writable): "
        f"create it as root with `mkdir -p {data_dir} && chown $(id -un) {data_dir}`, "
        "or choose --data-dir",
    )


def _running_daemon(data_dir: Path) -> dict[str, Any] | None:
    """The status of the daemon answering for `data_dir`, or None."""
    from messengerd.control.client import ControlClient
    from messengerd.control.protocol import ControlError

    try:
        with ControlClient(data_dir, timeout=SYSTEMCTL_TIMEOUT) as client:
            return client.request("status")
    except (ControlError, OSError, ValueError):
        return None


def _control_check(data_dir: Path, daemon: dict[str, Any] | None) -> Check:
    from messengerd.control.client import ControlClient
    from messengerd.control.protocol import CONTROL_SOCKET, ControlError, NoDaemonError

    name = "control channel"
    if daemon is not None:
        return Check(name, True, f"messengerd (pid {daemon.get('pid')}) answers for {data_dir}")
    socket_path = os.fsencode(data_dir / CONTROL_SOCKET)
    if hasattr(socket, "AF_UNIX") and len(socket_path) >= UNIX_PATH_MAX:
        return Check(
            name,
            False,
            f"{data_dir / CONTROL_SOCKET} is {len(socket_path)} bytes, "
            f"longer than a Unix socket path may be ({UNIX_PATH_MAX - 1}): choose a "
            "shorter --data-dir",
        )
    try:
        ControlClient(data_dir, timeout=SYSTEMCTL_TIMEOUT).close()
    except NoDaemonError as exc:
        return Check(name, True, str(exc).replace("messengerd: ", ""))
    except ControlError as exc:
        return Check(name, False, str(exc))
    return Check(name, True, f"a messengerd answers for {data_dir}")


def _service_check(environment: Environment) -> Check:
    name = "service"
    if environment.windows:
        from messengerd.windows import service

        try:
            state = service.status(environment.services)
        except service.ServiceCommandError as exc:
            return Check(name, False, str(exc))
        if state == service.NOT_INSTALLED:
            return Check(
                name,
                True,
                "the Windows service is not installed (`messengerd service install` sets it up)",
            )
        return Check(name, True, f"the Windows service is {state}")
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return Check(name, True, "no systemd here: see service/README.md to run it as a service")
    try:
        result = subprocess.run(
            [systemctl, "is-active", "messengerd"],
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check(name, True, f"systemctl did not answer ({exc}): service state unknown")
    state = result.stdout.strip()
    if not state:
        return Check(
            name,
            True,
            "systemd is not running here: service/README.md says how to "
            "run messengerd as a service",
        )
    if state == "failed":
        return Check(
            name,
            False,
            "the messengerd unit failed: see `journalctl -u messengerd`, "
            "fix what it says, then `systemctl restart messengerd`",
        )
    if state == "active":
        return Check(name, True, "the messengerd systemd unit is active")
    return Check(
        name, True, f"the messengerd systemd unit is {state} (service/README.md sets it up)"
    )
