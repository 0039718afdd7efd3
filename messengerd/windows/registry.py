"""NetBT's per-adapter NetbiosOptions, read and (reversibly) set through one registry seam.

NetbiosOptions lives under
HKLM\\SYSTEM\\CurrentControlSet\\Services\\NetBT\\Parameters\\Interfaces\\Tcpip_{GUID}:
0 take the setting from DHCP (NetBT on unless the DHCP server says otherwise), 1 NetBIOS over
TCP/IP enabled, 2 disabled (the adapter dialog's "Disable NetBIOS over TCP/IP"). Adapters are
named as the Network Connections folder names them (the Control\\Network key), and their IPv4
addresses come from Tcpip\\Parameters\\Interfaces\\{GUID}, so every lookup goes through the
same narrow seam: `Registry`, four winreg calls.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

HKEY_LOCAL_MACHINE = "HKLM"
HKEY_CURRENT_USER = "HKCU"

NETBT_INTERFACES = r"SYSTEM\CurrentControlSet\Services\NetBT\Parameters\Interfaces"
NETBT_PREFIX = "Tcpip_"
TCPIP_INTERFACES = r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters\Interfaces"
NETWORK_CONNECTIONS = (
    r"SYSTEM\CurrentControlSet\Control\Network\{4D36E972-E325-11CE-BFC1-08002BE10318}"
)
"""The network adapter class key; `{GUID}\\Connection\\Name` is the name users see."""
NETBIOS_OPTIONS = "NetbiosOptions"

NETBT_FROM_DHCP = 0
NETBT_ENABLED = 1
NETBT_DISABLED = 2
NETBIOS_OPTION_MEANINGS = {
    NETBT_FROM_DHCP: "from DHCP: NetBIOS over TCP/IP on unless the DHCP server turns it off",
    NETBT_ENABLED: "NetBIOS over TCP/IP enabled",
    NETBT_DISABLED: "NetBIOS over TCP/IP disabled",
}
BACKUP_FILE = "netbt-previous.json"
"""In the data directory: each adapter's NetbiosOptions before `doctor --fix-netbt` changed
it, for `doctor --restore-netbt`."""

RegistryValue = int | str | list[str]


class RegistryError(Exception):
    """A registry read or write failed; the message says what to do, in one line."""


class Registry(Protocol):
    """The winreg calls used here (winreg.OpenKey/EnumKey/QueryValueEx/SetValueEx)."""

    def subkeys(self, hive: str, path: str) -> list[str]:
        """Names of the subkeys of `path`; FileNotFoundError if it does not exist."""
        ...

    def read(self, hive: str, path: str, name: str) -> RegistryValue | None:
        """The value `name` under `path` (REG_DWORD int, REG_SZ str, REG_MULTI_SZ list);
        None when the key or the value does not exist."""
        ...

    def write_dword(self, hive: str, path: str, name: str, value: int) -> None:
        """Set REG_DWORD `name` under the existing key `path`; PermissionError if denied."""
        ...

    def write_string(self, hive: str, path: str, name: str, value: str) -> None:
        """Set REG_SZ `name` under `path`, creating the key; PermissionError if denied."""
        ...

    def delete_value(self, hive: str, path: str, name: str) -> None:
        """Delete value `name` under `path`; nothing if it does not exist."""
        ...


class WinReg:
    """The real Registry: the standard library's winreg (Windows only)."""

    def __init__(self) -> None:
        if sys.platform != "win32":
            raise RegistryError("the Windows registry exists only on Windows")

    if sys.platform == "win32":

        @staticmethod
        def _hive(hive: str) -> int:
            import winreg

            return (
                winreg.HKEY_LOCAL_MACHINE
                if hive == HKEY_LOCAL_MACHINE
                else winreg.HKEY_CURRENT_USER
            )

        def subkeys(self, hive: str, path: str) -> list[str]:
            import winreg

            names = []
            with winreg.OpenKey(self._hive(hive), path) as key:
                count = winreg.QueryInfoKey(key)[0]
                for index in range(count):
                    names.append(winreg.EnumKey(key, index))
            return names

        def read(self, hive: str, path: str, name: str) -> RegistryValue | None:
            import winreg

            try:
                with winreg.OpenKey(self._hive(hive), path) as key:
                    value, _ = winreg.QueryValueEx(key, name)
            except FileNotFoundError:
                return None
            if isinstance(value, int | str):
                return value
            if isinstance(value, list):
                return [str(item) for item in value]
            return None

        def write_dword(self, hive: str, path: str, name: str, value: int) -> None:
            import winreg

            with winreg.OpenKey(self._hive(hive), path, 0, winreg.KEY_SET_VALUE) as key:
                winreg.SetValueEx(key, name, 0, winreg.REG_DWORD, value)

        def write_string(self, hive: str, path: str, name: str, value: str) -> None:
            import winreg

            with winreg.CreateKeyEx(self._hive(hive), path, 0, winreg.KEY_SET_VALUE) as key:
                winreg.SetValueEx(key, name, 0, winreg.REG_SZ, value)

        def delete_value(self, hive: str, path: str, name: str) -> None:
            import winreg

            try:
                with winreg.OpenKey(self._hive(hive), path, 0, winreg.KEY_SET_VALUE) as key:
                    winreg.DeleteValue(key, name)
            except FileNotFoundError:
                pass


@dataclass(frozen=True)
class Adapter:
    """One NetBT binding: the adapter's GUID, its connection name, addresses and setting."""

    guid: str
    name: str
    addresses: tuple[str, ...]
    netbios_options: int | None
    """None when the value is absent, which NetBT reads as 0."""

    @property
    def netbt_enabled(self) -> bool:
        """True unless NetbiosOptions is 2 (with 0, DHCP could turn it off; assume not)."""
        return self.netbios_options != NETBT_DISABLED

    @property
    def key(self) -> str:
        return rf"{NETBT_INTERFACES}\{NETBT_PREFIX}{self.guid}"

    def describe(self) -> str:
        options = 0 if self.netbios_options is None else self.netbios_options
        meaning = NETBIOS_OPTION_MEANINGS.get(options, "an unknown setting")
        return f"NetbiosOptions={options} ({meaning})"


def adapters(registry: Registry) -> list[Adapter]:
    """Every adapter NetBT is bound to, as the registry describes it."""
    try:
        keys = registry.subkeys(HKEY_LOCAL_MACHINE, NETBT_INTERFACES)
    except FileNotFoundError:
        return []  # NetBT is not installed
    found = []
    for key in sorted(keys):
        if not key.startswith(NETBT_PREFIX):
            continue
        guid = key[len(NETBT_PREFIX) :]
        name = registry.read(
            HKEY_LOCAL_MACHINE, rf"{NETWORK_CONNECTIONS}\{guid}\Connection", "Name"
        )
        options = registry.read(HKEY_LOCAL_MACHINE, rf"{NETBT_INTERFACES}\{key}", NETBIOS_OPTIONS)
        found.append(
            Adapter(
                guid=guid,
                name=name if isinstance(name, str) and name else guid,
                addresses=_addresses(registry, guid),
                netbios_options=options if isinstance(options, int) else None,
            )
        )
    return found


def _addresses(registry: Registry, guid: str) -> tuple[str, ...]:
    """The adapter's IPv4 addresses: the static IPAddress list, else the DHCP lease's."""
    path = rf"{TCPIP_INTERFACES}\{guid}"
    static = registry.read(HKEY_LOCAL_MACHINE, path, "IPAddress")
    found = list(static) if isinstance(static, list) else []
    dhcp = registry.read(HKEY_LOCAL_MACHINE, path, "DhcpIPAddress")
    if isinstance(dhcp, str):
        found.append(dhcp)
    return tuple(address for address in found if address and address != "0.0.0.0")


def find_adapter(registry: Registry, wanted: str) -> Adapter:
    """The adapter called `wanted` (connection name, case-insensitive, or GUID)."""
    every = adapters(registry)
    for adapter in every:
        if wanted.casefold() in (adapter.name.casefold(), adapter.guid.strip("{}").casefold(),
                                 adapter.guid.casefold()):  # fmt: skip
            return adapter
    known = ", ".join(f'"{adapter.name}"' for adapter in every) or "none"
    raise RegistryError(f'no network adapter "{wanted}" is bound to NetBT (adapters: {known})')


def set_netbios_options(registry: Registry, adapter: Adapter, value: int, data_dir: Path) -> int:
    """Set the adapter's NetbiosOptions to `value`, first recording the old value in
    data_dir for restore_netbios_options(); the old value (0 when it was absent)."""
    previous = 0 if adapter.netbios_options is None else adapter.netbios_options
    backup = _read_backup(data_dir)
    backup.setdefault(adapter.guid, previous)  # a second fix keeps the first original
    _write_backup(data_dir, backup)
    _write(registry, adapter, value)
    return previous


def restore_netbios_options(registry: Registry, adapter: Adapter, data_dir: Path) -> int:
    """Put back the NetbiosOptions recorded by set_netbios_options(); the value restored."""
    backup = _read_backup(data_dir)
    if adapter.guid not in backup:
        raise RegistryError(
            f'no NetbiosOptions of "{adapter.name}" was recorded in {data_dir / BACKUP_FILE} '
            "(doctor --fix-netbt never changed it): set it in the adapter's IPv4 > Advanced "
            "> WINS dialog instead"
        )
    value = backup.pop(adapter.guid)
    _write(registry, adapter, value)
    _write_backup(data_dir, backup)
    return value


def _write(registry: Registry, adapter: Adapter, value: int) -> None:
    try:
        registry.write_dword(HKEY_LOCAL_MACHINE, adapter.key, NETBIOS_OPTIONS, value)
    except PermissionError:
        raise RegistryError(
            "changing NetbiosOptions needs an administrator: run the command from an "
            "elevated PowerShell (Run as administrator)"
        ) from None


def _read_backup(data_dir: Path) -> dict[str, int]:
    try:
        data = json.loads((data_dir / BACKUP_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise RegistryError(f"cannot read {data_dir / BACKUP_FILE}: {exc}") from None
    return {str(key): int(value) for key, value in data.items()}


def _write_backup(data_dir: Path, backup: dict[str, int]) -> None:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / BACKUP_FILE).write_text(json.dumps(backup, indent=2), encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot record the old value in {data_dir}: {exc}") from None
