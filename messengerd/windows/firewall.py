"""Windows Defender Firewall: do its inbound rules let NetBIOS traffic reach us?

Read through one seam, `Firewall.inbound_allow_rules()`; the real one walks the rules of the
HNetCfg.FwPolicy2 COM object (INetFwPolicy2.Rules, netfw.h) with pywin32. Windows ships rules
for these ports ("File and Printer Sharing (NB-Name-In)", "(NB-Datagram-In)",
"(NB-Session-In)"), disabled on public networks.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Protocol

NET_FW_RULE_DIR_IN = 1
NET_FW_ACTION_ALLOW = 1
NET_FW_IP_PROTOCOL_TCP = 6
NET_FW_IP_PROTOCOL_UDP = 17
NET_FW_IP_PROTOCOL_ANY = 256
"""INetFwRule's Direction, Action and Protocol values (netfw.h)."""

PROTOCOL_NUMBERS = {"tcp": NET_FW_IP_PROTOCOL_TCP, "udp": NET_FW_IP_PROTOCOL_UDP}


@dataclass(frozen=True)
class FirewallRule:
    """An enabled inbound allow rule: its name, protocol number, LocalPorts and program."""

    name: str
    protocol: int
    local_ports: str
    """INetFwRule.LocalPorts: "*", or a list such as "137,138" or "137-139"."""
    program: str | None = None
    """INetFwRule.ApplicationName: the only program the rule admits, or None for any."""

    def admits(self, protocol: str, port: int, program: str | None = None) -> bool:
        """True when this rule lets `protocol` traffic to `port` in (for `program`)."""
        if self.protocol not in (PROTOCOL_NUMBERS[protocol], NET_FW_IP_PROTOCOL_ANY):
            return False
        if self.program and program and self.program.casefold() != program.casefold():
            return False
        return _port_in(port, self.local_ports)


def _port_in(port: int, ports: str) -> bool:
    for part in ports.replace(" ", "").split(","):
        if part in ("*", ""):
            return part == "*"
        low, _, high = part.partition("-")
        if low.isdigit() and (high or low).isdigit() and int(low) <= port <= int(high or low):
            return True
    return False


class Firewall(Protocol):
    """The firewall query doctor makes."""

    def inbound_allow_rules(self) -> list[FirewallRule]:
        """Every enabled inbound allow rule; OSError when the firewall cannot be read."""
        ...


class DefenderFirewall:
    """The real Firewall: INetFwPolicy2 through pywin32's COM client (Windows only)."""

    def inbound_allow_rules(self) -> list[FirewallRule]:
        if sys.platform != "win32":
            raise OSError("Windows Defender Firewall exists only on Windows")
        import pythoncom
        import win32com.client

        pythoncom.CoInitialize()
        try:
            policy = win32com.client.Dispatch("HNetCfg.FwPolicy2")
            rules = []
            for rule in policy.Rules:
                if not (
                    rule.Enabled
                    and rule.Direction == NET_FW_RULE_DIR_IN
                    and rule.Action == NET_FW_ACTION_ALLOW
                ):
                    continue
                rules.append(
                    FirewallRule(
                        name=str(rule.Name),
                        protocol=int(rule.Protocol),
                        local_ports=str(rule.LocalPorts or "*"),
                        program=str(rule.ApplicationName) if rule.ApplicationName else None,
                    )
                )
            return rules
        except pythoncom.com_error as exc:
            raise OSError(f"cannot read the firewall rules: {exc}") from None
        finally:
            pythoncom.CoUninitialize()
