"""The protocol's opening, as libpq plays it: the SSLRequest and TLS, the StartupMessage, and
authentication (trust, cleartext, MD5, SCRAM-SHA-256 and -PLUS), with libpq's channel_binding
rules. It needs nothing but the standard library, so it can run while the driver is still
being imported (early.py); what it returns is the server's greeting (AuthenticationOk through
ReadyForQuery), which session.py hands to pg8000 for the rest of the connection."""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
from dataclasses import dataclass
from typing import BinaryIO

from .scram import SCRAM, SCRAM_PLUS, Scram, ScramError, end_point_hash
from .sockets import Deadline

SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
ALPN = "postgresql"  # the protocol name a direct TLS connection negotiates
_PROTOCOL_3_0 = 196608
_HEADER = struct.Struct("!ci")
_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5 = 0, 3, 5
_AUTH_SASL, _AUTH_SASL_CONTINUE, _AUTH_SASL_FINAL = 10, 11, 12
NO_PASSWORD = (
    "the server asks for a password, but none was given: put it in the URL "
    "(postgresql://user:PASSWORD@host/db, percent-encoded), in PGPASSWORD, or in ~/.pgpass "
    "(or the file PGPASSFILE or passfile= names; hostname:port:database:username:password, "
    "mode 0600)"
)
_AUTH_NAMES = {_AUTH_CLEARTEXT: "a cleartext password", _AUTH_MD5: "an MD5 password"}


class RefusesTls(Exception):
    """The server answered the SSLRequest with N."""


class ServerError(Exception):
    """An ErrorResponse while logging in (wrong password, no such database, starting up)."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__(fields.get("M", "server error"))
        self.fields = fields


class Stale(Exception):
    """The server did not ask for the SASL mechanism sqlplan expected and sent its first SCRAM
    message for (log_in's `expect`): this connection is spoilt; log in again without."""


class Refusal(Exception):
    """sqlplan refuses to go on: no password to give, channel binding that cannot be had, a
    server whose SCRAM answer does not hold together. The message says which."""


@dataclass(frozen=True)
class Login:
    """A finished log-in: the mechanism used (None without SASL) and what the server sent from
    AuthenticationOk to ReadyForQuery (parameter statuses, the cancel key), as it sent it."""

    mechanism_name: str | None
    greeting: bytes
    offered: tuple[str, ...] = ()  # the SASL mechanisms the server offered, if it asked for SASL


@dataclass
class LoggedIn:
    """A connection whose log-in is done: its socket, the buffered stream over it, the Login."""

    sock: socket.socket
    stream: BinaryIO
    login: Login


def start_tls(sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """The SSLRequest, then the TLS handshake (SNI: the host name, never an IP address)."""
    sock.sendall(SSL_REQUEST)
    return finish_tls(sock, context, host)


def direct_tls(sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """TLS from the first byte, no SSLRequest (sslnegotiation=direct: PostgreSQL 17 and later,
    Neon's proxy): one round trip fewer. As libpq, the server must choose the ALPN protocol
    `postgresql` (the context offers it), so that no other TLS service is taken for one."""
    tls = context.wrap_socket(sock, server_hostname=host)
    if tls.selected_alpn_protocol() != ALPN:
        tls.close()
        raise Refusal(
            "the server did not choose the ALPN protocol 'postgresql' for a direct TLS "
            "connection (sslnegotiation=direct needs PostgreSQL 17 or later)"
        )
    return tls


def finish_tls(sock: socket.socket, context: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """The answer to an SSLRequest sent already, then the TLS handshake."""
    answer = sock.recv(1)
    if answer == b"N":
        raise RefusesTls()
    if answer != b"S":
        raise ConnectionResetError(0, "the server answered the SSLRequest with neither S nor N")
    return context.wrap_socket(sock, server_hostname=host)


def log_in(
    sock: socket.socket,
    *,
    user: str,
    password: str | None,
    database: str | None,
    application_name: str | None,
    options: str | None,
    channel_binding: str,
    expect: tuple[str, ...] = (),
    deadline: Deadline | None = None,
) -> LoggedIn:
    """StartupMessage and authentication on `sock` (TLS set up already, if any). On failure
    the stream over the socket is closed (the socket itself stays the caller's to close).

    `expect`: the SASL mechanisms this server offered last time. The SCRAM first message then
    goes with the StartupMessage, saving a round trip; it holds nothing secret (a nonce and
    the channel binding flag). If the server asks for anything else, Stale is raised.

    `deadline`: every read and write waits at most what is left of the connection attempt,
    so that a server that answers slowly cannot stretch the attempt past its timeout."""
    stream = _Exchange(sock, deadline)
    try:
        stream.write(_startup(user=user, database=database, application_name=application_name, options=options))  # fmt: skip
        tls = isinstance(sock, ssl.SSLSocket)
        scram: Scram | None = None
        early = False  # the SCRAM first message went with the StartupMessage
        if expect and password is not None:
            try:
                scram = _choose(
                    "\x00".join(expect).encode("ascii"), password, sock, tls, channel_binding
                )
            except Refusal:
                scram = None  # what the server offers now decides, as without `expect`
            if scram is not None:
                _initial(stream, scram)
                early = True
        stream.flush()
        offered: tuple[str, ...] = ()
        greeting = bytearray()
        while True:
            code, data = _receive(stream)
            if code == b"E":
                raise ServerError(_fields(data))
            if code == b"v":
                continue  # NegotiateProtocolVersion: options the server does not know, ignored
            if code != b"R":
                greeting += _HEADER.pack(code, len(data) + 4) + data
                if code == b"Z":
                    used = scram.mechanism_name if scram else None
                    session: BinaryIO = sock.makefile("rwb")  # type: ignore[assignment]
                    return LoggedIn(sock, session, Login(used, bytes(greeting), offered))
                continue
            kind = int.from_bytes(data[:4], "big")
            if early and not offered:  # the first request: the one the SCRAM message answered?
                names = tuple(m.decode("ascii", "replace") for m in data[4:].split(b"\x00") if m)
                # The same list, not only the same mechanism: the gs2 flag depends on the list
                # (y: PLUS not offered), and a server offering PLUS refuses a y as a downgrade.
                if kind != _AUTH_SASL or names != expect:
                    raise Stale()
                offered = names
                continue
            if kind == _AUTH_OK:
                if scram is not None and not scram.verified:
                    raise Refusal(
                        "the server ended SCRAM without proving that it knows the password"
                    )
                if channel_binding == "require" and (
                    scram is None or scram.mechanism_name != SCRAM_PLUS
                ):
                    _refuse("the server authenticated the client without channel binding")
                greeting += _HEADER.pack(code, len(data) + 4) + data
                continue
            if kind in (_AUTH_CLEARTEXT, _AUTH_MD5, _AUTH_SASL) and password is None:
                raise Refusal(NO_PASSWORD)
            if kind in _AUTH_NAMES:
                if channel_binding == "require":
                    _refuse(f"the server asked for {_AUTH_NAMES[kind]}")
                secret = (password or "").encode("utf-8")
                if kind == _AUTH_MD5:
                    inner = hashlib.md5(secret + user.encode("utf-8")).hexdigest().encode("ascii")
                    secret = b"md5" + hashlib.md5(inner + data[4:8]).hexdigest().encode("ascii")
                _send(stream, b"p", secret + b"\x00")
            elif kind == _AUTH_SASL:
                offered = tuple(m.decode("ascii", "replace") for m in data[4:].split(b"\x00") if m)
                scram = _choose(data[4:], password or "", sock, tls, channel_binding)
                _initial(stream, scram)
                stream.flush()
            elif kind == _AUTH_SASL_CONTINUE and scram is not None:
                try:
                    _send(stream, b"p", scram.final(data[4:]))
                except ScramError as e:
                    raise Refusal(str(e)) from None
            elif kind == _AUTH_SASL_FINAL and scram is not None:
                try:
                    scram.verify(data[4:])
                except ScramError as e:
                    raise Refusal(str(e)) from None
            else:
                raise Refusal(
                    f"the server asks for an authentication method sqlplan does not support "
                    f"(AuthenticationRequest {kind}); use password, md5 or scram-sha-256"
                )
    except BaseException:
        stream.close()
        raise


class _Exchange:
    """The log-in's reads and writes, straight on the socket: each read takes no more than it
    needs (the session's buffered stream starts after the greeting), and each waits at most
    what is left of the attempt."""

    def __init__(self, sock: socket.socket, deadline: Deadline | None) -> None:
        self.sock = sock
        self.deadline = deadline
        self.pending = bytearray()

    def write(self, data: bytes) -> None:
        self.pending += data

    def flush(self) -> None:
        if self.deadline is not None:
            self.deadline.apply(self.sock)
        self.sock.sendall(self.pending)
        self.pending.clear()

    def read(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            if self.deadline is not None:
                self.deadline.apply(self.sock)
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                break
            data += chunk
        return bytes(data)

    def close(self) -> None:
        self.pending.clear()


def _startup(**parameters: str | None) -> bytes:
    """The StartupMessage: protocol 3.0 and the parameters that have a value."""
    body = bytearray(struct.pack("!i", _PROTOCOL_3_0))
    for name, value in parameters.items():
        if value is not None:
            body += name.encode("ascii") + b"\x00" + value.encode("utf-8") + b"\x00"
    body += b"\x00"
    return struct.pack("!i", len(body) + 4) + body


def _choose(
    offered_data: bytes, password: str, sock: socket.socket, tls: bool, channel_binding: str
) -> Scram:
    """The mechanism libpq would pick from the server's list, under channel_binding."""
    offered = [m.decode("ascii", "replace") for m in offered_data.split(b"\x00") if m]
    binding = None
    if tls and channel_binding != "disable" and SCRAM_PLUS in offered:
        certificate = sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        binding = end_point_hash(certificate) if certificate else None
    if binding is not None:
        return Scram(password, binding, could_bind=True)
    if channel_binding == "require":
        _refuse(
            "the server did not offer SCRAM-SHA-256-PLUS"
            if SCRAM_PLUS not in offered
            else "the server certificate's signature algorithm gives no hash to bind to"
        )
    if SCRAM not in offered:
        raise Refusal(f"the server offers no SASL mechanism sqlplan supports: {', '.join(offered)}")
    # 'y': could have bound, the server did not offer it; 'n': binding off, or no TLS, or a
    # certificate it cannot be computed for (the server cannot compute it either).
    could = tls and channel_binding != "disable" and SCRAM_PLUS not in offered
    return Scram(password, None, could_bind=could)


def _initial(stream: _Exchange, scram: Scram) -> None:
    """SASLInitialResponse: the mechanism and the client-first message (written, not flushed)."""
    first = scram.first()
    mechanism = scram.mechanism_name.encode("ascii") + b"\x00"
    stream.write(b"p" + struct.pack("!i", len(mechanism) + 8 + len(first)) + mechanism
                 + struct.pack("!i", len(first)) + first)  # fmt: skip


def _refuse(reason: str) -> None:
    raise Refusal(f"channel_binding=require, but {reason}; no password was sent")


def _send(stream: _Exchange, code: bytes, payload: bytes) -> None:
    stream.write(code + struct.pack("!i", len(payload) + 4) + payload)
    stream.flush()


def _receive(stream: _Exchange) -> tuple[bytes, bytes]:
    header = _read(stream, 5)
    code, length = _HEADER.unpack(header)
    if length < 4 or length > 1 << 24:
        raise Refusal("the server sent a malformed message while logging in")
    return code, _read(stream, length - 4)


def _read(stream: _Exchange, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise ConnectionResetError(0, "the server closed the connection unexpectedly")
    return data


def _fields(data: bytes) -> dict[str, str]:
    return {
        s[:1].decode("ascii", "replace"): s[1:].decode("utf-8", "replace")
        for s in data.split(b"\x00")
        if s
    }
