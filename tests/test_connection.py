"""The URL parser and TLS settings, against what libpq makes of the same strings."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from runner.connection import Target, mask_url, parse_url, resolve_url, ssl_context_for
from runner.errors import ConfigError


def test_neon_console_string() -> None:
    target = parse_url(
        "postgresql://alex:AbC123dEf@ep-cool-darkness-123456.us-east-2.aws.neon.tech/dbname"
        "?sslmode=require&channel_binding=require"
    )
    assert (target.host, target.port, target.user, target.password, target.database) == (
        "ep-cool-darkness-123456.us-east-2.aws.neon.tech", 5432, "alex", "AbC123dEf", "dbname",
    )  # fmt: skip
    assert (target.sslmode, target.channel_binding) == ("require", "require")
    context = ssl_context_for(target)
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE  # libpq's require: encrypt, don't verify


def test_percent_decoding_of_every_part() -> None:
    target = parse_url("postgres://us%40er:p%40ss%3Aw%2Fo%25rd%C3%A9@host:6543/my%20db")
    assert (target.user, target.password, target.database, target.port) == (
        "us@er", "p@ss:w/o%rdé", "my db", 6543,
    )  # fmt: skip


def test_ipv6_and_unix_socket_hosts() -> None:
    assert parse_url("postgresql://u@[::1]:5433/db").host == "::1"
    target = parse_url("postgresql://u@/db?host=/var/run/postgresql&port=5433")
    assert target.is_unix_socket
    assert target.socket_path == "/var/run/postgresql/.s.PGSQL.5433"


def test_query_parameters_override_the_authority() -> None:
    target = parse_url("postgresql://a:b@h/d?user=u2&password=p2&dbname=d2&port=7")
    assert (target.user, target.password, target.database, target.port) == ("u2", "p2", "d2", 7)


def test_defaults_follow_libpq() -> None:
    target = parse_url("postgresql://me@db.example")
    assert (target.port, target.database, target.sslmode, target.channel_binding) == (
        5432, "me", "prefer", "prefer",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h/db", "must start with postgresql://"),
        ("postgresql://h/db?foo=1", "unknown connection parameter 'foo'"),
        ("postgresql://h/db?sslmode=on", "invalid sslmode 'on'"),
        ("postgresql://h/db?channel_binding=yes", "invalid channel_binding 'yes'"),
        ("postgresql://h/db?sslmode=disable&channel_binding=require", "needs TLS"),
        ("postgresql://h/db?connect_timeout=soon", "invalid connect_timeout"),
        ("postgresql://h:99999999/db", "malformed URL"),
    ],
)
def test_rejected_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_url(url)


def test_sslmodes_map_to_tls_settings(tmp_path: Path) -> None:
    assert ssl_context_for(parse_url("postgresql://h/d?sslmode=disable")) is False
    assert ssl_context_for(parse_url("postgresql://h/d?sslmode=prefer")) is None
    with pytest.raises(ConfigError, match="root certificate file"):
        ssl_context_for(
            parse_url(f"postgresql://h/d?sslmode=verify-full&sslrootcert={tmp_path}/none.crt")
        )
    system = ssl_context_for(parse_url("postgresql://h/d?sslmode=verify-full&sslrootcert=system"))
    assert isinstance(system, ssl.SSLContext)
    assert system.check_hostname
    assert system.verify_mode == ssl.CERT_REQUIRED
    verify_ca = ssl_context_for(parse_url("postgresql://h/d?sslmode=verify-ca&sslrootcert=system"))
    assert isinstance(verify_ca, ssl.SSLContext)
    assert not verify_ca.check_hostname
    assert verify_ca.verify_mode == ssl.CERT_REQUIRED
    # unix sockets never use TLS, whatever sslmode says (as libpq)
    assert ssl_context_for(parse_url("postgresql://u@/d?host=/tmp&sslmode=require")) is False


def test_masking_hides_every_password_form() -> None:
    assert mask_url("postgresql://u:secret@h/d") == "postgresql://u:****@h/d"
    assert mask_url("postgresql://u@h/d?password=secret&sslmode=require") == (
        "postgresql://u@h/d?password=****&sslmode=require"
    )
    target = Target(host="h", port=5432, user="u", password="secret", database="d")
    assert "secret" not in target.url()
    assert target.url(mask_password=False) == "postgresql://u:secret@h/d"


def test_resolve_url_order(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=postgresql://dotenv@h/d\n")
    assert resolve_url(None, {}, tmp_path).user == "dotenv"  # type: ignore[union-attr]
    assert resolve_url(None, {"DATABASE_URL": "postgresql://env@h/d"}, tmp_path).user == "env"  # type: ignore[union-attr]
    flag = resolve_url("postgresql://flag@h/d", {"DATABASE_URL": "postgresql://env@h/d"}, tmp_path)
    assert flag is not None
    assert flag.user == "flag"
    assert resolve_url(None, {}, tmp_path / "nowhere") is None
