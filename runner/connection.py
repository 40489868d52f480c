"""DATABASE_URL / .env / --database-url -> a connection target -> a pg8000 connection."""

from __future__ import annotations

import difflib
import getpass
import os
import socket
import ssl
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .errors import ConfigError, ConnectError

if TYPE_CHECKING:
    from pg8000.native import Connection

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CHANNEL_BINDINGS = ("disable", "prefer", "require")
_QUERY_KEYS = {
    "sslmode",
    "sslrootcert",
    "channel_binding",
    "connect_timeout",
    "application_name",
    "options",
    "host",
    "port",
    "user",
    "password",
    "dbname",
}


@dataclass(frozen=True)
class Target:
    """Where to connect and how. `source` says where it came from, for messages."""

    host: str  # a host name, an IP address, or a unix-socket directory (starts with /)
    port: int
    user: str
    password: str | None
    database: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    channel_binding: str = "prefer"
    connect_timeout: float | None = None
    application_name: str | None = "sqlplan"
    options: str | None = None
    source: str = "DATABASE_URL"

    @property
    def is_unix_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    def url(self, *, mask_password: bool = True) -> str:
        """A libpq-style URL for this target; the password is masked unless asked otherwise."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + ("****" if mask_password else quote(self.password, safe=""))
        query: dict[str, str] = {}
        if self.is_unix_socket:
            netloc = f"{auth}@"
            query["host"] = self.host
            if self.port != 5432:
                query["port"] = str(self.port)
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{auth}@{host}" + ("" if self.port == 5432 else f":{self.port}")
        if self.sslmode != "prefer" and not self.is_unix_socket:
            query["sslmode"] = self.sslmode
        if self.sslrootcert:
            query["sslrootcert"] = self.sslrootcert
        if self.channel_binding != "prefer":
            query["channel_binding"] = self.channel_binding
        if self.options:
            query["options"] = self.options
        text = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
        return f"postgresql://{netloc}/{quote(self.database, safe='')}" + (
            f"?{text}" if text else ""
        )

    def describe(self) -> str:
        where = f"socket {self.socket_path}" if self.is_unix_socket else f"{self.host}:{self.port}"
        return f"database {self.database!r} as {self.user!r} on {where}"


def parse_url(url: str, *, source: str = "DATABASE_URL") -> Target:
    """Parse a postgres:// or postgresql:// URL the way libpq does for the parts we support."""
    masked = mask_url(url)
    try:
        parts = urlsplit(url)
        port_text = parts.port
    except ValueError as e:
        raise ConfigError(f"{source}: malformed URL {masked}: {e}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            f"{source}: the URL must start with postgresql:// or postgres://, got {masked}"
        )
    if parts.fragment:
        raise ConfigError(f"{source}: unexpected '#' fragment in {masked}")
    params: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in _QUERY_KEYS:
            close = difflib.get_close_matches(key, sorted(_QUERY_KEYS), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{source}: unknown connection parameter '{key}' in {masked}{hint}")
        params[key] = value

    host = unquote(parts.hostname or "") if parts.netloc else ""
    if parts.netloc and "[" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[-1].split("]")[0].lstrip("[")
    host = params.get("host", host)
    port = port_text or 5432
    if "port" in params:
        if not params["port"].isdigit():
            raise ConfigError(f"{source}: invalid port '{params['port']}'")
        port = int(params["port"])
    user = params.get("user", unquote(parts.username) if parts.username else "")
    password = params.get(
        "password", unquote(parts.password) if parts.password is not None else None
    )
    database = params.get("dbname", unquote(parts.path[1:]) if parts.path.startswith("/") else "")
    if not user:
        user = getpass.getuser()
    if not database:
        database = user
    if not host:
        host = _default_socket_dir(port)

    sslmode = params.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        raise ConfigError(
            f"{source}: invalid sslmode '{sslmode}' (expected one of {', '.join(SSLMODES)})"
        )
    channel_binding = params.get("channel_binding", "prefer")
    if channel_binding not in CHANNEL_BINDINGS:
        raise ConfigError(
            f"{source}: invalid channel_binding '{channel_binding}' "
            f"(expected one of {', '.join(CHANNEL_BINDINGS)})"
        )
    if channel_binding == "require" and sslmode == "disable":
        raise ConfigError(f"{source}: channel_binding=require needs TLS, but sslmode=disable")
    timeout = None
    if "connect_timeout" in params:
        try:
            timeout = float(params["connect_timeout"])
        except ValueError:
            raise ConfigError(
                f"{source}: invalid connect_timeout '{params['connect_timeout']}'"
            ) from None
        timeout = timeout if timeout > 0 else None  # libpq: zero or negative means wait forever
    return Target(
        host=host,
        port=port,
        user=user,
        password=password,
        database=database,
        sslmode=sslmode,
        sslrootcert=params.get("sslrootcert"),
        channel_binding=channel_binding,
        connect_timeout=timeout,
        application_name=params.get("application_name", "sqlplan"),
        options=params.get("options"),
        source=source,
    )


def _default_socket_dir(port: int) -> str:
    """libpq's default: a unix socket. Debian's server puts it in /var/run/postgresql."""
    for directory in ("/var/run/postgresql", "/tmp"):
        if os.path.exists(os.path.join(directory, f".s.PGSQL.{port}")):
            return directory
    return "localhost"


def mask_url(url: str) -> str:
    """The URL with any password replaced, for messages; never fails."""
    try:
        parts = urlsplit(url)
        if parts.password is not None:
            userinfo, _, hostinfo = parts.netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            url = parts._replace(netloc=f"{user}:****@{hostinfo}").geturl()
        if "password=" in url:
            head, _, query = url.partition("?")
            pairs = ["password=****" if p.startswith("password=") else p for p in query.split("&")]
            url = head + "?" + "&".join(pairs)
        return url
    except ValueError:
        return "<the URL>"


def resolve_url(cli_url: str | None, environ: Mapping[str, str], cwd: Path) -> Target | None:
    """Pick the URL: --database-url, then DATABASE_URL in the environment, then in ./.env.

    None means: no URL anywhere, use the embedded server.
    """
    if cli_url:
        return parse_url(cli_url, source="--database-url")
    if environ.get("DATABASE_URL"):
        return parse_url(environ["DATABASE_URL"], source="DATABASE_URL")
    dotenv_path = cwd / ".env"
    if dotenv_path.is_file():
        from dotenv import dotenv_values

        value = dotenv_values(dotenv_path).get("DATABASE_URL")
        if value:
            return parse_url(value, source=".env DATABASE_URL")
    return None


def ssl_context_for(target: Target) -> ssl.SSLContext | bool | None:
    """pg8000's ssl_context for an sslmode: False never TLS, None TLS if offered, else TLS only."""
    if target.is_unix_socket:
        return False  # libpq ignores sslmode on unix sockets
    mode = target.sslmode
    if mode == "disable":
        return False
    if mode in ("allow", "prefer"):
        return True if target.channel_binding == "require" else None
    if mode == "require" and not target.sslrootcert:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    # verify-ca, verify-full, and require with a root certificate (libpq treats it as verify-ca)
    root = target.sslrootcert or str(Path.home() / ".postgresql" / "root.crt")
    if root == "system":
        context = ssl.create_default_context()
    else:
        if not os.path.isfile(root):
            raise ConfigError(
                f"root certificate file {root!r} does not exist: give one with sslrootcert=FILE, "
                f"use the system's trusted roots with sslrootcert=system, or use sslmode=require"
            )
        context = ssl.create_default_context(cafile=root)
    context.check_hostname = mode == "verify-full"
    return context


def connect(target: Target) -> Connection:
    """Open a pg8000 native connection; errors become ConnectError, never with the password."""
    from pg8000.exceptions import DatabaseError, InterfaceError
    from pg8000.native import Connection

    connection_class = (
        _channel_binding_connection() if target.channel_binding == "require" else Connection
    )
    context = ssl_context_for(target)
    kwargs: dict[str, Any] = {
        "user": target.user,
        "password": target.password,
        "database": target.database,
        "application_name": target.application_name,
        "ssl_context": context,
    }
    if target.options:
        kwargs["startup_params"] = {"options": target.options}
    sock = None
    try:
        if target.is_unix_socket:
            kwargs["unix_sock"] = target.socket_path
            kwargs["timeout"] = target.connect_timeout
        else:
            sock = socket.create_connection(
                (target.host, target.port), timeout=target.connect_timeout
            )
            # pg8000 leaves Nagle on: every small message would wait for the previous ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            kwargs["sock"] = sock
            kwargs["host"] = target.host
            kwargs["port"] = target.port
        connection = connection_class(**kwargs)
    except DatabaseError as e:
        fields = e.args[0] if e.args and isinstance(e.args[0], dict) else {}
        code = fields.get("C", "")
        raise ConnectError(
            f"cannot connect to {target.describe()}: {fields.get('M', e)} [{code}]"
        ) from None
    except (InterfaceError, OSError) as e:
        if sock is not None:
            sock.close()
        cause = e.__cause__ or e
        raise ConnectError(f"cannot connect to {target.describe()}: {_reason(cause)}") from None
    # A query must not die of the connect timeout: reads wait as long as the server works.
    connection._usock.settimeout(None)
    return connection


_AUTH_OK, _AUTH_CLEARTEXT, _AUTH_MD5, _AUTH_SASL = 0, 3, 5, 10
_AUTH_NAMES = {_AUTH_CLEARTEXT: "a cleartext password", _AUTH_MD5: "an MD5 password"}


def _channel_binding_connection() -> type[Connection]:
    """A pg8000 Connection that refuses, before sending any secret, to authenticate without
    SCRAM-SHA-256-PLUS (libpq's channel_binding=require)."""
    from pg8000.exceptions import InterfaceError
    from pg8000.native import Connection

    class ChannelBindingConnection(Connection):  # type: ignore[misc]
        def handle_AUTHENTICATION_REQUEST(self, data: bytes, context: Any) -> None:
            code = int.from_bytes(data[:4], "big")
            refused = None
            if code == _AUTH_SASL:
                mechanisms = data[4:].split(b"\x00")
                if b"SCRAM-SHA-256-PLUS" not in mechanisms or not isinstance(
                    self._usock, ssl.SSLSocket
                ):
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

    return ChannelBindingConnection


def _reason(error: BaseException) -> str:
    if isinstance(error, socket.timeout):
        return "timed out"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed: {error.verify_message}"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def with_database(target: Target, database: str) -> Target:
    return replace(target, database=database)


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
