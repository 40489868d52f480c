"""URLs and PG* variables, read as libpq reads them; its documented examples and rejections."""

from __future__ import annotations

import getpass
import re
import ssl
from pathlib import Path

import pytest

from runner.connect.target import Target, mask_url, parse_target, resolve_target
from runner.connect.tls import ssl_context_for
from runner.errors import ConfigError

ME = getpass.getuser()
SOCKET_DIR = "/var/run/postgresql" if Path("/var/run/postgresql").is_dir() else "/tmp"

# libpq's documentation (section "Connection URIs"), each with what libpq makes of it:
# (host, port, user, password, dbname, extra parameters)
LIBPQ_EXAMPLES = [
    ("postgresql://", (SOCKET_DIR, 5432, ME, None, ME, {})),
    ("postgresql://localhost", ("localhost", 5432, ME, None, ME, {})),
    ("postgresql://localhost:5433", ("localhost", 5433, ME, None, ME, {})),
    ("postgresql://localhost/mydb", ("localhost", 5432, ME, None, "mydb", {})),
    ("postgresql://user@localhost", ("localhost", 5432, "user", None, "user", {})),
    ("postgresql://user:secret@localhost", ("localhost", 5432, "user", "secret", "user", {})),
    (
        "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
        (
            "localhost",
            5432,
            "other",
            None,
            "otherdb",
            {"connect_timeout": 10.0, "application_name": "myapp"},
        ),
    ),
    ("postgresql:///mydb?host=localhost&port=5433", ("localhost", 5433, ME, None, "mydb", {})),
    ("postgresql://[2001:db8::1234]/database", ("2001:db8::1234", 5432, ME, None, "database", {})),
    (
        "postgresql:///dbname?host=/var/lib/postgresql",
        ("/var/lib/postgresql", 5432, ME, None, "dbname", {}),
    ),
    (
        "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
        ("/var/lib/postgresql", 5432, ME, None, "dbname", {}),
    ),
    (
        "postgresql://user@localhost:5433/mydb?options=-c%20synchronous_commit%3Doff",
        ("localhost", 5433, "user", None, "mydb", {"options": "-c synchronous_commit=off"}),
    ),
    ("postgres://u@h/d?target_session_attrs=any", ("h", 5432, "u", None, "d", {})),
]


@pytest.mark.parametrize(("url", "expected"), LIBPQ_EXAMPLES, ids=[u for u, _ in LIBPQ_EXAMPLES])
def test_libpq_documented_examples(url: str, expected: tuple[object, ...]) -> None:
    target = parse_target(url)
    host, port, user, password, dbname, extra = expected
    assert (target.host, target.port, target.user, target.password, target.database) == (
        host, port, user, password, dbname,
    )  # fmt: skip
    for key, value in extra.items():  # type: ignore[attr-defined]
        assert getattr(target, key) == value


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h/db", "must start with postgresql://"),
        ("postgresql://localhost:abc", "invalid port 'abc'"),
        ("postgresql://localhost:99999", "invalid port '99999'"),
        ("postgresql://h/db?foo=1", "unknown connection parameter 'foo'"),
        (
            "postgresql://h/db?sslmod=require",
            "unknown connection parameter 'sslmod'; did you mean 'sslmode'?",
        ),
        ("postgresql://h/db?sslcrl=/x", "'sslcrl' is not supported by sqlplan"),
        ("postgresql://h/db?sslmode", "missing '=' after 'sslmode'"),
        ("postgresql://h/db?sslmode=on", "invalid sslmode 'on'"),
        ("postgresql://h/db?channel_binding=yes", "invalid channel_binding 'yes'"),
        ("postgresql://h/db?sslmode=disable&channel_binding=require", "needs TLS"),
        ("postgresql://h/db?connect_timeout=soon", "invalid connect_timeout 'soon'"),
        ("postgresql://[::1/db", "missing ']'"),
        ("postgresql://h1:5432,h2:5433/db", "several hosts"),
        ("postgresql://u:p%zz@h/db", "invalid percent-encoded token in the password"),
        ("postgresql://h/db?target_session_attrs=read-write", "only target_session_attrs=any"),
        ("postgresql://h/db#frag", "fragment"),
    ],
)
def test_rejected_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_target(url)


def test_neon_console_string() -> None:
    target = parse_target(
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname"
        "?sslmode=require&channel_binding=require"
    )
    assert (target.host, target.port, target.user, target.password, target.database) == (
        "ep-cool-darkness-123456.us-east-2.aws.neon.tech", 5432, "alex", "AbC123dEf", "dbname",
    )  # fmt: skip
    assert (target.sslmode, target.channel_binding, target.options) == ("require", "require", None)
    context = ssl_context_for(target)
    assert context.verify_mode == ssl.CERT_NONE  # libpq's require: encrypt, don't verify


def test_neon_endpoint_option_passes_through_only_when_given() -> None:
    target = parse_target("postgresql://a:b@ep-x.aws.neon.tech/db?options=endpoint%3Dep-x")
    assert target.options == "endpoint=ep-x"


def test_percent_decoding_of_every_part_without_lowercasing() -> None:
    target = parse_target("postgres://us%40er:p%40ss%3Aw%2Fo%25rd%C3%A9@Host.Example:6543/my%20db")
    assert (target.user, target.password, target.database, target.port, target.host) == (
        "us@er", "p@ss:w/o%rdé", "my db", 6543, "Host.Example",
    )  # fmt: skip


def test_query_parameters_override_the_authority() -> None:
    target = parse_target("postgresql://a:b@h/d?user=u2&password=p2&dbname=d2&port=7")
    assert (target.user, target.password, target.database, target.port) == ("u2", "p2", "d2", 7)


def test_connect_timeout_follows_libpq() -> None:
    assert parse_target("postgresql://h?connect_timeout=1").connect_timeout == 2.0
    assert parse_target("postgresql://h?connect_timeout=0").connect_timeout is None
    assert parse_target("postgresql://h?connect_timeout=-5").connect_timeout is None


def test_environment_fills_what_the_url_leaves_out() -> None:
    environ = {
        "PGPASSWORD": "from-env",
        "PGSSLMODE": "require",
        "PGUSER": "envuser",
        "PGAPPNAME": "app",
    }
    target = parse_target("postgresql://urluser@h/db?sslmode=verify-full", environ=environ)
    assert (target.user, target.password, target.sslmode, target.application_name) == (
        "urluser", "from-env", "verify-full", "app",
    )  # fmt: skip


def test_a_bad_environment_value_names_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"^PGSSLMODE: invalid sslmode 'sometimes'"):
        parse_target("postgresql://h/db", environ={"PGSSLMODE": "sometimes"})


def test_precedence_flag_env_dotenv_pg_embedded(tmp_path: Path) -> None:
    def user(cli: str | None, environ: dict[str, str]) -> str | None:
        target = resolve_target(cli, environ, tmp_path)
        return None if target is None else target.user

    assert user(None, {}) is None  # nothing anywhere: the embedded server
    (tmp_path / ".env").write_text("PGUSER=dotenv_pg\nPGHOST=db.example\n")
    assert user(None, {}) == "dotenv_pg"
    assert user(None, {"PGUSER": "env_pg"}) == "env_pg"  # the environment beats .env
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://dotenv_url@h/d\nPGUSER=dotenv_pg\n")
    assert user(None, {"PGUSER": "env_pg"}) == "dotenv_url"  # any URL beats PG*
    assert user(None, {"DATABASE_URL": "postgresql://env_url@h/d"}) == "env_url"
    assert user("postgresql://flag@h/d", {"DATABASE_URL": "postgresql://env_url@h/d"}) == "flag"
    # PG* variables only say where to connect when one of them locates a server
    (tmp_path / ".env").unlink()
    assert user(None, {"PGSSLMODE": "require", "PGPASSWORD": "x"}) is None


def test_sslmodes_and_certificates(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root certificate file"):
        ssl_context_for(
            parse_target(f"postgresql://h/d?sslmode=verify-full&sslrootcert={tmp_path}/none.crt")
        )
    system = ssl_context_for(
        parse_target("postgresql://h/d?sslmode=verify-full&sslrootcert=system")
    )
    assert system.check_hostname
    assert system.verify_mode == ssl.CERT_REQUIRED
    verify_ca = ssl_context_for(
        parse_target("postgresql://h/d?sslmode=verify-ca&sslrootcert=system")
    )
    assert not verify_ca.check_hostname
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED
    # require with a root certificate is verify-ca, as in libpq
    require = ssl_context_for(parse_target("postgresql://h/d?sslmode=require&sslrootcert=system"))
    assert require.verify_mode == ssl.CERT_REQUIRED
    assert not require.check_hostname
    with pytest.raises(ConfigError, match="client certificate file"):
        ssl_context_for(
            parse_target(f"postgresql://h/d?sslmode=require&sslcert={tmp_path}/none.crt")
        )
    key = tmp_path / "client.key"
    key.write_text("x")
    key.chmod(0o644)
    (tmp_path / "client.crt").write_text("x")
    with pytest.raises(ConfigError, match="has group or world access"):
        ssl_context_for(
            parse_target(
                f"postgresql://h/d?sslmode=require&sslcert={tmp_path}/client.crt&sslkey={key}"
            )
        )


def test_masking_hides_every_password_form() -> None:
    assert mask_url("postgresql://u:secret@h/d") == "postgresql://****@h/d"
    assert mask_url("postgresql://u:p@ss@h/d") == "postgresql://****@h/d"
    assert mask_url("postgresql://u@h/d?password=secret&sslmode=require") == (
        "postgresql://****@h/d?password=****&sslmode=require"
    )
    # mistyped URLs: the password may hold '/', '#' or '?', the scheme may be broken
    assert mask_url("postgresql://alex:ab/cd#ef@host/db") == "postgresql://****@host/db"
    assert mask_url("postgres:/alex:ab/cd@host/db") == "****@host/db"
    assert mask_url("postgres:alex:secret@host/db") == "****@host/db"
    assert mask_url("alex:secret@host/db") == "****@host/db"
    assert mask_url("postgresql://h/d?sslmode=require&PASSWORD=x y") == (
        "postgresql://h/d?sslmode=require&PASSWORD=**** y"
    )
    target = Target(host="h", port=5432, user="u", password="secret", database="d")
    assert "secret" not in target.url()
    assert target.url(mask_password=False) == "postgresql://u:secret@h/d"
