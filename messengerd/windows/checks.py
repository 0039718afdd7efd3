"""doctor's Windows checks: NetBT per adapter, Defender Firewall rules, the NetBIOS API.

Everything is read through the seams in this package (registry, firewall, netbios), which
the Environment carries, so these run against fakes in the tests.
"""

from __future__ import annotations

import ctypes

from messengerd.config.options import DaemonConfig
from messengerd.doctor import PORT_OPTIONS, Check, Environment, Port, ports
from messengerd.windows import nb30, registry


def _adapters(environment: Environment) -> list[registry.Adapter]:
    return registry.adapters(environment.registry)


def _in_the_way(adapter: registry.Adapter, bind: str) -> bool:
    """NetBT on `adapter` holds the ports a bind to `bind` needs."""
    return adapter.netbt_enabled and (bind == "0.0.0.0" or bind in adapter.addresses)


def _both_ways(adapter_name: str) -> str:
    return (
        f'run `messengerd doctor --fix-netbt "{adapter_name}"` (elevated) to disable NetBIOS '
        "over TCP/IP there and receive with sockets (SMB file sharing on 445 keeps working), "
        "or run `messengerd run --backend netbios` (experimental) to receive through NetBT"
    )


def windows_holder(port: Port, config: DaemonConfig, environment: Environment) -> str:
    where = f"{port} on {config.bind}"
    blocking = [a for a in _adapters(environment) if _in_the_way(a, config.bind)]
    if blocking:
        names = ", ".join(f'"{adapter.name}"' for adapter in blocking)
        return f"{where} is held by System (NetBT) on {names}: {_both_ways(blocking[0].name)}"
    return (
        f"{where} is held by another program: find it with PowerShell "
        f"`Get-Net{port.transport.upper()}{'Endpoint' if port.transport == 'udp' else 'Connection'}"
        f" -LocalPort {port.number} | Select-Object OwningProcess` and stop it, or choose "
        f"another port with {PORT_OPTIONS[port.service]}"
    )


def netbt_checks(config: DaemonConfig, environment: Environment) -> list[Check]:
    checks = []
    for adapter in _adapters(environment):
        name = f"netbt {adapter.name}"
        addresses = ", ".join(adapter.addresses) or "no IPv4 address"
        if _in_the_way(adapter, config.bind):
            checks.append(
                Check(
                    name, False, f"{adapter.describe()} ({addresses}): {_both_ways(adapter.name)}"
                )
            )
        else:
            checks.append(Check(name, True, f"{adapter.describe()} ({addresses})"))
    return checks


def firewall_checks(config: DaemonConfig, environment: Environment) -> list[Check]:
    try:
        rules = environment.firewall.inbound_allow_rules()
    except OSError as exc:
        return [Check("firewall", False, f"cannot read Windows Defender Firewall rules: {exc}")]
    checks = []
    for port in ports(config):
        if port.number == 0:
            continue
        admitting = [
            rule.name
            for rule in rules
            if rule.admits(port.transport, port.number, environment.program)
        ]
        name = f"firewall {port.number}/{port.transport}"
        if admitting:
            checks.append(Check(name, True, f"allowed in by {', '.join(sorted(admitting))}"))
        else:
            checks.append(
                Check(
                    name,
                    False,
                    f"no enabled inbound rule allows {port}: in an elevated PowerShell run "
                    f'`New-NetFirewallRule -DisplayName "messengerd {port.service}" '
                    f"-Direction Inbound -Protocol {port.transport.upper()} "
                    f"-LocalPort {port.number} -Action Allow`",
                )
            )
    return checks


def netbios_api_check(environment: Environment) -> Check:
    """Whether the experimental backend could start: Netbios() loads and NCBENUM answers."""
    name = "netbios api"
    if environment.netbios is None:
        return Check(
            name,
            True,
            "Netbios() is not available: `run --backend netbios` cannot "
            "be used here; the sockets backend can",
        )
    lanas = nb30.LANA_ENUM()
    ncb = nb30.new_ncb(nb30.NCBENUM)
    ncb.ncb_buffer = ctypes.addressof(lanas)
    ncb.ncb_length = ctypes.sizeof(lanas)
    code = environment.netbios.netbios(ncb)
    if code != nb30.NRC_GOODRET:
        return Check(
            name,
            True,
            f"NCBENUM answered {nb30.describe_return_code(code)}: "
            "`run --backend netbios` will not work here; the sockets backend can",
        )
    numbers = ", ".join(str(lana) for lana in lanas.lana[: lanas.length]) or "none"
    return Check(
        name,
        True,
        f"experimental: Netbios() answers, LANAs {numbers} "
        "(Microsoft documents it as unsupported after XP)",
    )
