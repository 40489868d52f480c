"""Where to connect: --database-url / DATABASE_URL / .env / PG* variables -> a Target, as libpq reads them."""

from __future__ import annotations

import getpass
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote

from ..errors import ConfigError
from .sockets import Keepalives

SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
CHANNEL_BINDINGS = ("disable", "prefer", "require")

# Connection parameters sqlplan understands, by their libpq names.
SUPPORTED = (
    "host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey",
    "channel_binding", "connect_timeout", "application_name", "fallback_application_name",
    "options", "target_session_attrs", "sslnegotiation", "passfile",
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
    "pgbouncer",  # sqlplan's own (as other clients take it): the host is a transaction pooler
)  # fmt: skip
# libpq parameters that sqlplan does not implement: named in errors as such, not as typos.
UNSUPPORTED = (
    "hostaddr", "require_auth", "sslpassword", "sslcrl", "sslcrldir", "sslsni",
    "sslcompression", "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode",
    "krbsrvname", "gsslib", "gssdelegation", "service", "requirepeer", "replication",
    "client_encoding", "load_balance_hosts", "sslcertmode",
    "max_protocol_version", "min_protocol_version", "scram_client_key", "scram_server_key",
)  # fmt: skip
# libpq's environment variables for the supported parameters.
ENVIRONMENT = {
    "PGHOST": "host", "PGPORT": "port", "PGDATABASE": "dbname", "PGUSER": "user",
    "PGPASSWORD": "password", "PGSSLMODE": "sslmode", "PGSSLROOTCERT": "sslrootcert",
    "PGSSLCERT": "sslcert", "PGSSLKEY": "sslkey", "PGCHANNELBINDING": "channel_binding",
    "PGCONNECT_TIMEOUT": "connect_timeout", "PGAPPNAME": "application_name",
    "PGOPTIONS": "options", "PGTARGETSESSIONATTRS": "target_session_attrs",
    "PGSSLNEGOTIATION": "sslnegotiation", "PGPASSFILE": "passfile",
}  # fmt: skip
# Without any URL, these say "connect there" rather than "use the embedded server".
_LOCATING = ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")


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
    sslcert: str | None = None
    sslkey: str | None = None
    channel_binding: str = "prefer"
    sslnegotiation: str = "postgres"  # or "direct": TLS from the first byte (PostgreSQL 17+)
    connect_timeout: float | None = None
    application_name: str | None = "sqlplan"
    options: str | None = None
    source: str = "DATABASE_URL"
    password_from: str | None = None  # where the password came from, when not the URL or PG*
    pooler: bool = False  # a transaction-mode pooler: Neon's -pooler host, or pgbouncer=true
    keepalives: Keepalives = field(default_factory=Keepalives)  # keepalives*, tcp_user_timeout
    notes: tuple[str, ...] = field(default=(), compare=False)  # warnings to show once

    @property
    def is_unix_socket(self) -> bool:
        return self.host.startswith("/")

    @property
    def socket_path(self) -> str:
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    def url(self, *, mask_password: bool = True) -> str:
        """A libpq URL for this target; the password is masked unless asked otherwise."""
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
        for key in ("sslrootcert", "sslcert", "sslkey", "options"):
            value = getattr(self, key)
            if value:
                query[key] = value
        if self.channel_binding != "prefer":
            query["channel_binding"] = self.channel_binding
        if self.sslnegotiation != "postgres":
            query["sslnegotiation"] = self.sslnegotiation
        if self.connect_timeout is not None:
            query["connect_timeout"] = f"{self.connect_timeout:g}"
        for key, value, default in _keepalive_params(self.keepalives):
            if value != default:
                query[key] = str(value)
        text = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
        return f"postgresql://{netloc}/{quote(self.database, safe='')}" + (
            f"?{text}" if text else ""
        )

    def describe(self) -> str:
        where = f"socket {self.socket_path}" if self.is_unix_socket else f"{self.host}:{self.port}"
        return f"database {self.database!r} as {self.user!r} on {where}"


# A parameter's value and where it came from ("DATABASE_URL", "PGSSLMODE", ...), for errors.
Params = dict[str, tuple[str, str]]

_URL = re.compile(
    r"^(?P<scheme>[^:/?#]+)://(?P<netloc>[^/?#]*)(?:/(?P<path>[^?#]*))?(?:\?(?P<query>[^#]*))?(?P<fragment>#.*)?$",
    re.S,
)
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode(text: str, what: str, source: str) -> str:
    """Percent-decode strictly, as libpq does: a stray % is an error, bytes are UTF-8. The
    text is shown in the error unless it is (or may be) a password."""
    if _BAD_PERCENT.search(text):
        shown = "" if what in ("password", "user name") or "password" in what else f": {text!r}"
        raise ConfigError(f"{source}: invalid percent-encoded token in the {what}{shown}")
    raw = re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        if raw == text:
            return text  # non-ASCII typed as is
        raise ConfigError(f"{source}: the {what} is not valid UTF-8 once decoded") from None


def parse_url(url: str, *, source: str = "DATABASE_URL") -> Params:
    """The parameters a postgres:// or postgresql:// URL sets, decoded; nothing defaulted."""
    masked = mask_url(url)
    match = _URL.match(url.strip())
    if not match or match.group("scheme") not in ("postgres", "postgresql"):
        raise ConfigError(
            f"{source}: the URL must start with postgresql:// or postgres://, got {masked}"
        )
    if match.group("fragment"):
        raise ConfigError(f"{source}: unexpected '#' fragment in {masked}")
    params: Params = {}

    def put(key: str, value: str) -> None:
        params[key] = (value, source)

    netloc = match.group("netloc")
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            put("user", _decode(user, "user name", source))
        if colon:
            put("password", _decode(password, "password", source))
    if "," in hostport:
        raise ConfigError(f"{source}: several hosts in one URL are not supported: {masked}")
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket:
            raise ConfigError(f"{source}: missing ']' after the IPv6 address in {masked}")
        if rest and not rest.startswith(":"):
            raise ConfigError(f"{source}: unexpected {rest!r} after the IPv6 address in {masked}")
        port = rest[1:]
    else:
        host, _, port = hostport.partition(":")
    if host:
        put("host", _decode(host, "host", source))
    if port:
        put("port", port)
    if match.group("path"):
        put("dbname", _decode(match.group("path"), "database name", source))
    for pair in filter(None, (match.group("query") or "").split("&")):
        key, equals, value = pair.partition("=")
        if not equals:
            raise ConfigError(
                f"{source}: missing '=' after {key!r} in the URL's parameters: {masked}"
            )
        key = _decode(key, "parameter name", source)
        _check_known(key, source)
        put(key, _decode(value, f"value of {key}", source))
    return params


def _check_known(key: str, source: str) -> None:
    if key in SUPPORTED:
        return
    if key in UNSUPPORTED:
        raise ConfigError(f"{source}: the connection parameter '{key}' is not supported by sqlplan")
    import difflib  # for a mistyped parameter only

    close = difflib.get_close_matches(key, SUPPORTED, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise ConfigError(f"{source}: unknown connection parameter '{key}'{hint}")


def environment_params(environ: Mapping[str, str]) -> Params:
    return {param: (environ[var], var) for var, param in ENVIRONMENT.items() if environ.get(var)}


def make_target(params: Params, source: str) -> Target:
    """Apply libpq's defaults and check every value, naming where a bad one came from."""

    def get(key: str) -> str | None:
        return params[key][0] if key in params else None

    def bad(key: str, message: str) -> ConfigError:
        return ConfigError(f"{params[key][1]}: {message}")

    port_text = get("port") or "5432"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise bad("port", f"invalid port {port_text!r}")
    port = int(port_text)
    user = get("user") or getpass.getuser()
    host = get("host") or _default_host(port)
    sslmode = get("sslmode") or "prefer"
    if sslmode not in SSLMODES:
        raise bad("sslmode", f"invalid sslmode {sslmode!r} (expected one of {', '.join(SSLMODES)})")
    channel_binding = get("channel_binding") or "prefer"
    if channel_binding not in CHANNEL_BINDINGS:
        raise bad(
            "channel_binding",
            f"invalid channel_binding {channel_binding!r} (expected one of {', '.join(CHANNEL_BINDINGS)})",
        )
    if channel_binding == "require" and sslmode == "disable":
        raise bad("channel_binding", "channel_binding=require needs TLS, but sslmode=disable")
    timeout = None
    if get("connect_timeout"):
        text = get("connect_timeout") or ""
        if not re.fullmatch(r"-?\d+", text.strip()):
            raise bad("connect_timeout", f"invalid connect_timeout {text!r} (whole seconds)")
        # libpq: zero or negative waits forever; a timeout below 2 s is raised to 2 s
        seconds = int(text)
        timeout = float(max(seconds, 2)) if seconds > 0 else None
    if (get("target_session_attrs") or "any") != "any":
        raise bad(
            "target_session_attrs",
            "only target_session_attrs=any is supported (sqlplan connects to one host)",
        )
    sslnegotiation = get("sslnegotiation") or "postgres"
    if sslnegotiation not in ("postgres", "direct"):
        raise bad(
            "sslnegotiation",
            f"invalid sslnegotiation {sslnegotiation!r} (expected postgres or direct)",
        )
    if sslnegotiation == "direct" and sslmode not in ("require", "verify-ca", "verify-full"):
        raise bad(
            "sslnegotiation",
            f"sslnegotiation=direct needs sslmode=require or stronger, not {sslmode}: a direct "
            "TLS connection has no plaintext to fall back to (as libpq)",
        )
    database = get("dbname") or user
    password = get("password")
    password_from: str | None = None
    notes: tuple[str, ...] = ()
    if password is None:
        passfile = get("passfile") or os.path.join(os.path.expanduser("~"), ".pgpass")
        password, password_from, notes = password_from_file(
            passfile, host=host, port=port, database=database, user=user
        )
    return Target(
        host=host,
        port=port,
        user=user,
        password=password,
        password_from=password_from,
        notes=notes,
        database=database,
        sslmode=sslmode,
        sslrootcert=get("sslrootcert"),
        sslcert=get("sslcert"),
        sslkey=get("sslkey"),
        channel_binding=channel_binding,
        sslnegotiation=sslnegotiation,
        connect_timeout=timeout,
        application_name=get("application_name") or get("fallback_application_name") or "sqlplan",
        options=get("options"),
        source=source,
        pooler=_pooler(host, get("pgbouncer"), source),
        keepalives=_keepalives(get, bad),
    )


def _keepalive_params(k: Keepalives) -> tuple[tuple[str, int, int], ...]:
    """(libpq's name, the value, sqlplan's default) of each keepalive parameter."""
    d = Keepalives()
    return (
        ("keepalives", int(k.enabled), int(d.enabled)),
        ("keepalives_idle", k.idle, d.idle),
        ("keepalives_interval", k.interval, d.interval),
        ("keepalives_count", k.count, d.count),
        ("tcp_user_timeout", k.user_timeout_ms, d.user_timeout_ms),
    )


def _keepalives(
    get: Callable[[str], str | None], bad: Callable[[str, str], ConfigError]
) -> Keepalives:
    """libpq's keepalive parameters: whole numbers, 0 for the system's default (keepalives: 0
    turns them off)."""
    values: dict[str, int] = {}
    units = {"keepalives_idle": "seconds", "keepalives_interval": "seconds",
             "keepalives_count": "probes", "tcp_user_timeout": "milliseconds", "keepalives": "0 or 1"}  # fmt: skip
    for key, unit in units.items():
        text = get(key)
        if text is None:
            continue
        if not re.fullmatch(r"\s*\d+\s*", text) or int(text) > 2**31 - 1:
            raise bad(key, f"invalid {key} {text!r} ({unit}, a whole number)")
        values[key] = int(text)
    d = Keepalives()
    return Keepalives(
        enabled=values.get("keepalives", 1) != 0,
        idle=values.get("keepalives_idle", d.idle),
        interval=values.get("keepalives_interval", d.interval),
        count=values.get("keepalives_count", d.count),
        user_timeout_ms=values.get("tcp_user_timeout", d.user_timeout_ms),
    )


def _pooler(host: str, flag: str | None, source: str) -> bool:
    """Neon's pooled endpoint (its first label ends in -pooler), or pgbouncer=true."""
    if flag is not None:
        if flag.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            raise ConfigError(f"{source}: pgbouncer must be true or false, not {flag!r}")
        return flag.lower() in ("true", "1", "yes", "on")
    return not host.startswith("/") and host.split(".", 1)[0].endswith("-pooler")


def password_from_file(
    passfile: str, *, host: str, port: int, database: str, user: str
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(password, where it came from, warnings) from a libpq password file: lines of
    hostname:port:database:username:password, `*` matching anything, `\\` escaping `:` and `\\`,
    the first matching line winning. As libpq, a file others can read is ignored, with a
    warning; the default socket directory matches `localhost`."""
    try:
        info = os.stat(passfile)
    except OSError:
        return None, None, ()
    if not stat.S_ISREG(info.st_mode):
        return None, None, (f"password file {passfile!r} is not a plain file",)
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            None,
            None,
            (
                f"password file {passfile!r} has group or world access; permissions should be "
                "u=rw (0600) or less: it is ignored",
            ),
        )
    try:
        with open(passfile, encoding="utf-8", errors="replace") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None, None, ()
    wanted_host = "localhost" if host.startswith("/") and host == _default_host(port) else host
    wanted = (wanted_host, str(port), database, user)
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = _passfile_fields(line)
        if len(fields) < 5:
            continue
        if all(f in ("*", w) for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4], f"{passfile} line {number}", ()
    return None, None, ()


def _passfile_fields(line: str) -> list[str]:
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for char in line:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":" and len(fields) < 4:
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
    fields.append("".join(current))
    return fields


def _default_host(port: int) -> str:
    """libpq's default is a unix socket in its compiled-in directory: Debian's, else /tmp."""
    return "/var/run/postgresql" if os.path.isdir("/var/run/postgresql") else "/tmp"


def parse_target(
    url: str, *, source: str = "DATABASE_URL", environ: Mapping[str, str] | None = None
) -> Target:
    """A URL, with libpq's environment variables filling what it leaves out."""
    params = environment_params(environ or {})
    params.update(parse_url(url, source=source))
    return make_target(params, source)


def mask_url(url: str) -> str:
    """The URL with anything that may hold a password replaced, for messages; never fails.

    A mistyped URL cannot be trusted to say where its password ends (`alex:ab/cd#ef@host`
    holds `/` and `#`; `postgres:/alex:pw@host` lacks a slash), so everything from the scheme
    separator (or the start) to the last '@' is masked, user name included, and every
    `password=` parameter; a URL with no '@' keeps its text but those parameters.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    _, at, after = rest.rpartition("@")
    if at:
        rest = "****@" + after
    masked = scheme + sep + rest
    return re.sub(r"((?:^|[?&;\s])password\s*=\s*)[^&#\s]*", r"\1****", masked, flags=re.I)


def resolve_target(cli_url: str | None, environ: Mapping[str, str], cwd: Path) -> Target | None:
    """Where `sqlplan run` connects; None means the embedded server.

    In order: --database-url, DATABASE_URL in the environment, DATABASE_URL in ./.env, then
    libpq's PG* variables (environment first, then ./.env). PG* variables also fill in what a URL
    leaves out, as they do for libpq.
    """
    dotenv: dict[str, str] = {}
    dotenv_path = cwd / ".env"
    if dotenv_path.is_file():
        from dotenv import dotenv_values

        dotenv = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None}
    effective = {**dotenv, **environ}  # a real environment variable wins over .env
    for url, source in (
        (cli_url, "--database-url"),
        (environ.get("DATABASE_URL"), "DATABASE_URL"),
        (dotenv.get("DATABASE_URL"), ".env DATABASE_URL"),
    ):
        if url:
            return parse_target(url, source=source, environ=effective)
    if any(effective.get(var) for var in _LOCATING):
        return make_target(environment_params(effective), "PG* environment")
    return None


def with_database(target: Target, database: str) -> Target:
    return replace(target, database=database)
