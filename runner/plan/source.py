"""A plan file's bytes and text: a regular file of bounded size, decoded as UTF-8.

Both the validator and the cache read plans through here (the cache must not import the
validator's parsers)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import Diagnostic, PlanInvalid, Position

# A plan is read whole; past this size it is refused rather than exhausting memory.
MAX_PLAN_BYTES = 256 * 1024 * 1024


def read_plan(path: str | Path) -> bytes:
    """The plan's bytes; PlanInvalid at 1:1 when it cannot be read or is not a regular file."""
    display = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise _unreadable(display, e.strerror or str(e)) from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            from .files import file_kind

            raise _unreadable(display, f"it is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > MAX_PLAN_BYTES:
            raise _unreadable(
                display,
                f"it is {info.st_size:,} bytes; a plan may be at most {MAX_PLAN_BYTES:,} "
                "(put data in a rows_from file)",
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(MAX_PLAN_BYTES + 1)
    except OSError as e:
        raise _unreadable(display, e.strerror or str(e)) from e
    finally:
        os.close(fd)


def _unreadable(display: str, reason: str) -> PlanInvalid:
    return PlanInvalid(
        [Diagnostic(Position(display, 1, 1), f"cannot read the plan: {reason}", "io")]
    )


def decode_plan(raw: bytes, display: str) -> str:
    """The plan's text; PlanInvalid at the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        column = len(raw[raw.rfind(b"\n", 0, e.start) + 1 : e.start].decode("utf-8", "replace")) + 1
        raise PlanInvalid(
            [Diagnostic(Position(display, line, column), "the plan is not valid UTF-8", "encoding")]
        ) from e
