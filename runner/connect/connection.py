"""A Target -> an open pg8000 connection: TLS as libpq's sslmode says, channel binding, retries."""

from __future__ import annotations

import errno
import os
import random
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ConnectError
from . import early
from .target import Target

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


class _Transient(Exception):
    """A connect failure worth another attempt: refused, reset, timed out, server starting up."""


def connect(
    target: Target,
    retry: RetryPolicy | None = None,
    notify: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    """Open a pg8000 native connection, retrying transient failures; never shows the password."""
    retry = retry or RetryPolicy()
    timeout = retry.timeout or target.connect_timeout or DEFAULT_CONNECT_TIMEOUT
    attempts = retry.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _connect_with_sslmode(target, timeout)
        except _Transient as e:
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
    context = ssl_context_for(target)
    if mode == "allow":
        try:
            return _attempt(target, False, timeout)
        except ConnectError as e:
            if e.sqlstate != "28000":  # only a server that refuses plaintext gets a TLS retry
                raise
            return _attempt(target, context, timeout)
    if mode == "prefer" and target.channel_binding != "require":
        try:
            return _attempt(target, context, timeout)
        except _RefusesTls:
            return _attempt(target, False, timeout)
        except ConnectError as e:
            if e.sqlstate != "28000":  # a server that refuses TLS clients gets a plaintext retry
                raise
            return _attempt(target, False, timeout)
    try:
        return _attempt(target, context, timeout)
    except _RefusesTls:
        raise ConnectError(
            f"cannot connect to {target.describe()}: the server does not accept TLS connections "
            f"(sslmode={mode})"
        ) from None


class _RefusesTls(Exception):
    pass


def ssl_context_for(target: Target) -> ssl.SSLContext:
    """The TLS settings an sslmode asks for, with the client certificate if there is one.

    As libpq, `require` verifies the chain (as verify-ca) when there is a root certificate:
    `sslrootcert`, or ~/.postgresql/root.crt."""
    mode = target.sslmode
    default_root = Path.home() / ".postgresql" / "root.crt"
    verify = mode in ("verify-ca", "verify-full") or (
        mode == "require" and (target.sslrootcert or default_root.is_file())
    )
    if verify:
        root = target.sslrootcert or str(default_root)
        if root == "system":
            context = ssl.create_default_context()
        elif os.path.isfile(root):
            # As libpq: the file's certificates are the only ones trusted, not the system's.
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            try:
                context.load_verify_locations(cafile=root)
            except (ssl.SSLError, OSError, ValueError) as e:
                raise ConfigError(
                    f"root certificate file {root!r} holds no usable certificate "
                    f"(PEM is expected): {_tls_reason(e)}"
                ) from None
            if not context.get_ca_certs():
                raise ConfigError(
                    f"root certificate file {root!r} holds no certificate (PEM is expected)"
                )
        elif os.path.exists(root):
            raise ConfigError(f"root certificate file {root!r} is not a plain file")
        else:
            raise ConfigError(
                f"root certificate file {root!r} does not exist: give one with sslrootcert=FILE, "
                "use the system's trusted roots with sslrootcert=system, or use sslmode=require"
            )
        context.check_hostname = mode == "verify-full"
    else:
        # Nothing is verified: no CA bundle to load (which costs 10-20 ms at every start).
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    certificate = target.sslcert or _default_client_file("postgresql.crt")
    if certificate and os.path.isfile(certificate):
        key = target.sslkey or _default_client_file("postgresql.key") or certificate
        _check_key_permissions(key)
        try:
            context.load_cert_chain(certificate, key)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise ConfigError(
                f"cannot load the client certificate {certificate!r} with key {key!r} "
                f"(PEM files are expected, the key unencrypted): {_tls_reason(e)}"
            ) from None
    elif target.sslcert:
        raise ConfigError(f"client certificate file {target.sslcert!r} does not exist")
    return context


def _tls_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or error.strerror or str(error)
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


def _default_client_file(name: str) -> str | None:
    path = Path.home() / ".postgresql" / name
    return str(path) if path.is_file() else None


def _check_key_permissions(key: str) -> None:
    """libpq refuses a private key others can read: u=rw (0600), or u=rw,g=r (0640) if root owns it."""
    try:
        info = os.stat(key)
    except OSError:
        raise ConfigError(f"private key file {key!r} does not exist") from None
    allowed = 0o037 if info.st_uid == 0 else 0o077
    if info.st_mode & allowed:
        raise ConfigError(
            f"private key file {key!r} has group or world access; it must be u=rw (0600) or less"
        )


def _attempt(
    target: Target,
    tls: ssl.SSLContext | bool,
    timeout: float,
    opened: socket.socket | None = None,
) -> Connection:
    """One connection attempt; failures become _Transient, _RefusesTls or ConnectError.
    `opened`: a socket already connected (and TLS set up, if `tls`), as early.py opens one."""
    from pg8000.exceptions import DatabaseError, InterfaceError

    kwargs: dict[str, Any] = {
        "user": target.user,
        "password": target.password,
        "database": target.database,
        "application_name": target.application_name,
        "ssl_context": tls,
    }
    if target.options:
        kwargs["startup_params"] = {"options": target.options}
    sock = None
    try:
        if target.is_unix_socket:
            kwargs["unix_sock"] = target.socket_path
            kwargs["timeout"] = timeout
        else:
            taken = opened if opened is not None else early.take(target, tls is not False, timeout)
            if _is_connection(taken):
                return taken  # logged in already, the plan known valid
            if taken == early.REFUSED:
                raise _RefusesTls()  # it said N already, to the SSLRequest sent at start
            if isinstance(taken, early.Failed) and isinstance(
                taken.error, (_Transient, ConnectError)
            ):
                raise taken.error  # logging in at start: that was this attempt
            if isinstance(taken, early.Failed) and _is_transient(taken.error):
                # the attempt made at start: it counts as this one (its timeout is spent)
                raise _Transient(_reason(taken.error))
            sock = taken if isinstance(taken, socket.socket) else None
            if sock is not None:  # opened while sqlplan started, TLS with ssl_context_for(target)
                kwargs["ssl_context"] = False
            else:
                sock = socket.create_connection((target.host, target.port), timeout=timeout)
                # pg8000 leaves Nagle on: every small message would wait for the previous ACK.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            kwargs["sock"] = sock
            kwargs["host"] = target.host
            kwargs["port"] = target.port
        connection = _connection_class(target.channel_binding)(**kwargs)
    except DatabaseError as e:
        fields = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
        code = str(fields.get("C", ""))
        message = str(fields.get("M", e))
        if code == "57P03" or code.startswith("08") or code == "53300":
            raise _Transient(f"{message} [{code}]") from None
        raise ConnectError(
            f"cannot connect to {target.describe()}: {message} [{code}]", sqlstate=code
        ) from None
    except (InterfaceError, OSError) as e:
        if sock is not None:
            sock.close()
        cause = e.__cause__ or e
        if isinstance(e, InterfaceError) and str(e) == "Server refuses SSL":
            raise _RefusesTls() from None
        if _is_transient(cause):
            raise _Transient(_reason(cause)) from None
        raise ConnectError(f"cannot connect to {target.describe()}: {_reason(cause)}") from None
    # A query must not die of the connect timeout: reads wait as long as the server works.
    connection._usock.settimeout(None)
    return connection


def _is_connection(value: object) -> bool:
    from pg8000.native import Connection

    return isinstance(value, Connection)


def log_in(target: Target, sock: socket.socket, tls: bool) -> Connection:
    """StartupMessage and authentication on a socket early.py opened (TLS done if `tls`)."""
    return _attempt(target, ssl_context_for(target) if tls else False, 15.0, opened=sock)


def _is_transient(error: BaseException) -> bool:
    if isinstance(error, ssl.SSLCertVerificationError):
        return False
    if isinstance(error, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True  # the peer hung up mid-handshake: a proxy waking its backend, say
    if isinstance(error, ssl.SSLError):
        return False
    if isinstance(error, socket.gaierror):
        return error.errno == socket.EAI_AGAIN  # a temporary DNS failure, not an unknown name
    if isinstance(error, (ConnectionError, TimeoutError, socket.timeout)):
        return True
    if isinstance(error, OSError):
        # ENOENT: a unix socket that is not there yet (a server still starting)
        return error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOENT)
    return str(error) in ("network error", "communication error")


def _reason(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5, _AUTH_SASL = 0, 3, 5, 10
NO_PASSWORD = (
    "the server asks for a password, but none was given: put it in the URL "
    "(postgresql://user:PASSWORD@host/db, percent-encoded), in PGPASSWORD, or in ~/.pgpass "
    "(or the file PGPASSFILE or passfile= names; hostname:port:database:username:password, "
    "mode 0600)"
)
_AUTH_NAMES = {_AUTH_CLEARTEXT: "a cleartext password", _AUTH_MD5: "an MD5 password"}
_PLUS = b"SCRAM-SHA-256-PLUS"


def _connection_class(channel_binding: str) -> type[Connection]:
    """pg8000's Connection, refusing at once when a password is asked for and none was given
    (pg8000 would fail on None), and enforcing channel_binding=require or =disable.

    pg8000 picks SCRAM-SHA-256-PLUS by itself over TLS when offered (libpq's `prefer`), but
    nothing makes it insist, or refrain.
    """
    from pg8000.exceptions import InterfaceError
    from pg8000.native import Connection

    class ChannelBindingConnection(Connection):  # type: ignore[misc]
        def handle_AUTHENTICATION_REQUEST(self, data: bytes, context: Any) -> None:
            code = int.from_bytes(data[:4], "big")
            if code in (_AUTH_CLEARTEXT, _AUTH_MD5, _AUTH_SASL) and self.password is None:
                raise InterfaceError(NO_PASSWORD)
            if channel_binding == "prefer":
                super().handle_AUTHENTICATION_REQUEST(data, context)
                return
            if channel_binding == "disable":
                if code == _AUTH_SASL:
                    self._start_scram_without_binding(data)
                else:
                    super().handle_AUTHENTICATION_REQUEST(data, context)
                return
            refused = None
            if code == _AUTH_SASL:
                offered = data[4:].split(b"\x00")
                if _PLUS not in offered or not isinstance(self._usock, ssl.SSLSocket):
                    refused = "the server did not offer SCRAM-SHA-256-PLUS"
            elif code == _AUTH_OK and getattr(self, "auth", None) is None:
                refused = "the server authenticated the client without channel binding"
            elif code in _AUTH_NAMES:
                refused = f"the server asked for {_AUTH_NAMES[code]}"
            if refused:
                raise InterfaceError(
                    f"channel_binding=require, but {refused}; no password was sent"
                )
            super().handle_AUTHENTICATION_REQUEST(data, context)

        def _start_scram_without_binding(self, data: bytes) -> None:
            """pg8000's SASLInitialResponse, but with the gs2 flag 'n' (libpq's disable): handed
            the TLS socket, scramp would send 'y', which a server offering PLUS takes for a
            downgrade attack."""
            import scramp
            from pg8000.core import _flush

            if self.password is None:
                raise InterfaceError("the server asks for a password (SCRAM), but none was given")
            offered = [m.decode("ascii") for m in data[4:].split(b"\x00") if m]
            mechanisms = [m for m in offered if not m.endswith("-PLUS")]
            self.auth = scramp.ScramClient(
                mechanisms, self.user.decode(), self.password.decode(), channel_binding=None
            )
            first = self.auth.get_client_first().encode()
            mechanism = self.auth.mechanism_name.encode("ascii") + b"\x00"
            self._send_message(b"p", mechanism + struct.pack("!i", len(first)) + first)
            _flush(self._sock)

    return ChannelBindingConnection


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
            sock.settimeout(2)
            sock.connect(target.socket_path)
        else:
            sock = socket.create_connection((target.host, target.port), timeout=2)
        with sock:
            sock.sendall(message)
            sock.recv(1)  # the server closes the connection once it has read the request
    except OSError:
        return False
    return True
