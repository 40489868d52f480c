"""Logging in on an open socket (handshake.py does the protocol), and what a failed attempt
means: transient (try again), stale (the server asks for something else now: log in again), or
a ConnectError for the user."""

from __future__ import annotations

import errno
import socket
import ssl
from typing import TypeGuard

from ..errors import ConnectError
from . import memory
from .handshake import LoggedIn, Refusal, ServerError, Stale
from .handshake import log_in as handshake_log_in
from .sockets import Deadline
from .target import Target


class Transient(Exception):
    """A connect failure worth another attempt: refused, reset, timed out, server starting up."""


def is_handshake_failure(error: BaseException) -> TypeGuard[ssl.SSLError]:
    return isinstance(error, ssl.SSLError) and not isinstance(
        error, (ssl.SSLCertVerificationError, ssl.SSLEOFError, ssl.SSLZeroReturnError)
    )


def log_in(
    target: Target,
    sock: socket.socket,
    *,
    remembered: bool = True,
    deadline: Deadline | None = None,
) -> LoggedIn:
    """StartupMessage and authentication on an open socket (TLS set up already, if any); on
    failure the socket is closed and the error is Transient, StaleLogin or ConnectError.
    `remembered`: send the SCRAM first message at once if the server asked for SASL last time.
    `deadline`: what is left of the attempt bounds every read and write."""
    tls = isinstance(sock, ssl.SSLSocket)
    expect = memory.offered(target, tls) if remembered else ()
    try:
        done = handshake_log_in(
            sock,
            user=target.user,
            password=target.password,
            database=target.database,
            application_name=target.application_name,
            options=target.options or None,
            channel_binding=target.channel_binding,
            expect=expect,
            deadline=deadline,
        )
    except Stale:
        sock.close()
        memory.remember(target, tls, ())
        raise StaleLogin() from None
    except ServerError as e:
        sock.close()
        code = e.fields.get("C", "")
        message = e.fields.get("M", "server error")
        if code == "57P03" or code.startswith("08") or code == "53300":
            raise Transient(f"{message} [{code}]") from None
        raise ConnectError(
            f"cannot connect to {target.describe()}: {message} [{code}]", sqlstate=code
        ) from None
    except Refusal as e:
        sock.close()
        raise ConnectError(f"cannot connect to {target.describe()}: {e}") from None
    except OSError as e:
        sock.close()
        raise failure(target, e) from None
    if done.login.offered != expect:
        memory.remember(target, tls, done.login.offered)
    return done


class StaleLogin(Exception):
    """The server no longer asks for what it asked for last time: log in again, on a new
    connection (not a failed attempt)."""


def failure(target: Target, error: BaseException) -> Exception:
    why = reason(error) + _direct_hint(target, error)
    if is_transient(error):
        return Transient(why)
    return ConnectError(f"cannot connect to {target.describe()}: {why}")


def _direct_hint(target: Target, error: BaseException) -> str:
    """A server before PostgreSQL 17 reads a direct TLS ClientHello as a broken startup
    packet and hangs up: say what the likely cause is."""
    if target.sslnegotiation == "direct" and isinstance(error, (ssl.SSLError, ConnectionError)):
        return " (sslnegotiation=direct needs PostgreSQL 17 or later, or a proxy that speaks it)"
    return ""


def is_transient(error: BaseException) -> bool:
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


def reason(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
