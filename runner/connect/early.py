"""The connection's first round trips while the process is still starting.

`sqlplan run` spends its first tens of milliseconds importing modules and reading the plan,
and a TLS connection spends its first round trips on TCP, the SSLRequest and the handshake;
neither needs the other. So, as soon as the command line says a command connects, a thread
opens the socket (to the URL's address even before the target is resolved, when the URL says
it by itself), TLS included, while the main thread imports and validates.

No StartupMessage and no credential go until the plans' verdict: on a cache hit, given at
start (start()); otherwise when the command connects (go()), the plans being valid. Then the
thread logs in (handshake.py: the standard library only) while the main thread imports the
engine and the driver, and the first connection attempt takes the logged-in socket
(connection.py). A plan that turns out invalid leaves at most a TLS handshake, closed. A
failure here is never reported: the main thread's own attempt, with its retries and messages,
takes over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
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
_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # as handshake.SSL_REQUEST, not imported
# How long an open socket waits for the plans' verdict before it is closed: well within the
# server's authentication_timeout (60 s by default), after which it would be closed anyway.
VERDICT_WAIT = 30.0


class Failed:
    """take(): the attempt made at start failed on the network (timed out, refused, reset)."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class Opened:
    """take(): the socket opened at start (TLS set up, if asked), and the deadline of its
    attempt, whose time it has spent in part."""

    def __init__(self, sock: socket.socket, deadline: Any) -> None:
        self.sock = sock
        self.deadline = deadline


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
        timeout: float | None = None,
    ) -> None:
        self.target: Any = None
        self.timeout = timeout  # --connect-timeout, else SQLPLAN_CONNECT_TIMEOUT
        self.connection: Any = None
        self.tls = False
        self.refused = False  # sslmode=prefer and the server answered N: the socket is plain
        self.attempted: Any = None  # the target it tried
        self.error: OSError | None = None  # why it failed, when the network said so
        self.failure: Exception | None = None  # why logging in failed (connection.py's error)
        self.sock: socket.socket | None = None
        self.deadline: Any = None  # sockets.Deadline of this attempt: TCP, TLS, log-in
        self.files: Any = None  # the certificate files its TLS used (tls.tls_files)
        self._verdict: bool | None = None  # go(): log in; take() or discard(): do not
        self._decided = threading.Event()
        self._verdict_lock = threading.Lock()
        self._args = (database_url, dict(environ), cwd)
        self._thread = threading.Thread(target=self._work, name="sqlplan-connect", daemon=True)
        self.waiting = threading.Event()  # on the network from now on (or done): CPU free
        self._thread.start()

    def _work(self) -> None:
        sock: socket.socket | None = None
        previous = sys.getswitchinterval()
        # Each answer from the server wakes this thread while the main thread imports: take
        # the interpreter from it within 0.5 ms rather than the default 5 (tens of ms in all).
        sys.setswitchinterval(0.0005)
        try:
            database_url, environ, cwd = self._args
            # A URL that says where and how by itself: connect at once, resolve the target
            # (its imports are the longest part) while the server answers, then compare.
            guess = _guess(database_url, environ, cwd)
            guessed: OSError | None = None  # the guess's connection failed: the first attempt
            started = time.monotonic()
            if guess is not None:
                try:
                    sock = _open(guess[0], guess[1], self.timeout or guess[4] or 15.0)
                    if guess[2] != "disable" and guess[3] != "direct":
                        sock.sendall(_SSL_REQUEST)
                except OSError as e:
                    guessed = e
            from pathlib import Path

            from .sockets import Deadline, tune
            from .target import resolve_target

            target = resolve_target(database_url, environ, Path(cwd))
            if (
                target is None
                or target.is_unix_socket
                or target.sslmode not in (_TLS_FIRST | {"disable"})
                or (
                    guess is not None
                    and guess[:4]
                    != (target.host.lower(), target.port, target.sslmode, target.sslnegotiation)
                )
            ):
                return  # not this target's connection (the socket, if any, is closed below)
            self.attempted = target
            timeout = self.timeout or target.connect_timeout or 15.0
            # One attempt, bounded as a whole: the time since the process started counts.
            deadline = self.deadline = Deadline(timeout - (time.monotonic() - started))
            if guessed is not None:
                raise guessed
            if sock is None:
                sock = _open(target.host, target.port, deadline.left())
                if target.sslmode != "disable" and target.sslnegotiation != "direct":
                    sock.sendall(_SSL_REQUEST)  # nothing imported before it
            tune(sock, target.keepalives)  # the target's, from here on (a guess opened it)
            deadline.apply(sock)
            if target.sslmode != "disable":
                # The TLS settings are made while the SSLRequest's answer is on the way.
                from .handshake import RefusesTls, direct_tls, finish_tls
                from .tls import ssl_context_for, tls_files

                self.files = tls_files(target)
                context = ssl_context_for(target)
                # From here on this thread waits on the network, and the main thread may
                # take the interpreter: until now it has waited for it (start()).
                self.waiting.set()
                deadline.apply(sock)
                try:
                    if target.sslnegotiation == "direct":
                        sock = direct_tls(sock, context, target.host)
                    else:
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
            self.waiting.set()
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
        """Log in once the plans are known valid. On a cache hit that is at once: send the
        StartupMessage and authenticate now, beside the imports, rather than after them (only
        when nothing else could still refuse the run before it connects: no vars, no option
        unread here, every plan in the cache, no two `once` plans of one name). Otherwise when
        the command connects (go()), beside the imports running needs; or never (take(),
        discard(), or no verdict within VERDICT_WAIT: the socket is closed)."""
        if self.sock is None:
            return
        self.deadline.pause()  # waiting for the plans is not the network's time
        decided = self._decided.wait(VERDICT_WAIT)
        self.deadline.resume()
        if not self.decide(False):  # no go (the first verdict holds): the socket stays for
            if not decided:  # take(), or, with no verdict in time, it goes
                self.close()
            return
        from .login import log_in

        sock, self.sock = self.sock, None
        try:
            # the standard library only: no driver yet
            self.connection = log_in(target, sock, deadline=self.deadline)
        except Exception as e:  # the first attempt's outcome: the run reports it as such
            self.failure = e
            with contextlib.suppress(OSError):
                sock.close()

    def decide(self, go: bool) -> bool:
        """The first verdict on the plans holds: whether to log in. Returns that verdict."""
        with self._verdict_lock:
            if self._verdict is None:
                self._verdict = go
                self._decided.set()
            return self._verdict

    def take(self, target: Any, tls: bool, timeout: float) -> Any:
        """The open socket, if it was opened for this target as this attempt would open it;
        REFUSED for a TLS attempt the server already refused (sslmode=prefer), whose plain
        socket the next attempt takes."""
        # Whatever it is doing is bounded by its attempt's deadline (TCP, TLS and the log-in
        # together): wait for it, as for an attempt of one's own.
        self.decide(False)  # not logging in yet: not now either, this attempt takes the socket
        self._thread.join(timeout + 5)
        if self._thread.is_alive():
            return None
        if tls and self.files is not None:
            from .tls import tls_files

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
        return Opened(sock, self.deadline)

    def close(self) -> None:
        if self.connection is not None:
            from .sockets import TERMINATE, hang_up

            hang_up(self.connection.sock, self.connection.stream, TERMINATE)
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
        pending = _Early(url, environ, cwd, timeout=_timeout(argv, environ))
        _Slot.pending = pending
    # The connection is the longer road: let its thread resolve the target and make its TLS
    # settings (the SSLRequest on its way meanwhile) before the main thread's imports take the
    # interpreter; sharing it, both would take twice as long, the TLS handshake later.
    pending.waiting.wait(0.25)
    # On a cache hit the plans are known valid at once: the connection may log in as soon
    # as its TLS is up. Read here, while the thread waits for the network.
    if plans and known_valid is not None and known_valid(plans):
        pending.decide(True)


def _open(host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


# What in a URL's query could move the connection elsewhere than its host and port say.
_ELSEWHERE = ("host=", "hostaddr=", "port=", "service=")


def _guess(database_url: str | None, environ: Mapping[str, str], cwd: str) -> tuple[str, int, str, str, float | None] | None:  # fmt: skip
    """(host, port, sslmode, sslnegotiation, connect_timeout) when a URL says them by itself,
    read without target.py: a guess, which the resolved target must match for the socket to
    be used."""
    url = database_url or environ.get("DATABASE_URL") or _dotenv_url(cwd)
    if not url or not url.startswith(("postgresql://", "postgres://")):
        return None
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        port = parts.port or int(environ.get("PGPORT") or 5432)
    except ValueError:
        return None
    host = parts.hostname  # lowercased, as the target's host is compared
    if (
        not host
        or "%" in host
        or "," in parts.netloc
        or any(f"{key}=" in _ELSEWHERE for key in query)
    ):
        return None
    sslmode = query.get("sslmode") or environ.get("PGSSLMODE") or "prefer"
    negotiation = query.get("sslnegotiation") or environ.get("PGSSLNEGOTIATION") or "postgres"
    if sslmode not in (_TLS_FIRST | {"disable"}):
        return None
    timeout: float | None = None
    with contextlib.suppress(ValueError):  # as libpq: 2 s at least, 0 or less: none
        seconds = int(query.get("connect_timeout") or environ.get("PGCONNECT_TIMEOUT") or 0)
        timeout = float(max(seconds, 2)) if seconds > 0 else None
    return host, port, sslmode, negotiation, timeout


def _dotenv_url(cwd: str) -> str | None:
    """DATABASE_URL from ./.env when a plain line sets it (quoted or not); else None."""
    try:
        with open(os.path.join(cwd, ".env"), encoding="utf-8") as f:
            text = f.read(65536)
    except (OSError, UnicodeDecodeError):
        return None
    for line in text.splitlines():
        name, equals, value = line.strip().removeprefix("export ").partition("=")
        if equals and name.strip() == "DATABASE_URL":
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            return value or None
    return None


def go(target: Any) -> None:
    """The command connects now (its plans valid): the connection opened early for `target`
    logs in, in the background, while the main thread imports what running needs."""
    with _lock:
        early = _Slot.pending
    if early is not None:
        early.decide(early.attempted == target)


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
        early.decide(False)
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
            # not a directory: anything else named so (a FIFO, a device) is read, and refused
            files += [
                os.path.join(path, n) for n in names if not os.path.isdir(os.path.join(full, n))
            ]
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
