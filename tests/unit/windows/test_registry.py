"""NetBT's NetbiosOptions per adapter, against a fake registry with winreg's documented
behaviour (fake_registry.py)."""

from __future__ import annotations

import sys

import pytest

from messengerd.windows import registry
from messengerd.windows.registry import RegistryError
from tests.unit.windows.fake_registry import FakeRegistry

ETHERNET = "{6A1E2C3B-0000-4000-8000-000000000001}"
WIFI = "{6A1E2C3B-0000-4000-8000-000000000002}"


def two_adapters(**options) -> FakeRegistry:
    fake = FakeRegistry(**options)
    fake.add_adapter(ETHERNET, "Ethernet", "192.0.2.10", None)
    fake.add_adapter(WIFI, "Wi-Fi", None, registry.NETBT_DISABLED)
    return fake


def test_adapters_are_named_as_network_connections_names_them():
    found = registry.adapters(two_adapters())
    assert [(a.name, a.guid, a.addresses, a.netbios_options, a.netbt_enabled) for a in found] == [
        ("Ethernet", ETHERNET, ("192.0.2.10",), None, True),
        ("Wi-Fi", WIFI, (), registry.NETBT_DISABLED, False),
    ]
    assert found[0].describe() == (
        "NetbiosOptions=0 (from DHCP: NetBIOS over TCP/IP on unless the DHCP server turns it off)"
    )


def test_no_netbt_key_means_no_adapters():
    assert registry.adapters(FakeRegistry()) == []


def test_an_adapter_is_found_by_name_case_insensitively_or_by_guid():
    fake = two_adapters()
    assert registry.find_adapter(fake, "ethernet").guid == ETHERNET
    assert registry.find_adapter(fake, WIFI.strip("{}")).name == "Wi-Fi"
    with pytest.raises(RegistryError, match=r'no network adapter "VPN" .*"Ethernet", "Wi-Fi"'):
        registry.find_adapter(fake, "VPN")


def test_fix_then_restore_puts_the_old_value_back(tmp_path):
    fake = two_adapters()
    ethernet = registry.find_adapter(fake, "Ethernet")
    assert registry.set_netbios_options(fake, ethernet, registry.NETBT_DISABLED, tmp_path) == 0
    assert fake.read("HKLM", ethernet.key, "NetbiosOptions") == registry.NETBT_DISABLED
    # A second fix keeps the value from before the first.
    ethernet = registry.find_adapter(fake, "Ethernet")
    registry.set_netbios_options(fake, ethernet, registry.NETBT_DISABLED, tmp_path)
    assert registry.restore_netbios_options(fake, ethernet, tmp_path) == 0
    assert fake.read("HKLM", ethernet.key, "NetbiosOptions") == 0
    with pytest.raises(RegistryError, match="never changed it"):
        registry.restore_netbios_options(fake, ethernet, tmp_path)


def test_without_administrator_rights_the_error_says_to_elevate(tmp_path):
    fake = two_adapters(elevated=False)
    with pytest.raises(RegistryError, match="elevated PowerShell"):
        registry.set_netbios_options(
            fake, registry.find_adapter(fake, "Ethernet"), registry.NETBT_DISABLED, tmp_path
        )


@pytest.mark.skipif(sys.platform == "win32", reason="the registry exists there")
def test_the_real_registry_is_windows_only():
    with pytest.raises(RegistryError, match="only on Windows"):
        registry.WinReg()
