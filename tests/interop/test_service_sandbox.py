"""The systemd unit's daemon starts and serves under the unit's own sandbox.

systemd does not run here, so the test applies what the unit file says the way systemd
does, reading each line from service/messengerd.service itself:
- User=/Group=: a fresh system user and group (test names: the machine may have a real
  `messengerd`), the state directory made as StateDirectory=/StateDirectoryMode= make it;
- AmbientCapabilities=/CapabilityBoundingSet=/NoNewPrivileges=: setpriv (util-linux)
  switches to that user keeping only those capabilities, ambient, and sets no_new_privs;
- LimitNOFILE=: prlimit (util-linux);
- RestrictAddressFamilies=: ../shared/tools/restrict-af.c, built here with cc, a seccomp
  filter that fails socket() for any other family with EAFNOSUPPORT, as systemd's does;
- Environment= and ExecStart= (its program: the Quick start venv's messengerd).
The daemon listens on the real ports 137-139 (bind 0.0.0.0, as ExecStart leaves it) inside
a network namespace on 198.51.100.0/24, and Samba's smbclient sends from a second one.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import samba
from tests.conftest import need, need_tool
from tests.daemon_process import DaemonProcess
from tests.deployed import REPOSITORY, SAFE_PATH, Accounts
from tests.interop.test_names_netns import NMBD_READY_TIMEOUT, POLL_INTERVAL
from tests.netns import CLIENT_ADDRESS, SERVER_ADDRESS, create_pair, destroy_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]

UNIT = REPOSITORY / "service" / "messengerd.service"
RESTRICT_AF = REPOSITORY.parent / "shared" / "tools" / "restrict-af.c"
"""systemd's RestrictAddressFamilies= as a seccomp wrapper; CI has ../shared/tools beside the
checkout, as it has ../shared/captures (tests/conftest.py)."""


def unit_service() -> dict[str, list[str]]:
    """The unit's [Service] lines: key -> every value given to it, in order."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def one(service: dict[str, list[str]], key: str) -> str:
    (value,) = service[key]
    return value


def families(service: dict[str, list[str]]) -> list[int]:
    """RestrictAddressFamilies= as numbers (an allow list: the unit names what it uses)."""
    names = one(service, "RestrictAddressFamilies").split()
    assert names and not names[0].startswith("~"), "the unit should allow a list, not deny one"
    return [int(getattr(socket, name)) for name in names]


def capabilities(service: dict[str, list[str]]) -> str:
    """The unit's capabilities as setpriv spells them (`+net_bind_service,...`); the ambient
    set and the bounding set must be the same set for this test's one setpriv line."""
    ambient = set(one(service, "AmbientCapabilities").split())
    assert ambient == set(one(service, "CapabilityBoundingSet").split())
    return ",".join(f"+{name.lower().removeprefix('cap_')}" for name in sorted(ambient))


@pytest.fixture(scope="module")
def restrict_af(deployment) -> str:
    """restrict-af built with cc where the service's user can run it."""
    need(RESTRICT_AF.is_file(), f"{RESTRICT_AF} not found (../shared/tools beside the checkout)")
    cc = need_tool("cc", "gcc")
    binary = deployment.public / "restrict-af"
    subprocess.run([cc, "-O2", "-o", binary, RESTRICT_AF], check=True, timeout=120)
    os.chmod(binary, 0o755)
    return os.fspath(binary)


@pytest.fixture
def hosts():
    need_tool("ip", "iproute2")
    pair = create_pair("unit")
    yield pair
    destroy_pair(pair)


@pytest.fixture
def service_user():
    with Accounts("mdunit") as accounts:
        yield accounts.user("svc", system=True)


def sandboxed(
    deployment, restrict_af: str, user, data_dir: Path, *, caps: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """The command and environment systemd would start the unit's ExecStart= with.

    `caps` overrides the unit's capabilities (setpriv's syntax; "" for none).
    """
    service = unit_service()
    limit = one(service, "LimitNOFILE")
    caps = capabilities(service) if caps is None else caps
    argv = shlex.split(one(service, "ExecStart"))
    assert Path(argv[0]).name == "messengerd" and argv[1] == "run"
    # The state directory and the group are this test's; all else is the unit's.
    argv[argv.index("--data-dir") + 1] = os.fspath(data_dir)
    assert argv[argv.index("--control-group") + 1] == one(service, "Group")
    argv[argv.index("--control-group") + 1] = user.name
    argv = [os.fspath(deployment.messengerd), *argv[1:], "--alias", "BOB", "--json"]
    setpriv = [
        "setpriv", f"--reuid={user.name}", f"--regid={user.gid}", "--init-groups",
        f"--inh-caps=-all{',' + caps if caps else ''}",
        f"--ambient-caps=-all{',' + caps if caps else ''}",
        f"--bounding-set=-all{',' + caps if caps else ''}",
    ]  # fmt: skip
    if one(service, "NoNewPrivileges") == "yes":
        setpriv.append("--no-new-privs")
    allowed = ",".join(str(family) for family in families(service))
    command = ["prlimit", f"--nofile={limit}:{limit}", *setpriv, restrict_af, allowed, "--", *argv]
    # systemd's environment for a service with User=: these, and the unit's Environment=.
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "HOME": os.fspath(user.home),
           "USER": user.name, "LOGNAME": user.name, "SHELL": "/usr/sbin/nologin"}  # fmt: skip
    for assignment in service.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    return command, env


def state_directory(deployment, user) -> Path:
    """/var/lib/messengerd as StateDirectory= and StateDirectoryMode= leave it."""
    mode = int(one(unit_service(), "StateDirectoryMode"), 8)
    return deployment.folder("state-unit", owner=user.name, mode=mode)


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def test_unit_serves_smbclient_on_ports_137_to_139_inside_its_sandbox(
    deployment, restrict_af, hosts, service_user
):
    smbclient = need_tool("smbclient", "smbclient")
    capsh = need_tool("capsh", "libcap2-bin")
    data_dir = state_directory(deployment, service_user)
    command, env = sandboxed(deployment, restrict_af, service_user, data_dir)
    command = ["ip", "netns", "exec", hosts.server, *command]
    with DaemonProcess(data_dir=data_dir, command=command, env=env) as daemon:
        assert daemon.ports == {"name": 137, "datagram": 138, "session": 139, "rpc": 135}, (
            daemon.log
        )
        assert any("session 139/tcp, rpc 135/udp" in line for line in daemon.log), daemon.log
        # The daemon really is in the sandbox the unit describes.
        status = proc_status(daemon.process.pid)
        assert status["Uid"].split() == [str(service_user.uid)] * 4
        assert status["NoNewPrivs"] == "1"
        assert status["Seccomp"] == "2"  # a filter
        decoded = subprocess.run(
            [capsh, f"--decode={status['CapEff']}"], capture_output=True, text=True, check=True
        ).stdout
        wanted = one(unit_service(), "AmbientCapabilities").lower()
        assert decoded.strip().endswith(f"={wanted}"), decoded
        assert status["CapBnd"] == status["CapAmb"] == status["CapEff"]
        limits = Path(f"/proc/{daemon.process.pid}/limits").read_text()
        limit = one(unit_service(), "LimitNOFILE")
        assert re.search(rf"^Max open files\s+{limit}\s+{limit}\s", limits, re.M), limits

        sent = hosts.run_in_client(
            smbclient, "-M", "BOB", "-I", SERVER_ADDRESS, "-N", "-U", "ALICE",
            input=b"UPS on battery",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stderr
        message = daemon.next_message()
        assert (message["from"], message["to"]) == ("ALICE", "BOB")
        assert message["text"] == "UPS on battery"
        assert message["path"] == "session"
        assert message["peer"].startswith(f"{CLIENT_ADDRESS}:")
        # The unit's --control-group shares the state directory with its group.
        assert (data_dir / "control.sock").stat().st_gid == service_user.gid
        assert oct((data_dir / "messages.sqlite3").stat().st_mode & 0o777) == "0o640"
    assert daemon.process.returncode == 0, daemon.log


def test_without_the_capability_port_137_is_refused_in_one_line(
    deployment, restrict_af, hosts, service_user
):
    data_dir = state_directory(deployment, service_user)
    command, env = sandboxed(deployment, restrict_af, service_user, data_dir, caps="")
    result = subprocess.run(
        ["ip", "netns", "exec", hosts.server, *command],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("messengerd: no permission to listen on port 137/udp"), line
    # Safe ways only: the service, a venv's own copy of python, authbind; never the system's.
    assert "service/README.md" in line and "venv --copies" in line and "authbind" in line
    assert "/usr/bin/python" not in line


def test_the_filter_refuses_what_systemd_refuses(deployment, restrict_af):
    """The emulation is real: under the unit's families a netlink socket fails as systemd
    makes it fail, and so does importing scapy, which opens one (what killed the daemon
    under the unit before the runtime stopped importing it)."""
    allowed = ",".join(str(family) for family in families(unit_service()))
    python = deployment.venv / "bin" / "python"
    netlink = subprocess.run(
        [restrict_af, allowed, "--", python, "-c",
         "import socket; socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert "[Errno 97] Address family not supported by protocol" in netlink.stderr
    scapy = subprocess.run(
        [restrict_af, allowed, "--", python, "-c", "import scapy.layers.netbios"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert scapy.returncode != 0 and "Errno 97" in scapy.stderr
    inet = subprocess.run(
        [restrict_af, allowed, "--", python, "-c",
         "from messengerd.transport.netif import interfaces; print(interfaces())"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert inet.returncode == 0, inet.stderr
    assert "127.0.0.1/8" in inet.stdout


@pytest.fixture
def nmbd_on_the_server(hosts, tmp_path):
    """Samba's nmbd holding port 137 on the server host, as on a host sharing files."""
    with samba.nmbd(hosts.server, "mds0", tmp_path) as process:
        deadline = time.monotonic() + NMBD_READY_TIMEOUT
        while not listening(hosts.server, 137):
            assert process.poll() is None, process.communicate()[0].decode()
            assert time.monotonic() < deadline, "nmbd never bound port 137"
            time.sleep(POLL_INTERVAL)
        yield process


def listening(namespace: str, port: int) -> bool:
    """True when a UDP socket in `namespace` is bound to `port` (iproute2's ss)."""
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, "ss", "-Hlun", f"sport = :{port}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return bool(result.stdout.strip())


def test_a_port_samba_holds_is_one_line_and_samba_keeps_running(
    deployment, restrict_af, hosts, service_user, nmbd_on_the_server
):
    """The unit stops no Samba (no Conflicts=): messengerd says which port is taken, exits 2
    (RestartPreventExitStatus=2: not restarted) and nmbd serves on."""
    data_dir = state_directory(deployment, service_user)
    command, env = sandboxed(deployment, restrict_af, service_user, data_dir)
    result = subprocess.run(
        ["ip", "netns", "exec", hosts.server, *command],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == int(one(unit_service(), "RestartPreventExitStatus"))
    assert result.stderr == (
        "messengerd: port 137/udp (name service) on 0.0.0.0 is already in use (Samba's "
        "nmbd/smbd or another messengerd?): stop that program, or choose free ports with "
        "--name-port, --datagram-port, --session-port and --rpc-port\n"
    )
    assert nmbd_on_the_server.poll() is None
    assert listening(hosts.server, 137)
