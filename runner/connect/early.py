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
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
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
# run's flags that change nothing of what is sent at start; any other option: no early log-in
_KNOWN_FLAGS = {"--no-pipeline", "--keep-going", "--allow-changed", "--take-over"}
# options whose values the plans could depend on: no early log-in with them
_VARS = {"--var", "--vars"}

_lock = threading.Lock()
REFUSED = "refused"  # take(): the server said N to the SSLRequest


class Failed:
    """take(): the attempt made at start failed on the network (timed out, refused, reset)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class _Slot:
    """The connection being opened early, until the first attempt takes it."""

    pending: _Early | None = None


class _Early:
    def __init__(
        self,
        database_url: str | None,
        environ: Mapping[str, str],
        cwd: str,
        *,
        plans: Sequence[str] = (),
        known_valid: Callable[[Sequence[str]], bool] | None = None,
        timeout: float | None = None,
    ) -> None:
        self.target: Any = None
        self.known_valid = known_valid  # the plan side's word that the plans will run
        self.timeout = timeout  # --connect-timeout, else SQLPLAN_CONNECT_TIMEOUT
        self.plans = tuple(plans)  # `run`'s plans, when it may log in at once (see _log_in)
        self.connection: Any = None
        self.tls = False
        self.refused = False  # sslmode=prefer and the server answered N: the socket is plain
        self.attempted: Any = None  # the target it tried
        self.error: OSError | None = None  # why it failed, when the network said so
        self.failure: Exception | None = None  # why logging in failed (connection.py's error)
        self.sock: socket.socket | None = None
        self.files: Any = None  # the certificate files its TLS used (connection.tls_files)
        self._args = (database_url, dict(environ), cwd)
        self._thread = threading.Thread(target=self._work, name="sqlplan-connect", daemon=True)
        self.waiting = threading.Event()  # on the network now (or done): the CPU is free
        self._thread.start()

    def _work(self) -> None:
        sock: socket.socket | None = None
        previous = sys.getswitchinterval()
        # Each answer from the server wakes this thread while the main thread imports: take
        # the interpreter from it within 0.5 ms rather than the default 5 (tens of ms in all).
        sys.setswitchinterval(0.0005)
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
            timeout = self.timeout or target.connect_timeout or 15.0
            self.waiting.set()
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if target.sslmode != "disable":
                from .handshake import SSL_REQUEST, RefusesTls, finish_tls

                sock.sendall(SSL_REQUEST)  # answered while the TLS settings are made
                from .connection import ssl_context_for, tls_files

                self.files = tls_files(target)
                context = ssl_context_for(target)
                try:
                    sock = finish_tls(sock, context, target.host)
                except RefusesTls:
                    if target.sslmode == "prefer":  # it said N: plaintext goes on, as libpq's
                        self.refused = True
                        self.sock, self.target = sock, target
                        sock = None
                    return
                self.tls = True
            self.sock, self.target = sock, target
            sock = None
            self._log_in(target)
        except OSError as e:  # the network's answer: the first attempt's, if it is transient
            self.error = e
        except Exception:  # the main thread's own attempt meets it again and reports it
            return
        finally:
            self.waiting.set()
            sys.setswitchinterval(previous)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _log_in(self, target: Any) -> None:
        """On a cache hit, the plans are known valid at once: send the StartupMessage and
        authenticate now, beside the imports, rather than after them. Only when nothing else
        could still refuse the run before it connects: no vars, no option unread here, every
        plan in the cache, no two `once` plans of one name."""
        if not self.plans or self.sock is None or self.known_valid is None:
            return
        if not self.known_valid(self.plans):
            return
        from .connection import log_in

        sock, self.sock = self.sock, None
        try:
            self.connection = log_in(target, sock)  # the standard library only: no driver yet
        except Exception as e:  # the first attempt's outcome: the run reports it as such
            self.failure = e
            with contextlib.suppress(OSError):
                sock.close()

    def take(self, target: Any, tls: bool, timeout: float) -> Any:
        """The open socket, if it was opened for this target as this attempt would open it;
        REFUSED for a TLS attempt the server already refused (sslmode=prefer), whose plain
        socket the next attempt takes."""
        # Whatever it is doing is bounded by the connect timeout, once per blocking step (TCP,
        # TLS, each answer while logging in): wait for it, as for an attempt of one's own.
        self._thread.join(timeout * 4 + 5)
        if self._thread.is_alive():
            return None
        if tls and self.files is not None:
            from .connection import tls_files

            if tls_files(target) != self.files:  # not the TLS this attempt would set up
                self.close()
                return None
        if self.connection is not None:
            if self.target == target and self.tls == tls:
                connection, self.connection = self.connection, None
                return connection
            self.close()
            return None
        if self.sock is None:
            if self.failure is not None and self.target == target and self.tls == tls:
                return Failed(self.failure)
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
        if self.connection is not None:
            with contextlib.suppress(Exception):
                self.connection.stream.write(b"X\x00\x00\x00\x04")  # Terminate
                self.connection.stream.flush()
            with contextlib.suppress(OSError):
                self.connection.sock.close()
            self.connection = None
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None


def start(
    argv: Sequence[str],
    environ: Mapping[str, str],
    cwd: str,
    known_valid: Callable[[Sequence[str]], bool] | None = None,
) -> None:
    """Open the connection in the background if `argv` is a command that connects."""
    command, url, skip, paths, log_in = _read(argv)
    if command not in _CONNECTING or skip:
        return
    plans = plan_files(paths, cwd) if command == "run" and log_in else []
    discard()
    with _lock:
        pending = _Early(
            url,
            environ,
            cwd,
            plans=plans,
            known_valid=known_valid,
            timeout=_timeout(argv, environ),
        )
        _Slot.pending = pending
    # The connection is the longer road: let its thread reach the network before the main
    # thread's imports take the interpreter (a few ms of resolving the target).
    pending.waiting.wait(0.25)


def take(target: Any, tls: bool, timeout: float) -> Any:
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


def _read(argv: Sequence[str]) -> tuple[str | None, str | None, bool, list[str], bool]:
    """(command, --database-url, whether to leave it (help, a dry run), the command's
    arguments, whether nothing in argv forbids an early log-in) from argv."""
    command = url = None
    skip = False
    log_in = True
    paths: list[str] = []
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
            log_in = log_in and arg not in _VARS
            index += 1
        elif arg.startswith("-"):
            log_in = log_in and arg in _KNOWN_FLAGS
        elif command is None:
            command = arg
        else:
            paths.append(arg)
        index += 1
    return command, url, skip, paths, log_in


def _timeout(argv: Sequence[str], environ: Mapping[str, str]) -> float | None:
    """--connect-timeout (or SQLPLAN_CONNECT_TIMEOUT), as the run's own attempts use it."""
    value = environ.get("SQLPLAN_CONNECT_TIMEOUT")
    for index, arg in enumerate(argv):
        if arg.startswith("--connect-timeout="):
            value = arg.split("=", 1)[1]
        elif arg == "--connect-timeout" and index + 1 < len(argv):
            value = argv[index + 1]
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None


def plan_files(paths: Sequence[str], cwd: str) -> list[str]:
    """The plans `run` runs: files as given, a directory's *.yaml and *.yml files in name
    order (not its subdirectories'), each named as the cache knows it. One function for `run`
    and for the log-in at start, so that both look up the same cache entries."""
    files: list[str] = []
    for path in paths:
        full = os.path.join(cwd, path)
        if os.path.isdir(full):
            names = sorted(n for n in os.listdir(full) if n.endswith((".yaml", ".yml")))
            files += [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(full, n))]
        else:
            files.append(path)  # as given: reading it says what is wrong with it, if anything
    return files


def env_for(overrides: Mapping[str, str | None]) -> dict[str, str]:
    """The environment with `overrides` (None: unset), as a test runner gives a command."""
    environ = dict(os.environ)
    for key, value in overrides.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    return environ
