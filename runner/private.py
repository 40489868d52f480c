"""sqlplan's cache directory and the files in it, which only the user may write: the validation
cache (plan/cache.py) and what a connection remembers of a server (connect/memory.py). A file
that another user could have written is never read; every write is atomic."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_LIMIT = 1 << 28  # more than any cache entry; a larger file is not ours


def cache_dir() -> Path | None:
    """SQLPLAN_CACHE_DIR, else $XDG_CACHE_HOME/sqlplan, else ~/.cache/sqlplan; None when
    SQLPLAN_NO_CACHE says not to use one."""
    if os.environ.get("SQLPLAN_NO_CACHE", "") not in ("", "0"):
        return None
    explicit = os.environ.get("SQLPLAN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sqlplan"


def private_directory(path: Path, *, create: bool) -> bool:
    """Whether `path` is a directory of this user that nobody else may write to, creating it
    (and any missing parent) 0700 when asked."""
    missing = []
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    if missing and not create:
        return False
    try:
        for directory in reversed(missing):
            os.mkdir(directory, 0o700)
            os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask, never widened
        info = os.stat(path)  # follows a symlink: to a directory that must be ours
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def read_private(path: Path) -> bytes | None:
    """The file's bytes if it is a regular file of this user's, in a directory of this user's,
    that nobody else may write to (never through a symlink); else None."""
    try:
        if not private_directory(path.parent, create=False):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_uid != os.geteuid()
                or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
            ):
                return None
            return handle.read(_LIMIT)
    except OSError:
        return None


def write_private(path: Path, data: bytes) -> bool:
    """Write the file 0600, atomically (a reader sees the old file or the new one), in a
    private directory made if missing. False if it could not be written."""
    try:
        if not private_directory(path.parent, create=True):
            return False
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
        fd = os.open(temporary, flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(data)
        os.replace(temporary, path)
    except OSError:
        return False
    return True
