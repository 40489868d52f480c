"""Files sqlplan is named, read as regular files only (a FIFO, a device or a directory is
refused with what it is), and the error a file's content gets."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO


class SourceError(ValueError):
    """A row the file cannot give: malformed CSV or JSON, a missing field, an unreadable file."""

    def __init__(self, message: str, line: int, column: int = 1) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


class NotRegularFile(SourceError):
    """A FIFO, device, directory or socket where a data file was expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 1)


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path) -> IO[bytes]:
    """Open a regular file for reading without blocking on a FIFO or device; SourceError for
    anything else (OSError when it cannot be opened at all)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def regular_file_problem(path: Path) -> tuple[str, int | None] | None:
    """Why `path` cannot be a rows_from file, with its errno (None: not a regular file)."""
    if "\x00" in str(path):
        return "holds a NUL character, which no file name can", None
    try:
        open_regular(path).close()
    except NotRegularFile as e:
        return str(e), None
    except OSError as e:
        return e.strerror or str(e), e.errno
    return None
