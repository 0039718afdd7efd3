"""`messengerd doctor` on Windows, through its seams: NetBT in the registry (fake_registry,
winreg's documented behaviour), Defender Firewall rules (INetFwRule's fields), the service
control manager (test_service's FakeScm), Netbios() (fake_netbios), and bind(), which on
Windows fails with WSAEACCES (10013) for a port NetBT holds exclusively (Winsock's
SO_EXCLUSIVEADDRUSE documentation) and WSAEADDRINUSE (10048) for an ordinary holder."""

from __future__ import annotations

import argparse

from messengerd.commands import doctor as command
from messengerd.config.options import DaemonConfig
from messengerd.doctor import Environment, Port, run_checks
from messengerd.windows import registry
from messengerd.windows.firewall import FirewallRule
from tests.unit.windows.fake_netbios import FakeNetbios
from tests.unit.windows.fake_registry import FakeRegistry
from tests.unit.windows.test_service import FakeScm

ETHERNET = "{6A1E2C3B-0000-4000-8000-000000000001}"
WIFI = "{6A1E2C3B-0000-4000-8000-000000000002}"
WSAEACCES = 10013


class FakeFirewall:
    def __init__(self, rules: list[FirewallRule]) -> None:
        self.rules = rules

    def inbound_allow_rules(self) -> list[FirewallRule]:
        return self.rules


def netbt_binds(adapters: FakeRegistry):
    """bind() as Windows answers it while NetBT holds 137-139 on its enabled adapters."""

    def try_bind(host: str, port: Port) -> OSError | None:
        held = [a for a in registry.adapters(adapters) if a.netbt_enabled]
        if any(host == "0.0.0.0" or host in a.addresses for a in held) and port.number in (
            137, 138, 139,
        ):  # fmt: skip
            return OSError(WSAEACCES, "An attempt was made to access a socket in a way "
                           "forbidden by its access permissions")  # fmt: skip
        return None

    return try_bind


def windows(tmp_path, *, netbt_on_ethernet: bool = True, rules=None) -> Environment:
    fake = FakeRegistry()
    fake.add_adapter(ETHERNET, "Ethernet", "192.0.2.10", None if netbt_on_ethernet else 2)
    fake.add_adapter(WIFI, "Wi-Fi", "198.51.100.7", registry.NETBT_DISABLED)
    nb_rules = [
        FirewallRule("File and Printer Sharing (NB-Name-In)", 17, "137"),
        FirewallRule("File and Printer Sharing (NB-Datagram-In)", 17, "138"),
    ]
    return Environment(
        platform="win32", proc=tmp_path / "no-proc", registry=fake,
        firewall=FakeFirewall(nb_rules if rules is None else rules), services=FakeScm(),
        netbios=FakeNetbios(lanas=(0, 1)), program=r"C:\venv\Scripts\python.exe",
        try_bind=netbt_binds(fake),
    )  # fmt: skip


def by_name(checks):
    return {check.name: check for check in checks}


def test_netbt_in_the_way_is_named_per_adapter_with_both_ways_out(tmp_path):
    checks = by_name(run_checks(DaemonConfig(bind="0.0.0.0", data_dir=tmp_path), windows(tmp_path)))
    both = (
        'run `messengerd doctor --fix-netbt "Ethernet"` (elevated) to disable NetBIOS over '
        "TCP/IP there and receive with sockets (SMB file sharing on 445 keeps working), or run "
        "`messengerd run --backend netbios` (experimental) to receive through NetBT"
    )
    assert checks["name service port"].ok is False
    assert checks["name service port"].detail == (
        f'137/udp (name service) on 0.0.0.0 is held by System (NetBT) on "Ethernet": {both}'
    )
    assert checks["netbt Ethernet"].ok is False
    assert checks["netbt Ethernet"].detail.startswith("NetbiosOptions=0 (from DHCP")
    assert checks["netbt Wi-Fi"].ok is True
    assert checks["netbt Wi-Fi"].detail == (
        "NetbiosOptions=2 (NetBIOS over TCP/IP disabled) (198.51.100.7)"
    )


def test_binding_an_adapter_where_netbt_is_off_passes(tmp_path):
    config = DaemonConfig(bind="198.51.100.7", data_dir=tmp_path)
    checks = by_name(run_checks(config, windows(tmp_path)))
    assert checks["name service port"].ok and checks["session service port"].ok
    assert checks["netbt Ethernet"].ok  # enabled, but not on the address we bind


def test_a_port_no_firewall_rule_admits_gets_the_rule_to_add(tmp_path):
    checks = by_name(run_checks(DaemonConfig(data_dir=tmp_path), windows(tmp_path)))
    assert checks["firewall 137/udp"].ok
    assert checks["firewall 137/udp"].detail == (
        "allowed in by File and Printer Sharing (NB-Name-In)"
    )
    assert checks["firewall 139/tcp"].ok is False
    assert checks["firewall 139/tcp"].detail == (
        "no enabled inbound rule allows 139/tcp (session service): in an elevated PowerShell "
        'run `New-NetFirewallRule -DisplayName "messengerd session" -Direction Inbound '
        "-Protocol TCP -LocalPort 139 -Action Allow`"
    )


def test_a_rule_for_another_program_admits_nothing_for_us(tmp_path):
    rules = [FirewallRule("Other app", 17, "130-140", program=r"C:\Other\other.exe"),
             FirewallRule("Any UDP", 256, "*")]  # fmt: skip
    checks = by_name(run_checks(DaemonConfig(data_dir=tmp_path), windows(tmp_path, rules=rules)))
    assert checks["firewall 137/udp"].detail == "allowed in by Any UDP"


def test_the_netbios_api_and_the_service_are_reported(tmp_path):
    checks = by_name(run_checks(DaemonConfig(data_dir=tmp_path), windows(tmp_path)))
    assert checks["netbios api"].detail == (
        "experimental: Netbios() answers, LANAs 0, 1 (Microsoft documents it as unsupported "
        "after XP)"
    )
    assert checks["service"].detail == (
        "the Windows service is not installed (`messengerd service install` sets it up)"
    )


def test_fix_netbt_disables_it_and_restore_puts_it_back(tmp_path, capsys):
    environment = windows(tmp_path)
    args = argparse.Namespace(
        config=None, fix_netbt="Ethernet", restore_netbt=None, yes=True, data_dir=tmp_path,
        bind=None, broadcast=None, name_port=None, datagram_port=None, session_port=None,
        alias=None, workgroup=None, codepage=None, store=None,
    )  # fmt: skip
    assert command.cmd_doctor(args, environment) == 0
    out = capsys.readouterr().out
    assert out.startswith('"Ethernet": NetbiosOptions 0 -> 2 (NetBIOS over TCP/IP disabled)')
    assert out.rstrip().endswith('undo with `messengerd doctor --restore-netbt "Ethernet"`')
    assert registry.find_adapter(environment.registry, "Ethernet").netbios_options == 2
    checks = by_name(run_checks(DaemonConfig(bind="0.0.0.0", data_dir=tmp_path), environment))
    assert checks["name service port"].ok and checks["netbt Ethernet"].ok
    args.fix_netbt, args.restore_netbt = None, "ethernet"
    assert command.cmd_doctor(args, environment) == 0
    assert capsys.readouterr().out.startswith('"Ethernet": NetbiosOptions is 0 again')
    assert registry.find_adapter(environment.registry, "Ethernet").netbios_options == 0
