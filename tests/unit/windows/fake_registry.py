"""A fake Registry with winreg's documented behaviour (docs.python.org "winreg"):
key names are case-insensitive; OpenKey of a missing key raises FileNotFoundError
(ERROR_FILE_NOT_FOUND) and so does QueryValueEx of a missing value (read() gives None for
both); REG_DWORD reads back as int, REG_SZ as str, REG_MULTI_SZ as a list of str; SetValueEx
under HKLM without administrator rights raises PermissionError (ERROR_ACCESS_DENIED);
CreateKeyEx creates a missing key, OpenKey does not.
"""

from __future__ import annotations

from messengerd.windows import registry


class FakeRegistry:
    def __init__(self, *, elevated: bool = True) -> None:
        self.keys: dict[tuple[str, str], tuple[str, dict[str, object]]] = {}
        """(hive, lower-case path) -> (path as created, values)."""
        self.elevated = elevated

    def add_key(self, hive: str, path: str, **values: object) -> None:
        self.keys.setdefault((hive, path.lower()), (path, {}))[1].update(values)

    def values(self, hive: str, path: str) -> dict[str, object]:
        return self.keys[(hive, path.lower())][1]

    def add_adapter(self, guid: str, name: str, address: str | None, options: int | None):
        """An adapter as Windows records it: NetBT's Tcpip_{GUID} (with NetbiosOptions when
        set), its Network Connections name, and its IPv4 address (a DHCP lease)."""
        hklm = registry.HKEY_LOCAL_MACHINE
        netbt = rf"{registry.NETBT_INTERFACES}\{registry.NETBT_PREFIX}{guid}"
        self.add_key(
            hklm, netbt, **({} if options is None else {registry.NETBIOS_OPTIONS: options})
        )
        self.add_key(hklm, rf"{registry.NETWORK_CONNECTIONS}\{guid}\Connection", Name=name)
        if address is not None:
            self.add_key(
                hklm, rf"{registry.TCPIP_INTERFACES}\{guid}",
                DhcpIPAddress=address, IPAddress=["0.0.0.0"],
            )  # fmt: skip

    # -- the Registry seam ------------------------------------------------------------------

    def subkeys(self, hive: str, path: str) -> list[str]:
        prefix = path.lower() + "\\"
        below = [
            original[len(prefix) :].split("\\")[0]
            for (h, key), (original, _) in self.keys.items()
            if h == hive and key.startswith(prefix)
        ]
        if not below and (hive, path.lower()) not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return sorted(set(below))

    def read(self, hive: str, path: str, name: str):
        entry = self.keys.get((hive, path.lower()))
        return None if entry is None else entry[1].get(name)

    def write_dword(self, hive: str, path: str, name: str, value: int) -> None:
        self._check_rights(hive)
        if (hive, path.lower()) not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        self.values(hive, path)[name] = value

    def write_string(self, hive: str, path: str, name: str, value: str) -> None:
        self._check_rights(hive)
        self.add_key(hive, path, **{name: value})

    def delete_value(self, hive: str, path: str, name: str) -> None:
        self._check_rights(hive)
        entry = self.keys.get((hive, path.lower()))
        if entry is not None:
            entry[1].pop(name, None)

    def _check_rights(self, hive: str) -> None:
        if hive == registry.HKEY_LOCAL_MACHINE and not self.elevated:
            raise PermissionError(13, "Access is denied")
