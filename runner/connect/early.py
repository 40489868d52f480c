"""The connection's first round trips while the process is still starting.

`sqlplan run` spends its first tens of milliseconds importing modules and reading the plan,
and a TLS connection spends its first round trips on TCP, the SSLRequest and the handshake;
neither needs the other. So, as soon as the command line says a command connects, a thread
resolves the URL (as `run` will) and opens the socket, TLS included, while the main thread
imports and validates. Nothing more: no StartupMessage, no credential, until the main thread,
with a valid plan, takes the socket for its first connection attempt (connection.py). A plan
that turns out invalid leaves at most a TLS handshake, closed. A failure here is never
reported: the main thread's own attempt, with its retries and messages, takes over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any

# The commands that connect, and the options of theirs that take a value (to read argv).
_CONNECTING = {"run", "rehearse", "status"}
_TAKES_VALUE = {
    "--database-url", "--data-dir", "--connect-retries", "--connect-timeout", "--var",
    "--vars", "--format", "--junit", "--summary", "--lock-timeout", "--statement-timeout",
    "--pg-version",
}  # fmt: skip
# sslmodes whose first attempt is TLS, and that never fall back within that attempt.
_TLS_FIRST = {"require", "verify-ca", "verify-full", "prefer"}

_lock = threading.Lock()
REFUSED = "refused"  # take(): the server said N to the SSLRequest


class Failed:
    """take(): the attempt made at start failed on the network (timed out, refused, reset)."""

    def __init__(self, error: OSError) -> None:
        self.error = error


class _Slot:
    """The connection being opened early, until the first attempt takes it."""

    pending: _Early | None = None


class _Early:
    def __init__(self, database_url: str | None, environ: Mapping[str, str], cwd: str) -> None:
        self.target: Any = None
        self.tls = False
        self.refused = False  # sslmode=prefer and the server answered N: the socket is plain
        self.attempted: Any = None  # the target it tried
        self.error: OSError | None = None  # why it failed, when the network said so
        self.sock: socket.socket | None = None
        self._args = (database_url, dict(environ), cwd)
        self._thread = threading.Thread(target=self._work, name="sqlplan-connect", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        sock: socket.socket | None = None
        try:
            from pathlib import Path

            from .target import resolve_target

            database_url, environ, cwd = self._args
            target = resolve_target(database_url, environ, Path(cwd))
            if (
                target is None
                or target.is_unix_socket
                or target.sslmode not in (_TLS_FIRST | {"disable"})
            ):
                return
            self.attempted = target
            timeout = target.connect_timeout or 15.0
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if target.sslmode != "disable":
                from .connection import ssl_context_for

                context = ssl_context_for(target)
                sock.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
                if sock.recv(1) != b"S":
                    if target.sslmode == "prefer":  # it said N: plaintext goes on, as libpq's
                        self.refused = True
                        self.sock, self.target = sock, target
                        sock = None
                    return
                sock = context.wrap_socket(sock, server_hostname=target.host)
                self.tls = True
            self.sock, self.target = sock, target
            sock = None
        except OSError as e:  # the network's answer: the first attempt's, if it is transient
            self.error = e
        except Exception:  # the main thread's own attempt meets it again and reports it
            return
        finally:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def take(self, target: Any, tls: bool, timeout: float) -> socket.socket | str | Failed | None:
        """The open socket, if it was opened for this target as this attempt would open it;
        REFUSED for a TLS attempt the server already refused (sslmode=prefer), whose plain
        socket the next attempt takes."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self.sock is None:
            if self.error is not None and self.attempted == target:
                return Failed(self.error)
            return None
        if self.target != target:
            self.close()
            return None
        if self.refused and tls:
            return REFUSED
        if self.tls != tls:
            self.close()
            return None
        sock, self.sock = self.sock, None
        return sock

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def start(argv: Sequence[str], environ: Mapping[str, str], cwd: str) -> None:
    """Open the connection in the background if `argv` is a command that connects."""
    command, url, skip = _read(argv)
    if command not in _CONNECTING or skip:
        return
    discard()
    with _lock:
        _Slot.pending = _Early(url, environ, cwd)


def take(target: Any, tls: bool, timeout: float) -> socket.socket | str | Failed | None:
    """For the first connection attempt: the socket opened early for it, or None; REFUSED
    when the server already refused TLS (the plain socket stays for the next attempt)."""
    with _lock:
        early = _Slot.pending
    if early is None:
        return None
    found = early.take(target, tls, timeout)
    if found != REFUSED:
        with _lock:
            if _Slot.pending is early:
                _Slot.pending = None
    return found


def discard() -> None:
    """Close a socket nobody took (an invalid plan, a command that ended early)."""
    with _lock:
        early, _Slot.pending = _Slot.pending, None
    if early is not None:
        early._thread.join(0)
        early.close()


def _read(argv: Sequence[str]) -> tuple[str | None, str | None, bool]:
    """(command, --database-url, whether to leave it: help, a dry run) from argv."""
    command = url = None
    skip = False
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ("-h", "--help", "--version", "--dry-run"):
            skip = True
        elif arg.startswith("--database-url="):
            url = arg.split("=", 1)[1]
        elif arg == "--database-url" and index + 1 < len(argv):
            url = argv[index + 1]
            index += 1
        elif arg in _TAKES_VALUE:
            index += 1
        elif command is None and not arg.startswith("-"):
            command = arg
        index += 1
    return command, url, skip


def env_for(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The environment with `overrides` (None: unset), as a test runner gives a command."""
    environ = dict(os.environ)
    for key, value in overrides.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ
