"""Whether this process can write what a helper writes itself, asked before the first change.

A helper writes its records under ``volumes_dir``, its lock files under
``[oslo_concurrency] lock_path`` and, for IET without a root helper,
ietd.conf, all in-process. Run as a user who cannot, the first write used
to fail halfway with a ``PermissionError`` traceback; :func:`check` finds
it first and says, in one line, which path, who owns it with which mode,
which user this is, and what would fix it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from iscsi_helper.exception import AccessDenied


@dataclass(frozen=True)
class Need:
    """A path the helper writes in-process, under the option that names it."""

    option: str
    path: Path
    #: ``directory``: files are created in it (it is created if missing);
    #: ``file``: it is replaced by rename, so its directory must be writable.
    kind: Literal["directory", "file"]


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _login(uid: int) -> str:
    """The user name for a command line (chown, install -o), the uid when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _run_as(owner: str) -> str:
    return "run as root" if owner == "root" else f"run as root or {owner}"


def _owner(path: Path) -> tuple[str, str, str]:
    """(user, group, mode) of ``path`` for a message."""
    info = path.stat()
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    try:
        group = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group = str(info.st_gid)
    return user, group, f"{stat.S_IMODE(info.st_mode):04o}"


def _existing_ancestor(path: Path) -> Path:
    level = path
    while not level.exists() and level.parent != level:
        level = level.parent
    return level


def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def problem(need: Need) -> AccessDenied | None:
    """The error that writing ``need`` would meet, or None when this process can write it."""
    me = _user(os.geteuid())
    path = Path(os.path.abspath(need.path))
    directory = path if need.kind == "directory" else path.parent
    if directory.is_dir():
        if _writable_dir(directory):
            if need.kind == "file" and path.exists() and not os.access(path, os.R_OK):
                user, group, mode = _owner(path)
                return AccessDenied(
                    option=need.option,
                    path=str(path),
                    problem=f"{me} cannot read it (owner {user}:{group}, mode {mode})",
                    fix=f"{_run_as(user)}, or make it readable by this user",
                )
            return None
        user, group, mode = _owner(directory)
        what = "write in" if need.kind == "file" or directory == path else "write"
        return AccessDenied(
            option=need.option,
            path=str(path),
            problem=f"{me} cannot {what} {directory} (owner {user}:{group}, mode {mode})",
            fix=f"{_run_as(user)}, or give this user the directory "
            f"(chown {_login(os.geteuid())} {directory}; chmod 0700 {directory})",
        )
    ancestor = _existing_ancestor(directory)
    if not ancestor.is_dir():
        return AccessDenied(
            option=need.option,
            path=str(path),
            problem=f"{ancestor} is not a directory",
            fix="point the option at a directory",
        )
    if _writable_dir(ancestor):
        return None  # created on first use, 0700, by this user
    user, group, mode = _owner(ancestor)
    return AccessDenied(
        option=need.option,
        path=str(path),
        problem=f"{me} cannot create {directory}: {ancestor} is owned by {user}:{group}, mode {mode}",
        fix=f"{_run_as(user)}, or create it for this user first "
        f"(install -d -o {_login(os.geteuid())} -m 0700 {directory})",
    )


def check(needs: list[Need]) -> None:
    """Raise :class:`AccessDenied` for the first path of ``needs`` this process cannot write."""
    for need in needs:
        found = problem(need)
        if found is not None:
            raise found
