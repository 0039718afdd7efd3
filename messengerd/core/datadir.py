"""The data directory: made ready for the daemon, private or shared with its control group.

The daemon keeps its alias table, inbox and control socket in one directory, its owner's
alone by default: the directory 0700, the inbox and the socket 0600. With a control group
(`messengerd run --control-group GROUP`; the systemd unit's `messengerd`) the members of
GROUP get what a person at the desk needs, and no more:
- the directory 0750: members may enter it. A daemon whose own group is not GROUP makes it
  2750, so that the files SQLite creates there later (the inbox's -wal and -shm) belong
  to GROUP as well; the unit's daemon runs with Group=GROUP and needs no setgid bit (its
  RestrictSUIDSGID= would refuse one);
- the control socket 0660 (names, status, the tray), checked again per connection
  (SO_PEERCRED, messengerd.control.server);
- the inbox 0640, to read history (SQLite gives -wal and -shm the inbox's own mode).
Writing stays the daemon's: members change aliases only through the control channel.
Without a control group every start makes the inbox and the directory private again: one
created here is made 0700, one this user owns loses the group's and others' access, and
one that belongs to another user (a directory an administrator chose) is left as it is,
with a warning, once, naming the chmod to run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
SHARED_DIR_MODE = 0o750
PRIVATE_FILE_MODE = 0o600
SHARED_FILE_MODE = 0o640
PRIVATE_SOCKET_MODE = 0o600
SHARED_SOCKET_MODE = 0o660

OTHERS = stat.S_IRWXG | stat.S_IRWXO
"""The group's and everyone else's permission bits: none on a private directory."""

log = logging.getLogger(__name__)

PROC_STATUS = "/proc/{pid}/status"
"""Where Linux lists a process's credentials; its `Groups:` line has the supplementary gids."""


class DataDirError(Exception):
    """The data directory cannot be made or used; the message says why and what to do."""


@dataclass(frozen=True)
class ControlGroup:
    """The group whose members may use a daemon's control channel and read its history."""

    name: str
    gid: int

    @classmethod
    def named(cls, name: str) -> ControlGroup:
        """The group called `name` (or a numeric gid); DataDirError when there is none."""
        if sys.platform == "win32":
            raise DataDirError("--control-group needs Unix groups; this system has none")
        import grp

        try:
            entry = grp.getgrgid(int(name)) if name.isdigit() else grp.getgrnam(name)
        except (KeyError, OverflowError):
            raise DataDirError(
                f"there is no group {name!r}: create it (groupadd {name}) or name another "
                "with --control-group"
            ) from None
        return cls(entry.gr_name, entry.gr_gid)

    def admits(self, pid: int, uid: int, gid: int) -> bool:
        """True when the peer process `pid` (user `uid`, primary group `gid`) is a member:
        by the process's own credentials where /proc shows them, else by the group database
        (the unit's ProtectProc=invisible hides other users' processes)."""
        if gid == self.gid:
            return True
        groups = _proc_groups(pid)
        if groups is None:
            if sys.platform == "win32":
                return False
            import pwd

            try:
                groups = set(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
            except KeyError:
                return False
        return self.gid in groups


def _proc_groups(pid: int) -> set[int] | None:
    try:
        with open(PROC_STATUS.format(pid=pid), encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return {int(gid) for gid in line.split()[1:]}
    except OSError:
        return None
    return None


def prepare(data_dir: Path, group: ControlGroup | None, files: Iterable[str] = ()) -> None:
    """Make `data_dir` (0700 when created here) ready for the daemon: shared with `group`,
    or not; `files` in it (the inbox) created when absent and given the matching mode.

    DataDirError, one line, when the directory cannot be made, entered or written, or
    given to the group.
    """
    try:
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(
            f"cannot create the data directory {data_dir}: {exc.strerror or exc}: "
            "choose another with --data-dir"
        ) from None
    if not data_dir.is_dir():
        raise DataDirError(f"{data_dir} is not a directory: choose another with --data-dir")
    if not os.access(data_dir, os.W_OK | os.X_OK):
        raise DataDirError(
            f"cannot write to the data directory {data_dir} as {_user()}: "
            "give this user write access to it, or choose another with --data-dir"
        )
    if group is not None:
        setgid = 0 if sys.platform != "win32" and os.getegid() == group.gid else stat.S_ISGID
        share(data_dir, group, SHARED_DIR_MODE | setgid)
    else:
        _keep_private(data_dir)
    for name in files:
        path = data_dir / name
        mode = PRIVATE_FILE_MODE if group is None else SHARED_FILE_MODE
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        except OSError as exc:
            raise DataDirError(f"cannot create {path}: {exc.strerror or exc}") from None
        if group is None:
            _chmod(path, mode)
        else:
            share(path, group, mode)


def _keep_private(data_dir: Path) -> None:
    """Take the group's and others' access to `data_dir` away when this user owns it; else
    log what is wrong and the chmod that puts it right. (Windows has no such modes.)"""
    if sys.platform == "win32":
        return
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    if not mode & OTHERS:
        return
    if info.st_uid == os.geteuid():
        _chmod(data_dir, mode & ~OTHERS)
        log.info(
            "data directory %s was open to others (mode %04o): made it private", data_dir, mode
        )
        return
    log.warning(
        "other users can enter the data directory %s (mode %04o, owner %s): "
        "run `chmod go-rwx %s` as its owner",
        data_dir,
        mode,
        _name_of_user(info.st_uid),
        data_dir,
    )


def share(path: Path, group: ControlGroup, mode: int) -> None:
    """Give `path` to `group` with `mode` (group first: chmod may drop setgid otherwise)."""
    if sys.platform == "win32":
        raise DataDirError("--control-group needs Unix groups; this system has none")
    try:
        os.chown(path, -1, group.gid)
    except OSError as exc:
        raise DataDirError(
            f"cannot give {path} to the group {group.name!r}: {exc.strerror or exc} "
            f"({_user()} must be root or a member of {group.name!r})"
        ) from None
    _chmod(path, mode)


def _chmod(path: Path, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise DataDirError(f"cannot set the mode of {path}: {exc.strerror or exc}") from None


def unreachable(data_dir: Path) -> str | None:
    """Why this user cannot look into another user's `data_dir`, in one line; None if it can
    (or the directory does not exist: that is "no daemon", said elsewhere)."""
    try:
        info = data_dir.stat()
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode) or os.access(data_dir, os.R_OK | os.X_OK):
        return None
    owner = _name_of_user(info.st_uid)
    if info.st_mode & stat.S_IXGRP:
        group = _name_of_group(info.st_gid)
        return (
            f"cannot reach the messengerd in {data_dir}: permission denied; only {owner} and "
            f"the group {group!r} may: ask an administrator to add you "
            f"(usermod -aG {group} {_user()}), then log in again"
        )
    return (
        f"cannot reach the messengerd in {data_dir}: permission denied; it is {owner}'s "
        f"alone: run this as {owner}, or start that daemon with --control-group"
    )


def _user() -> str:
    if sys.platform == "win32":
        return "this user"
    return _name_of_user(os.geteuid())


def _name_of_user(uid: int) -> str:
    if sys.platform == "win32":
        return f"uid {uid}"
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _name_of_group(gid: int) -> str:
    if sys.platform == "win32":
        return str(gid)
    import grp

    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
