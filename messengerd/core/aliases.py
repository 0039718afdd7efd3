"""The message alias table: NetMessageNameAdd / Del / Enum / GetInfo ([MS-MSRP] §3.1.4)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from messengerd.core import lmerr
from messengerd.core.lmerr import NetError
from messengerd.wire.errors import WireError
from messengerd.wire.names import MESSENGER_SUFFIX, NetBIOSName, alias_name
from messengerd.wire.text import DEFAULT_CODEPAGE

MAX_ALIASES = 256
"""Names a LANA can hold ([MS-MSRP] §3.1.4.6 via the NetBIOS name table size)."""

MAX_PREFERRED_LENGTH = -1
"""NetMessageNameEnum's `prefmaxlen` meaning "as much as there is" (lmcons.h)."""

MSG_INFO_0_SIZE = 4
"""Bytes of a MSG_INFO_0 record on 32-bit Windows: one string pointer ([MS-MSRP] §2.2.5.1)."""
MSG_INFO_1_SIZE = 12
"""Bytes of a MSG_INFO_1 record: name pointer, forward flag, forward pointer (§2.2.5.2)."""

BROADCAST_RECIPIENT = NetBIOSName(b"*", MESSENGER_SUFFIX)
"""What `net send *` addresses: every messenger on the network segment."""

ALIAS_FILE = "aliases.json"
"""The alias table kept across restarts, in the data directory."""
ALIAS_FILE_VERSION = 1
MAX_ALIAS_FILE_BYTES = 64 * 1024
"""Largest aliases.json read: 256 names of 15 bytes fit many times over; more is not ours."""


@dataclass(frozen=True)
class MessageInfo:
    """MSG_INFO_0 (level 0: the name) or MSG_INFO_1 (level 1: forwarding too, never set here)."""

    name: str
    forward_flag: int = 0
    forward: str | None = None


@dataclass(frozen=True)
class EnumResult:
    """What NetMessageNameEnum hands back: entries read, total entries, next resume handle."""

    entries: list[MessageInfo]
    total_entries: int
    resume_handle: int
    status: int


class AliasTable:
    """The names this host receives messages under, with Windows' result codes.

    Also the `Directory` the protocol machines consult: is_local() for aliases,
    is_group() for the workgroup and `*`, name_table() for node status answers.
    """

    def __init__(
        self,
        aliases: Iterable[str] = (),
        *,
        computer_name: str | None = None,
        workgroups: Iterable[str] = (),
        own_names: Iterable[NetBIOSName] = (),
        codepage: str = DEFAULT_CODEPAGE,
    ) -> None:
        self.codepage = codepage
        self._lock = threading.Lock()
        self._aliases: dict[NetBIOSName, str] = {}
        self._computer: NetBIOSName | None = None
        self._groups = {self._normalise(group) for group in workgroups}
        self._own = set(own_names)
        if computer_name:
            self._computer = self.add(computer_name)
        for alias in aliases:
            if self._normalise(alias) not in self._aliases:
                self.add(alias)

    def _normalise(self, name: str) -> NetBIOSName:
        try:
            return alias_name(name, self.codepage)
        except WireError as exc:
            raise NetError(lmerr.ERROR_INVALID_PARAMETER, str(exc)) from None

    def check_add(self, name: str, pending: Collection[NetBIOSName] = ()) -> NetBIOSName:
        """NetMessageNameAdd's checks without the insert, counting `pending` names as present.

        The daemon asks this before it registers a name on the network, so that a name the
        table would refuse is never broadcast; `pending` are names being registered now.
        """
        alias = self._normalise(name)
        with self._lock:
            self._check_room(alias, pending)
        return alias

    def _check_room(self, alias: NetBIOSName, pending: Collection[NetBIOSName] = ()) -> None:
        if alias in self._aliases or alias in pending:
            raise NetError(lmerr.NERR_AlreadyExists, f"{alias} is already in the table")
        if len(self._aliases) + len(pending) >= MAX_ALIASES:
            raise NetError(lmerr.NERR_TooManyNames, f"the table holds {MAX_ALIASES} names")

    def add(self, name: str) -> NetBIOSName:
        """NetMessageNameAdd: NERR_AlreadyExists, NERR_TooManyNames, ERROR_INVALID_PARAMETER."""
        alias = self._normalise(name)
        with self._lock:
            self._check_room(alias)
            self._aliases[alias] = alias.text(self.codepage)
        return alias

    def remove(self, alias: NetBIOSName) -> bool:
        """Take `alias` out whatever it is, computer name included; True if it was there.

        Not NetMessageNameDel: this is for a name the network took from us (a conflict) or
        one waiting for its registration.
        """
        with self._lock:
            return self._aliases.pop(alias, None) is not None

    def __contains__(self, alias: object) -> bool:
        with self._lock:
            return alias in self._aliases

    def __len__(self) -> int:
        with self._lock:
            return len(self._aliases)

    @property
    def computer_name(self) -> NetBIOSName | None:
        """The name NetMessageNameDel refuses with NERR_DelComputerName, if there is one."""
        return self._computer

    def texts(self) -> list[str]:
        """Every alias as the text it was added under (upper case), sorted as enum() lists."""
        with self._lock:
            return sorted(self._aliases.values())

    def delete(self, name: str) -> NetBIOSName:
        """NetMessageNameDel: NERR_NotLocalName, NERR_DelComputerName."""
        alias = self._normalise(name)
        with self._lock:
            if alias not in self._aliases:
                raise NetError(lmerr.NERR_NotLocalName, f"{alias} is not in the table")
            if alias == self._computer:
                raise NetError(lmerr.NERR_DelComputerName, f"{alias} is the computer name")
            del self._aliases[alias]
        return alias

    def get_info(self, name: str, level: int = 0) -> MessageInfo:
        """NetMessageNameGetInfo: ERROR_INVALID_LEVEL, NERR_NotLocalName."""
        _check_level(level)
        alias = self._normalise(name)
        with self._lock:
            if alias not in self._aliases:
                raise NetError(lmerr.NERR_NotLocalName, f"{alias} is not in the table")
            return _info(self._aliases[alias], level)

    def enum(
        self, level: int = 0, prefmaxlen: int = MAX_PREFERRED_LENGTH, resume_handle: int = 0
    ) -> EnumResult:
        """NetMessageNameEnum: entries from `resume_handle` that fit `prefmaxlen` bytes.

        Sizes are counted as Windows' 32-bit RPC buffer would hold them: the record plus
        the name as a NUL-terminated UTF-16 string. At least one entry is always returned
        when any remain, as Windows does, so a walk always makes progress.
        """
        _check_level(level)
        with self._lock:
            names = sorted(self._aliases.values())
        if not 0 <= resume_handle <= len(names):
            raise NetError(lmerr.ERROR_INVALID_PARAMETER, f"resume handle {resume_handle}")
        record = MSG_INFO_0_SIZE if level == 0 else MSG_INFO_1_SIZE
        entries: list[MessageInfo] = []
        used = 0
        for name in names[resume_handle:]:
            size = record + (len(name) + 1) * 2
            if entries and prefmaxlen != MAX_PREFERRED_LENGTH and used + size > prefmaxlen:
                break
            entries.append(_info(name, level))
            used += size
        handle = resume_handle + len(entries)
        status = lmerr.ERROR_MORE_DATA if handle < len(names) else lmerr.NERR_Success
        return EnumResult(entries, len(names), handle if status else 0, status)

    def names(self) -> list[NetBIOSName]:
        """Every alias, sorted."""
        with self._lock:
            return sorted(self._aliases)

    def is_local(self, name: NetBIOSName) -> bool:
        """True for one of our aliases or one of the host's own configured names."""
        key = NetBIOSName(name.name, name.suffix)
        with self._lock:
            return key in self._aliases or key in self._own

    def is_group(self, name: NetBIOSName) -> bool:
        """True for `*` and the workgroups whose broadcasts we take."""
        key = NetBIOSName(name.name, MESSENGER_SUFFIX)
        return key == BROADCAST_RECIPIENT or key in self._groups

    def name_table(self) -> list[tuple[NetBIOSName, bool]]:
        """Every name we own, for node status: the aliases and own names, all unique.

        Workgroups are listened on, not owned: nothing here registers them, so node
        status does not claim them.
        """
        with self._lock:
            return [(name, False) for name in sorted(self._own | set(self._aliases))]


def _check_level(level: int) -> None:
    if level not in (0, 1):
        raise NetError(lmerr.ERROR_INVALID_LEVEL, f"level {level} is not 0 or 1")


def _info(name: str, level: int) -> MessageInfo:
    return MessageInfo(name) if level == 0 else MessageInfo(name, forward_flag=0, forward=None)


class AliasFileError(ValueError):
    """aliases.json cannot be read as an alias table; the message names the file and the fix."""


def load_aliases(data_dir: Path) -> list[str]:
    """The aliases stored in `data_dir`, in stored order; empty when none were ever stored.

    Raises AliasFileError for a file that exists but is not an alias table, rather than
    starting with an empty table and overwriting what the user had.
    """
    path = Path(data_dir) / ALIAS_FILE
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_ALIAS_FILE_BYTES + 1)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AliasFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    fix = f"fix or remove {path}"
    if len(raw) > MAX_ALIAS_FILE_BYTES:
        raise AliasFileError(f"{path} is over {MAX_ALIAS_FILE_BYTES} bytes: {fix}")
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AliasFileError(f"{path} is not JSON ({exc}): {fix}") from None
    aliases = document.get("aliases") if isinstance(document, dict) else None
    if not isinstance(aliases, list) or not all(isinstance(name, str) for name in aliases):
        raise AliasFileError(f'{path} holds no {{"aliases": [names...]}} list: {fix}')
    return aliases


def save_aliases(data_dir: Path, aliases: Iterable[str]) -> None:
    """Store `aliases` in `data_dir` atomically: a reader sees the old table or the new one.

    Written to a temporary file in the same directory, flushed to disk, then renamed over
    aliases.json (os.replace is atomic on POSIX and Windows).
    """
    directory = Path(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"version": ALIAS_FILE_VERSION, "aliases": list(aliases)}
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{ALIAS_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file, ensure_ascii=False, indent=1)
            file.write("\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, directory / ALIAS_FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
