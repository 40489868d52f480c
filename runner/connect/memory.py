"""What sqlplan remembers of a server between runs: the SASL mechanisms it offered to a user
for a database, over TLS or not. With them the next log-in sends its SCRAM first message with
the StartupMessage, one round trip fewer (handshake.log_in's `expect`); a server that answers
otherwise is forgotten and logged in to again as libpq would (connection.py). Kept in the
cache directory, which only the user may write (private.py); SQLPLAN_NO_CACHE turns it off."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..private import cache_dir, read_private, write_private
from .target import Target


def _path(target: Target, tls: bool) -> Path | None:
    directory = cache_dir()
    if directory is None:
        return None
    key = "\0".join((target.host, str(target.port), target.user, target.database,
                     "tls" if tls else "plain", target.sslnegotiation))  # fmt: skip
    return directory / "servers" / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]  # fmt: skip


def offered(target: Target, tls: bool) -> tuple[str, ...]:
    """The SASL mechanisms the server offered last time; () when unknown."""
    path = _path(target, tls)
    data = read_private(path) if path is not None else None
    if not data or len(data) > 200 or not data.isascii():
        return ()
    return tuple(m for m in data.decode("ascii").split(",") if m.startswith("SCRAM-"))


def remember(target: Target, tls: bool, mechanisms: tuple[str, ...]) -> None:
    """Keep what the server offered (nothing, to forget); a cache that cannot be written only
    costs the next log-in its round trip."""
    path = _path(target, tls)
    if path is not None:
        write_private(path, ",".join(mechanisms).encode("ascii", "replace"))
