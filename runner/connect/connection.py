"""A Target -> an open pg8000 connection: TLS as libpq's sslmode says, channel binding, retries.

sqlplan logs in itself (handshake.py); pg8000's Connection is then made over the logged-in
socket by letting it read the server's greeting as if from its own log-in (_Greeting), and it
carries the session from there."""

from __future__ import annotations

import functools
import io
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConnectError
from . import early
from .handshake import (
    LoggedIn,
    Refusal,
    RefusesTls,
    direct_tls,
    start_tls,
)
from .login import StaleLogin, Transient, failure, is_handshake_failure, log_in
from .sockets import TERMINATE, Deadline, hang_up, tune
from .target import Target
from .tls import ssl_context_for

if TYPE_CHECKING:
    from pg8000.native import Connection

DEFAULT_CONNECT_TIMEOUT = 15.0  # seconds per attempt when neither flag, env nor URL says


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries of transient connect failures, with exponential backoff and jitter."""

    retries: int = 0
    timeout: float | None = None  # per attempt; None: the URL's connect_timeout, else the default
    base_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): half fixed, half random."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(ceiling / 2 + random.uniform(0, ceiling / 2))


def connect(
    target: Target,
    retry: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    """Open a pg8000 native connection, retrying transient failures; never shows the password."""
    retry = retry or RetryPolicy()
    timeout = retry.timeout or target.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    early.go(target)  # a connection opened while sqlplan started: it may log in now
    attempts = retry.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _connect_with_sslmode(target, timeout)
        except Transient as e:
            if attempt == attempts:
                tries = f" (after {attempts} attempts)" if attempts > 1 else ""
                raise ConnectError(f"cannot connect to {target.describe()}: {e}{tries}") from None
            delay = retry.delay(attempt)
            if notify is not None:
                notify(
                    f"connection attempt {attempt} of {attempts} to {target.describe()} failed ({e}); "
                    f"retrying in {delay:.2f} s"
                )
            sleep(delay)
    raise AssertionError("unreachable")


def _connect_with_sslmode(target: Target, timeout: float) -> Connection:
    """libpq's sslmode: which of TLS and plaintext to try, in what order."""
    if target.is_unix_socket:
        return _attempt(target, False, timeout)  # libpq ignores sslmode on unix sockets
    mode = target.sslmode
    if mode == "disable":
        return _attempt(target, False, timeout)
    ssl_context_for(target)  # a settings error is reported before anything is sent
    if mode == "allow":
        try:
            return _attempt(target, False, timeout)
        except ConnectError as e:
            if e.sqlstate != "28000":  # only a server that refuses plaintext gets a TLS retry
                raise
            return _attempt_tls(target, timeout)
    if mode == "prefer" and target.channel_binding != "require":
        try:
            return _attempt_tls(target, timeout)
        except _RefusesTls:
            return _attempt(target, False, timeout)
        except ConnectError as e:
            if e.sqlstate != "28000":  # a server that refuses TLS clients gets a plaintext retry
                raise
            return _attempt(target, False, timeout)
    try:
        return _attempt_tls(target, timeout)
    except _RefusesTls:
        raise ConnectError(
            f"cannot connect to {target.describe()}: the server does not accept TLS connections "
            f"(sslmode={mode})"
        ) from None


def _attempt_tls(target: Target, timeout: float) -> Connection:
    """A TLS attempt offering a P-256 key share only (see ssl_context_for); if the handshake
    fails, one more with every group OpenSSL offers, which is what libpq sends."""
    try:
        return _attempt(target, ssl_context_for(target), timeout)
    except _HandshakeFailed:
        pass
    try:
        return _attempt(target, ssl_context_for(target, every_group=True), timeout)
    except _HandshakeFailed as e:
        raise failure(target, e.error) from None


class _HandshakeFailed(Exception):
    """The TLS handshake failed for a reason other than the certificate or a hang-up."""

    def __init__(self, error: ssl.SSLError) -> None:
        self.error = error


class _RefusesTls(Exception):
    pass


def _attempt(
    target: Target,
    tls: ssl.SSLContext | bool,
    timeout: float,
) -> Connection:
    """One connection attempt, bounded as a whole by `timeout` (TCP, TLS and the log-in, as
    libpq's connect_timeout); failures become Transient, _RefusesTls or ConnectError."""
    deadline = Deadline(timeout)
    if target.is_unix_socket:
        return _logged_in(
            target,
            _unix_socket(target, deadline),
            lambda: _unix_socket(target, deadline),
            deadline,
        )
    from pg8000 import native  # noqa: F401  (while the early log-in may still be under way)

    taken = early.take(target, tls is not False, timeout)
    if isinstance(taken, LoggedIn):
        return _session(target, taken)  # logged in already, the plan known valid
    if taken == early.REFUSED:
        raise _RefusesTls()  # it said N already, to the SSLRequest sent at start
    if isinstance(taken, early.Failed) and not isinstance(taken.error, StaleLogin):
        error = taken.error
        if isinstance(error, (Transient, ConnectError, _RefusesTls)):
            raise error  # logging in at start: that was this attempt
        if is_handshake_failure(error):
            raise _HandshakeFailed(error)
        # the attempt made at start: it counts as this one (its timeout is spent)
        raise failure(target, error) from None
    if isinstance(taken, early.Opened):
        # opened while sqlplan started (TLS with ssl_context_for(target)): its time counts
        sock, deadline = taken.sock, taken.deadline
    else:
        sock = open_socket(target, tls, deadline)
    return _logged_in(target, sock, lambda: open_socket(target, tls, deadline), deadline)


def _logged_in(
    target: Target, sock: socket.socket, reopen: Callable[[], socket.socket], deadline: Deadline
) -> Connection:
    """The session after a log-in on `sock`; if the server no longer asks for what it was
    remembered for, a log-in as libpq's on a new connection (`reopen`), within the same
    attempt's time."""
    try:
        return _session(target, log_in(target, sock, deadline=deadline))
    except StaleLogin:
        try:
            fresh = reopen()
        except TimeoutError as e:
            raise failure(target, e) from None
        return _session(target, log_in(target, fresh, remembered=False, deadline=deadline))


def _unix_socket(target: Target, deadline: Deadline) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline.apply(sock)
        sock.connect(target.socket_path)
    except OSError as e:
        sock.close()
        raise failure(target, e) from None
    return sock


def open_socket(
    target: Target, tls: ssl.SSLContext | bool, deadline: Deadline | float
) -> socket.socket:
    """TCP to the target (and TLS over it, if `tls`), within the attempt's deadline;
    failures as _attempt's."""
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    sock: socket.socket | None = None
    try:
        sock = socket.create_connection((target.host, target.port), timeout=deadline.left())
        # Nagle off (every small message would wait for the previous one's ACK); keepalives
        # and the user timeout, so that a vanished peer is found within a bounded time.
        tune(sock, target.keepalives)
        deadline.apply(sock)  # the TLS handshake, as a whole, within what is left
        if tls is not False:
            context = tls if isinstance(tls, ssl.SSLContext) else ssl_context_for(target)
            if target.sslnegotiation == "direct":
                sock = direct_tls(sock, context, target.host)
            else:
                sock = start_tls(sock, context, target.host)
    except RefusesTls:
        assert sock is not None
        sock.close()
        raise _RefusesTls() from None
    except Refusal as e:
        assert sock is not None
        sock.close()
        raise ConnectError(f"cannot connect to {target.describe()}: {e}") from None
    except OSError as e:
        if sock is not None:
            sock.close()
        if is_handshake_failure(e):
            raise _HandshakeFailed(e) from None
        raise failure(target, e) from None
    return sock


class _Greeting:
    """What pg8000's Connection reads while it believes it logs in: the greeting the server
    gave sqlplan's own log-in (handshake.py). The StartupMessage it writes goes nowhere."""

    def __init__(self, greeting: bytes) -> None:
        self._data = io.BytesIO(greeting)

    def makefile(self, mode: str) -> _Greeting:
        return self

    def read(self, size: int) -> bytes:
        return self._data.read(size)

    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def _session(target: Target, done: LoggedIn) -> Connection:
    """pg8000's Connection over a logged-in socket: it reads the greeting (server version,
    client encoding, cancel key) as from its own log-in, then talks on the real socket."""
    connection = _session_class()(
        target.user, sock=_Greeting(done.login.greeting), ssl_context=False
    )
    connection._usock, connection._sock = done.sock, done.stream
    connection.auth = done.login  # its mechanism_name, as pg8000's own SCRAM client has one
    # A query must not die of the connect timeout: reads wait as long as the server works.
    done.sock.settimeout(None)
    return connection


@functools.cache
def _session_class() -> type[Connection]:
    """pg8000's Connection whose close() lets go of the socket on every path (pg8000's leaves
    the stream over it to the garbage collector, and raises on a closed connection)."""
    from pg8000.native import Connection

    class Session(Connection):  # type: ignore[misc]
        def close(self) -> None:
            close(self)

    return Session


def close(connection: Connection, linger: float = 0.0) -> None:
    """Say goodbye and let go of the socket, whether the server is still there or not; never
    raises (closing must not mask a run's real result). `linger`: seconds to wait for the
    server to close its end, so that its backend is gone when this returns."""
    stream, sock = connection._sock, connection._usock
    connection._sock = connection._usock = None
    hang_up(sock, stream, TERMINATE, linger)


_CANCEL_REQUEST_CODE = 80877102


def cancel(target: Target, connection: Connection) -> bool:
    """Ask the server to cancel the connection's running statement (best effort, 2 s at most).

    pg8000 has no cancel API; the request is the protocol's CancelRequest, sent on a new
    connection with the backend key data the server gave at start-up.
    """
    key = getattr(connection, "_backend_key_data", None)
    if not key:
        return False
    message = struct.pack("!ii", 8 + len(key), _CANCEL_REQUEST_CODE) + bytes(key)
    try:
        if target.is_unix_socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            sock = socket.create_connection((target.host, target.port), timeout=2)
        with sock:
            if target.is_unix_socket:
                sock.settimeout(2)
                sock.connect(target.socket_path)
            sock.sendall(message)
            sock.recv(1)  # the server closes the connection once it has read the request
    except OSError:
        return False
    return True
