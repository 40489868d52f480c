"""Connections against real servers: every sslmode, channel binding, client certificates, SNI,
retries. The SSL server is Debian's PostgreSQL with a CA made at test time; plaintext is refused
there. The plain server has no TLS at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, split_fingerprint
from hypothesis import given, settings
from hypothesis import strategies as st
from servers import (
    ENCODED,
    PASSWORD,
    Certificates,
    Cluster,
    FakeServer,
    Pooler,
    free_port,
    proxy,
    remove_cluster,
    require_debian_postgres,
    start_cluster,
    start_pgbouncer,
    starting_up_then_proxy,
    stop_pgbouncer,
    tls_endpoint_asking_for_a_password,
)

from runner.connect.connection import RetryPolicy, connect
from runner.connect.target import Target, parse_target
from runner.errors import ConfigError, ConnectError
from runner.plan.cache import known_valid


@pytest.fixture(scope="module")
def plain_server() -> Iterator[Cluster]:
    cluster = start_cluster(require_debian_postgres(), tls=None)
    yield cluster
    remove_cluster(cluster)


def _session(target: Target) -> tuple[bool, str | None]:
    """(is the connection TLS, the SASL mechanism used) as the server and client see them."""
    con = connect(target)
    try:
        ssl_in_use = con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")[0][0]
        auth = getattr(con, "auth", None)
        return bool(ssl_in_use), (auth.mechanism_name if auth is not None else None)
    finally:
        con.close()


# sslmode against a server that requires TLS, and one without TLS: libpq's table.
SSL_SERVER = {
    "disable": "no encryption",  # refused by `host ... reject`
    "allow": True,  # plaintext refused, then TLS
    "prefer": True,
    "require": True,
}
PLAIN_SERVER = {
    "disable": False,
    "allow": False,
    "prefer": False,  # TLS refused by the server, then plaintext
    "require": "does not accept TLS",
    "verify-ca": "does not accept TLS",
    "verify-full": "does not accept TLS",
}


@pytest.mark.parametrize(("mode", "expected"), SSL_SERVER.items())
def test_sslmode_against_an_ssl_only_server(
    ssl_server: Cluster, mode: str, expected: object
) -> None:
    target = ssl_server.target("scram", sslmode=mode)
    if isinstance(expected, str):
        with pytest.raises(ConnectError, match=expected):
            _session(target)
    else:
        assert _session(target)[0] is expected


@pytest.mark.parametrize(("mode", "expected"), PLAIN_SERVER.items())
def test_sslmode_against_a_server_without_tls(
    plain_server: Cluster, certs: Certificates, mode: str, expected: object
) -> None:
    target = plain_server.target(
        "scram", sslmode=mode, sslrootcert=str(certs.ca) if mode.startswith("verify") else None
    )
    if isinstance(expected, str):
        with pytest.raises(ConnectError, match=expected):
            _session(target)
    else:
        assert _session(target)[0] is expected


def test_verify_ca_and_verify_full(ssl_server: Cluster, certs: Certificates) -> None:
    right, wrong = str(certs.ca), str(certs.wrong_ca)
    assert _session(ssl_server.target("scram", sslmode="verify-ca", sslrootcert=right))[0] is True
    assert _session(ssl_server.target("scram", sslmode="verify-full", sslrootcert=right))[0] is True
    # an IP address the certificate does not name: verify-ca accepts, verify-full refuses
    by_ip = ssl_server.target("scram", host="127.0.0.1", sslrootcert=right)
    assert _session(replace(by_ip, sslmode="verify-ca"))[0] is True
    with pytest.raises(
        ConnectError, match="TLS certificate verification failed: IP address mismatch"
    ):
        _session(replace(by_ip, sslmode="verify-full"))
    for mode in ("verify-ca", "verify-full", "require"):  # require + sslrootcert = verify-ca
        with pytest.raises(ConnectError, match="TLS certificate verification failed"):
            _session(ssl_server.target("scram", sslmode=mode, sslrootcert=wrong))


CHANNEL_BINDING = [
    # role (its auth method), channel_binding, expected mechanism or refusal
    ("scram", "require", "SCRAM-SHA-256-PLUS"),
    ("scram", "prefer", "SCRAM-SHA-256-PLUS"),
    ("scram", "disable", "SCRAM-SHA-256"),
    ("md5user", "require", "asked for an MD5 password; no password was sent"),
    ("md5user", "prefer", None),
    ("clear", "require", "asked for a cleartext password; no password was sent"),
    ("clear", "prefer", None),
    ("trusty", "require", "authenticated the client without channel binding"),
    ("trusty", "prefer", None),
]


@pytest.mark.parametrize(("role", "binding", "expected"), CHANNEL_BINDING)
def test_channel_binding_over_tls(
    ssl_server: Cluster, role: str, binding: str, expected: str | None
) -> None:
    target = ssl_server.target(role, sslmode="require", channel_binding=binding)
    if expected is not None and not expected.startswith("SCRAM"):
        with pytest.raises(
            ConnectError, match=f"channel_binding=require, but the server {expected}"
        ):
            _session(target)
    else:
        assert _session(target) == (True, expected)


def test_channel_binding_without_tls(plain_server: Cluster) -> None:
    # plain SCRAM over a plaintext connection: fine unless channel binding is required
    assert _session(plain_server.target("scram", sslmode="disable")) == (False, "SCRAM-SHA-256")
    with pytest.raises(ConnectError, match="does not accept TLS"):
        _session(plain_server.target("scram", channel_binding="require"))
    with pytest.raises(ConfigError, match="needs TLS"):
        parse_target(plain_server.url("scram", "sslmode=disable&channel_binding=require"))


def _against_password_endpoint(certs: Certificates, **settings: Any) -> tuple[dict[str, Any], str]:
    """Connect to a TLS endpoint that asks for a cleartext password; what it saw, what we said."""
    seen: dict[str, Any] = {}
    with FakeServer(tls_endpoint_asking_for_a_password(certs, seen)) as fake:
        values: dict[str, Any] = {"host": "localhost", "user": "u", "password": PASSWORD, "database": "d",
                                  "sslmode": "require", **settings}  # fmt: skip
        with pytest.raises(ConnectError) as raised:
            connect(Target(port=fake.port, **values))
    return seen, str(raised.value)


def test_no_password_is_sent_when_channel_binding_is_required(certs: Certificates) -> None:
    seen, error = _against_password_endpoint(certs, channel_binding="require")
    assert "no password was sent" in error
    assert seen["next"] in (b"", b"X")  # hung up or Terminate: no PasswordMessage ('p')
    # the same endpoint does get a password from a client that does not require binding
    seen, _ = _against_password_endpoint(certs)
    assert seen["next"] == b"p"


def test_sni_carries_the_host_name(certs: Certificates) -> None:
    assert _against_password_endpoint(certs)[0]["sni"] == "localhost"
    # no SNI for an IP address, as TLS says
    assert _against_password_endpoint(certs, host="127.0.0.1")[0]["sni"] is None


def test_client_certificate_for_a_cert_hba_line(
    ssl_server: Cluster, certs: Certificates, tmp_path: Path
) -> None:
    key = tmp_path / "client.key"
    key.write_bytes(certs.client_key.read_bytes())
    key.chmod(0o600)
    target = ssl_server.target("certuser", password=None, sslmode="verify-full", sslrootcert=str(certs.ca),
                               sslcert=str(certs.client_cert), sslkey=str(key))  # fmt: skip
    assert _session(target)[0] is True
    with pytest.raises(ConnectError, match="certificate"):
        _session(replace(target, sslcert=None, sslkey=None))


def test_neon_style_url_through_the_cli(cli: Cli, ssl_server: Cluster) -> None:
    cli.write("tls.yaml", "sqlplan: 1\nname: tls\non_connect: connected\nsteps:\n"
              "  - query: SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\n    row: 'ssl={ssl}'\n")  # fmt: skip
    url = ssl_server.url("scram", "sslmode=require&channel_binding=require")
    result = cli("run", "tls.yaml", env={"DATABASE_URL": url})
    assert (result.exit_code, result.stdout, result.stderr) == (0, "connected\nssl=true\n", "")
    assert "p%40ss" in ENCODED  # the password has @, :, /, % and a non-ASCII letter


def test_wrong_password_fails_at_once_without_the_password(cli: Cli, ssl_server: Cluster) -> None:
    cli.write("ok.yaml", "sqlplan: 1\nname: ok\nsteps:\n  - batch: SELECT 1\n")
    url = ssl_server.url("scram", "sslmode=require").replace(ENCODED, "wrong-secret")
    result = cli("run", "ok.yaml", "--connect-retries", "3", env={"DATABASE_URL": url})
    assert result.exit_code == 5
    assert result.stderr == (
        f"sqlplan: error: cannot connect to database 'postgres' as 'scram' on localhost:{ssl_server.port}: "
        'password authentication failed for user "scram" [28P01]\n'
    )  # one line: no retry


def test_a_server_that_is_starting_up_is_retried(plain_server: Cluster) -> None:
    notes: list[str] = []
    with FakeServer(starting_up_then_proxy(2, plain_server.port)) as fake:
        target = plain_server.target("scram", port=fake.port, sslmode="disable")
        con = connect(target, RetryPolicy(retries=3, base_delay=0.05), notes.append)
        try:
            assert con.run("SELECT 1") == [[1]]
        finally:
            con.close()
        assert fake.connections == 3
    assert len(notes) == 2
    assert notes[0].startswith(
        "connection attempt 1 of 4 to database 'postgres' as 'scram' on localhost:"
    )
    assert "failed (the database system is starting up [57P03]); retrying in " in notes[0]


def test_an_unreachable_server_exhausts_its_retries_within_the_bound(tmp_path: Path) -> None:
    plan = tmp_path / "ok.yaml"
    plan.write_text("sqlplan: 1\nname: ok\nsteps:\n  - batch: SELECT 1\n")
    env = {
        **os.environ,
        "DATABASE_URL": "postgresql://u:secret@127.0.0.1:9/d",
        "SQLPLAN_CONNECT_RETRIES": "2",
    }
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runner", "run", str(plan)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    elapsed = time.monotonic() - start
    lines = split_fingerprint(result.stderr)[0].splitlines()
    assert result.returncode == 5
    assert [line.split(" failed ")[0] for line in lines[:2]] == [
        "sqlplan: connection attempt 1 of 3 to database 'd' as 'u' on 127.0.0.1:9",
        "sqlplan: connection attempt 2 of 3 to database 'd' as 'u' on 127.0.0.1:9",
    ]
    assert (
        lines[2]
        == "sqlplan: error: cannot connect to database 'd' as 'u' on 127.0.0.1:9: Connection refused (after 3 attempts)"
    )
    assert elapsed < 0.25 + 0.5 + 5  # the two backoff ceilings, and start-up
    assert "secret" not in result.stderr


def test_a_server_that_comes_up_after_two_refused_attempts(plain_server: Cluster) -> None:
    port = free_port()  # nothing listens there yet: connections are refused
    notes: list[str] = []
    listener: list[FakeServer] = []

    def note(text: str) -> None:
        notes.append(text)
        if len(notes) == 2:  # the server comes up while the client waits to retry
            listener.append(FakeServer(proxy(plain_server.port), port=port).__enter__())

    try:
        con = connect(
            plain_server.target("scram", port=port, sslmode="disable"),
            RetryPolicy(retries=4, base_delay=0.05),
            note,
        )
        try:
            assert con.run("SELECT 1") == [[1]]
        finally:
            con.close()
    finally:
        for server in listener:
            server.__exit__()
    assert [n.split(" failed ")[1].split(";")[0] for n in notes] == ["(Connection refused)"] * 2


def test_tcp_nodelay_is_set(ssl_server: Cluster) -> None:
    con = connect(ssl_server.target("scram", sslmode="require"))
    try:
        assert con._usock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        con.close()


POOLED_PLAN = """\
sqlplan: 1
name: pooled
on_connect: connected
steps:
  - batch: |
      DROP TABLE IF EXISTS t;
      CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL);
  - execute: INSERT INTO t VALUES ($1, $2)
    params: [1, one]
    after: "single: {count}"
  - bulk_insert: INSERT INTO t VALUES ($1, $2)
    rows:
{rows}
    after: "bulk: {{count}}"
  - bulk_insert: INSERT INTO t (id, name) VALUES ($1, $2)
    rows:
      - [100000, copied]
      - [100001, copied too]
    after: "copy: {{count}}"
  - batch: BEGIN
  - execute: UPDATE t SET name = $1 WHERE id <= $2
    params: [changed, 10]
    after: "updated: {{count}}"
  - batch: COMMIT
  - query: SELECT count(*) AS n, count(*) FILTER (WHERE name = $1) AS changed FROM t
    params: [changed]
    row: "rows: {{n}}, changed: {{changed}}"
"""


@pytest.fixture(scope="module")
def pooler(plain_server: Cluster) -> Iterator[Pooler]:
    admin = connect(plain_server.admin_target())
    try:
        admin.run("CREATE DATABASE pooled OWNER trusty")
    finally:
        admin.close()
    started = start_pgbouncer(plain_server, "pooled")
    if started is None:
        message = "no pgbouncer: apt-get install pgbouncer (as .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield started
    stop_pgbouncer(started)


def test_every_step_kind_works_through_a_transaction_pooler(cli: Cli, pooler: Pooler) -> None:
    total = 2500  # more than one bulk chunk: the explicit-transaction path
    rows = "\n".join(f"      - [{i}, row{i}]" for i in range(2, total + 2))
    cli.write(
        "pooled.yaml", POOLED_PLAN.replace("{rows}", rows).replace("{{", "{").replace("}}", "}")
    )
    url = f"postgresql://trusty@127.0.0.1:{pooler.port}/pooled?sslmode=disable"
    result = cli("run", "pooled.yaml", env={"DATABASE_URL": url})
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        f"connected\nsingle: 1\nbulk: {total}\ncopy: 2\nupdated: 10\nrows: {total + 3}, changed: 10\n"
    )
    # a failing bulk insert through the pooler still leaves none of its rows
    failing = (
        POOLED_PLAN.replace("{rows}", rows + "\n      - [5, duplicate]")
        .replace("{{", "{")
        .replace("}}", "}")
    )
    cli.write("failing.yaml", failing)
    result = cli("run", "failing.yaml", env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert f"  row: {total + 1} (at failing.yaml:" in result.stderr
    con = connect(parse_target(url))
    try:
        assert con.run("SELECT count(*) FROM t") == [[1]]  # the single insert; no bulk row
    finally:
        con.close()


def test_a_rehearsal_works_through_a_transaction_pooler(cli: Cli, pooler: Pooler) -> None:
    """A rehearsal is one transaction, so a transaction pooler keeps it on one server connection:
    its locks are read from the backend that took them, and it leaves nothing behind."""
    url = f"postgresql://trusty@127.0.0.1:{pooler.port}/pooled?sslmode=disable"
    con = connect(parse_target(url))
    try:
        con.run("CREATE TABLE rehearsed (id int PRIMARY KEY)")
        con.run("INSERT INTO rehearsed SELECT generate_series(1, 20)")
    finally:
        con.close()
    cli.write(
        "rehearse.yaml",
        "sqlplan: 1\nname: r\nsteps:\n"
        "  - batch: ALTER TABLE rehearsed ADD COLUMN b float8 DEFAULT random()\n"
        "  - execute: DELETE FROM rehearsed WHERE id > $1\n    params: [5]\n",
    )
    for _ in range(2):  # the pooler's server connection is clean for the next client
        result = cli("rehearse", "rehearse.yaml", "--format", "json", env={"DATABASE_URL": url})
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        alter, delete = report["statements"]
        assert alter["locks"][0] == {"relation": "rehearsed", "mode": "ACCESS EXCLUSIVE"}
        assert alter["rewritten"] == ["rehearsed"]
        assert delete["rows"] == 15
    con = connect(parse_target(url))
    try:
        assert con.run("SELECT count(*) FROM rehearsed") == [[20]]
        assert con.run(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'rehearsed'::regclass AND attname = 'b'"
        ) == [[0]]
    finally:
        con.close()


def test_tls_verification_failures_are_not_retried(
    cli: Cli, ssl_server: Cluster, certs: Certificates
) -> None:
    cli.write("ok.yaml", "sqlplan: 1\nname: ok\nsteps:\n  - batch: SELECT 1\n")
    url = ssl_server.url("scram", f"sslmode=verify-full&sslrootcert={certs.wrong_ca}")
    result = cli("run", "ok.yaml", "--connect-retries", "3", env={"DATABASE_URL": url})
    assert result.exit_code == 5
    assert result.stderr.count("\n") == 1  # the error alone, no "retrying" line
    assert result.stderr.endswith(
        "TLS certificate verification failed: self-signed certificate in certificate chain\n"
    )


# --- libpq fidelity: password files, no password, certificate files, require + root.crt -------

OK = "sqlplan: 1\nname: ok\non_connect: connected\nsteps:\n  - batch: SELECT 1\n"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home


@pytest.mark.parametrize("role", ["scram", "md5user", "clear"])
def test_no_password_and_a_server_that_asks_for_one(
    cli: Cli, plain_server: Cluster, tmp_path: Path, role: str
) -> None:
    cli.write("ok.yaml", OK)
    url = f"postgresql://{role}@localhost:{plain_server.port}/postgres?sslmode=disable"
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(_home(tmp_path))})
    assert result.exit_code == 5
    assert result.stderr == (
        f"sqlplan: error: cannot connect to database 'postgres' as '{role}' on localhost:"
        f"{plain_server.port}: the server asks for a password, but none was given: put it in "
        "the URL (postgresql://user:PASSWORD@host/db, percent-encoded), in PGPASSWORD, or in "
        "~/.pgpass (or the file PGPASSFILE or passfile= names; "
        "hostname:port:database:username:password, mode 0600)\n"
    )


def _pgpass_line(port: int, password: str) -> str:
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"# a comment\nother:*:*:*:nope\nlocalhost:{port}:*:scram:{escaped}\n"


def test_a_password_from_pgpass(cli: Cli, plain_server: Cluster, tmp_path: Path) -> None:
    cli.write("ok.yaml", OK)
    home = _home(tmp_path)
    pgpass = home / ".pgpass"
    pgpass.write_text(_pgpass_line(plain_server.port, PASSWORD))
    pgpass.chmod(0o600)
    url = f"postgresql://scram@localhost:{plain_server.port}/postgres?sslmode=disable"
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(home)})
    assert (result.exit_code, result.stdout, result.stderr) == (0, "connected\n", "")
    # PGPASSFILE names another file; passfile= in the URL wins over it
    other = tmp_path / "elsewhere"
    other.write_text(_pgpass_line(plain_server.port, PASSWORD))
    other.chmod(0o600)
    pgpass.unlink()
    result = cli(
        "run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(home), "PGPASSFILE": str(other)}
    )
    assert (result.exit_code, result.stderr) == (0, "")
    result = cli(
        "run", "ok.yaml", env={"DATABASE_URL": url + f"&passfile={other}", "HOME": str(home)}
    )
    assert (result.exit_code, result.stderr) == (0, "")


def test_a_pgpass_others_can_read_is_ignored_with_a_warning(
    cli: Cli, plain_server: Cluster, tmp_path: Path
) -> None:
    cli.write("ok.yaml", OK)
    home = _home(tmp_path)
    (home / ".pgpass").write_text(_pgpass_line(plain_server.port, PASSWORD))
    (home / ".pgpass").chmod(0o644)
    url = f"postgresql://scram@localhost:{plain_server.port}/postgres?sslmode=disable"
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(home)})
    assert result.exit_code == 5
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"sqlplan: warning: password file '{home / '.pgpass'}' has group or world access; "
        "permissions should be u=rw (0600) or less: it is ignored"
    )
    assert "the server asks for a password, but none was given" in lines[1]
    assert "p@ss" not in result.stderr


@pytest.mark.parametrize("kind", ["a private key", "empty", "DER", "a directory"])
def test_a_root_certificate_file_that_is_not_one(
    cli: Cli, ssl_server: Cluster, certs: Certificates, tmp_path: Path, kind: str
) -> None:
    cli.write("ok.yaml", OK)
    root = tmp_path / "root.crt"
    if kind == "a private key":
        shutil.copy(certs.server_key, root)
        root.chmod(0o600)
    elif kind == "empty":
        root.write_text("")
    elif kind == "DER":
        subprocess.run(
            ["openssl", "x509", "-in", str(certs.ca), "-outform", "DER", "-out", str(root)],
            check=True,
        )
    else:
        root.mkdir()
    url = ssl_server.url("scram", f"sslmode=verify-ca&sslrootcert={root}")
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(_home(tmp_path))})
    assert result.exit_code == 4, result.stderr
    assert result.stderr.startswith(f"sqlplan: error: root certificate file '{root}' ")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_a_client_certificate_that_is_not_one(
    cli: Cli, ssl_server: Cluster, certs: Certificates, tmp_path: Path
) -> None:
    cli.write("ok.yaml", OK)
    bogus = tmp_path / "client.crt"
    bogus.write_text("not a certificate\n")
    url = ssl_server.url("certuser", f"sslmode=require&sslcert={bogus}&sslkey={certs.client_key}")
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(_home(tmp_path))})
    assert result.exit_code == 4
    assert result.stderr.startswith(f"sqlplan: error: cannot load the client certificate '{bogus}'")


def test_require_verifies_the_chain_when_root_crt_is_present(
    cli: Cli, ssl_server: Cluster, certs: Certificates, tmp_path: Path
) -> None:
    cli.write("ok.yaml", OK)
    home = _home(tmp_path)
    (home / ".postgresql").mkdir()
    url = ssl_server.url("scram", "sslmode=require")
    shutil.copy(certs.wrong_ca, home / ".postgresql" / "root.crt")
    refused = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(home)})
    assert refused.exit_code == 5
    assert "TLS certificate verification failed" in refused.stderr
    shutil.copy(certs.ca, home / ".postgresql" / "root.crt")
    accepted = cli("run", "ok.yaml", env={"DATABASE_URL": url, "HOME": str(home)})
    assert (accepted.exit_code, accepted.stderr) == (0, "")


def test_a_once_plan_is_claimed_and_recorded_through_a_transaction_pooler(
    cli: Cli, pooler: Pooler
) -> None:
    """The history's advisory lock is transaction-level and every claim and record is inside
    one transaction, which a transaction pooler keeps on one server connection."""
    url = f"postgresql://trusty@127.0.0.1:{pooler.port}/pooled?sslmode=disable"
    cli.write(
        "once.yaml",
        "sqlplan: 1\nname: pooled-once\nonce: true\nsteps:\n"
        "  - batch: CREATE TABLE pooled_once (n int)\n"
        "  - execute: INSERT INTO pooled_once VALUES ($1)\n    params: [1]\n    after: inserted\n",
    )
    first = cli("run", "once.yaml", env={"DATABASE_URL": url})
    assert (first.exit_code, first.stdout) == (0, "inserted\n"), first.stderr
    again = cli("run", "once.yaml", env={"DATABASE_URL": url})
    assert (again.exit_code, again.stdout) == (0, "")
    assert "skipped, applied " in again.stderr
    con = connect(parse_target(url))
    try:
        assert con.run("SELECT outcome FROM sqlplan.history WHERE plan = 'pooled-once'") == [
            ["succeeded"]
        ]
        assert con.run("SELECT count(*) FROM pooled_once") == [[1]]
    finally:
        con.close()


def test_timeouts_hold_through_a_transaction_pooler_and_leak_to_no_one(
    cli: Cli, pooler: Pooler
) -> None:
    """SET LOCAL inside each step's transaction: the pooler keeps the transaction on one server
    connection, and the setting ends with it, so no other client of that connection gets it."""
    url = f"postgresql://trusty@127.0.0.1:{pooler.port}/pooled?sslmode=disable"
    show = (
        "  - query: SELECT current_setting('lock_timeout') AS l, "
        "current_setting('statement_timeout') AS s\n    row: '{l} {s}'\n"
    )
    cli.write(
        "timeouts.yaml",
        "sqlplan: 1\nname: pooled-timeouts\nlock_timeout: 1500ms\nstatement_timeout: 1min\n"
        "steps:\n" + show + "  - batch: CREATE TABLE IF NOT EXISTS pooled_t (n int)\n" + show,
    )
    result = cli("run", "timeouts.yaml", "--no-pipeline", env={"DATABASE_URL": url})
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == "1500ms 1min\n1500ms 1min\n"
    con = connect(parse_target(url))
    try:
        assert con.run(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')"
        ) == [["0", "0"]]
    finally:
        con.close()


def test_run_through_a_pooler_warns_of_what_it_breaks_and_the_warning_is_true(
    cli: Cli, pooler: Pooler
) -> None:
    """`run` flags a session SET before sending anything; and the flag is right: through the
    pooler, the setting is left on the server connection for the next client."""
    url = f"postgresql://trusty@127.0.0.1:{pooler.port}/pooled?sslmode=disable&pgbouncer=true"
    cli.write(
        "session.yaml",
        "sqlplan: 1\nname: session-set\nsteps:\n  - batch: SET statement_timeout = '4321ms'\n",
    )
    result = cli("run", "session.yaml", env={"DATABASE_URL": url})
    assert result.exit_code == 0
    assert result.stderr.startswith(
        "session.yaml:4:12: warning: step 1: SET statement_timeout lasts for the server "
        "connection, which a transaction pooler gives to other clients"
    )
    assert result.stderr.endswith("[pooler-session-set]\n")
    other = connect(parse_target(url))
    try:
        leaked = other.run("SELECT current_setting('statement_timeout')")[0][0]
        other.run("RESET statement_timeout")
    finally:
        other.close()
    assert leaked == "4321ms"  # another client got it


def test_a_root_certificate_file_is_all_that_is_trusted(
    certs: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """As libpq: sslrootcert=FILE trusts that file's certificates and not the system's; a
    mode that verifies nothing loads no certificate at all (and no time is spent on them)."""
    import ssl

    from runner.connect.tls import ssl_context_for

    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.postgresql/root.crt
    pinned = ssl_context_for(
        parse_target(f"postgresql://u@h/d?sslmode=verify-ca&sslrootcert={certs.ca}")
    )
    expected = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    expected.load_verify_locations(cafile=str(certs.ca))
    assert pinned.get_ca_certs() == expected.get_ca_certs()
    assert len(pinned.get_ca_certs()) == 1
    unverified = ssl_context_for(parse_target("postgresql://u@h/d?sslmode=require"))
    assert unverified.cert_store_stats()["x509"] == 0
    assert unverified.verify_mode == ssl.CERT_NONE


def _recording_proxy(
    upstream_port: int, seen: list[bytearray]
) -> Callable[[socket.socket, int], None]:
    """A relay that keeps, per connection, the bytes the client sent."""

    def handle(conn: socket.socket, _: int) -> None:
        sent = bytearray()
        seen.append(sent)
        with socket.create_connection(("127.0.0.1", upstream_port)) as upstream:
            done = threading.Event()

            def back() -> None:
                try:
                    while data := upstream.recv(65536):
                        conn.sendall(data)
                except OSError:
                    pass
                done.set()

            threading.Thread(target=back, daemon=True).start()
            try:
                while data := conn.recv(65536):
                    sent += data
                    upstream.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)
            done.wait(5)

    return handle


SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


@pytest.mark.parametrize("through", ["in-process", "console script"])
def test_the_connection_opened_at_start_is_the_one_the_run_uses(
    cli: Cli, ssl_server: Cluster, through: str
) -> None:
    """TLS is set up while sqlplan starts; the run then uses that very connection (one TCP
    connection in all), and SCRAM-SHA-256-PLUS still binds to it (channel_binding=require)."""
    cli.write("tls.yaml", "sqlplan: 1\nname: tls\nsteps:\n"
              "  - query: SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()\n    row: 'ssl={ssl}'\n")  # fmt: skip
    seen: list[bytearray] = []
    with FakeServer(_recording_proxy(ssl_server.port, seen)) as relay:
        url = ssl_server.url("scram", "sslmode=require&channel_binding=require").replace(
            f":{ssl_server.port}/", f":{relay.port}/"
        )
        if through == "in-process":
            result = cli("run", "tls.yaml", env={"DATABASE_URL": url})
            code, out = result.exit_code, result.stdout
        else:
            done = subprocess.run(
                [sys.executable, "-m", "runner", "run", "tls.yaml"], cwd=cli.cwd,
                env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, check=False,
            )  # fmt: skip
            code, out = done.returncode, done.stdout
    assert (code, out) == (0, "ssl=true\n")
    assert len(seen) == 1
    assert bytes(seen[0][:8]) == SSL_REQUEST


def _endpoint_that_listens(
    certs: Certificates, seen: list[bytes]
) -> Callable[[socket.socket, int], None]:
    """Accepts TLS if asked (with the test server's certificate) and keeps, decrypted,
    everything the client sends until it hangs up."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)

    def handle(conn: socket.socket, _: int) -> None:
        head = conn.recv(8)
        stream: Any = conn
        if head == SSL_REQUEST:
            conn.sendall(b"S")
            stream = context.wrap_socket(conn, server_side=True)
            head = b""
        received = bytearray(head)
        try:
            while data := stream.recv(65536):
                received += data
        except (OSError, ssl.SSLError):
            pass
        finally:
            if stream is not conn:
                stream.close()
        seen.append(bytes(received))

    return handle


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_an_invalid_plan_sends_nothing_but_a_tls_handshake(
    tmp_path: Path, certs: Certificates, sslmode: str
) -> None:
    """The connection opened at start never gets a StartupMessage (no user name, no password)
    when the plan turns out invalid: over TCP nothing at all, over TLS the handshake and not
    one byte inside it."""
    (tmp_path / "bad.yaml").write_text("sqlplan: 1\nname: bad\nsteps:\n  - batch: SELEC 1\n")
    seen: list[bytes] = []
    with FakeServer(_endpoint_that_listens(certs, seen)) as fake:
        url = f"postgresql://scram:{ENCODED}@localhost:{fake.port}/postgres?sslmode={sslmode}"
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", "bad.yaml"], cwd=tmp_path,
            env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while fake.connections > len(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert done.returncode == 3
    assert done.stderr.startswith("bad.yaml:4:12: error: ")
    assert fake.connections == 1  # it had started connecting
    assert seen == [b""]


@pytest.mark.slow
@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_the_attempt_made_at_start_counts_as_the_first(tmp_path: Path, sslmode: str) -> None:
    """A server that accepts and never answers: the connection opened at start times out, and
    that is the first attempt's outcome (one connection with --connect-retries 0, two with 1),
    with the message an attempt always gave."""
    (tmp_path / "ok.yaml").write_text("sqlplan: 1\nname: ok\nsteps:\n  - batch: SELECT 1\n")
    for retries, connections in (("0", 1), ("1", 2)):
        with FakeServer(lambda conn, _: time.sleep(5)) as silent:
            url = f"postgresql://u@127.0.0.1:{silent.port}/d?sslmode={sslmode}&connect_timeout=1"
            done = subprocess.run(
                [sys.executable, "-m", "runner", "run", "ok.yaml", "--connect-retries", retries],
                cwd=tmp_path, env={**os.environ, "DATABASE_URL": url}, capture_output=True,
                text=True, check=False,
            )  # fmt: skip
            assert done.returncode == 5
            assert done.stderr.splitlines()[-1].startswith(
                f"sqlplan: error: cannot connect to database 'd' as 'u' on 127.0.0.1:{silent.port}: timed out"
            )
            assert silent.connections == connections


@pytest.mark.parametrize(
    ("args", "code"),
    [(["--bogus"], 2), ([], 3), (["--var", "who=x", "--var", "what=y"], 3)],
    ids=["usage error", "var missing", "var unknown"],
)
def test_a_cached_plan_that_cannot_run_sends_nothing_either(
    tmp_path: Path, certs: Certificates, args: list[str], code: int
) -> None:
    """On a cache hit sqlplan logs in at once, beside its imports, but only when nothing can
    still stop the run before it connects: a usage error or a var without its value sends no
    StartupMessage, though the plan itself is known valid."""
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "sqlplan: 1\nname: p\nvars: {who: text}\nsteps:\n"
        "  - execute: SELECT $1\n    params: ['{who}']\n"
    )
    env = {**os.environ, "SQLPLAN_CACHE_DIR": str(tmp_path / "cache")}
    checked = subprocess.run([sys.executable, "-m", "runner", "check", "p.yaml"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout  # the cache holds it now
    seen: list[bytes] = []
    with FakeServer(_endpoint_that_listens(certs, seen)) as fake:
        url = f"postgresql://scram:{ENCODED}@localhost:{fake.port}/postgres?sslmode=require"
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", "p.yaml", *args], cwd=tmp_path,
            env={**env, "DATABASE_URL": url}, capture_output=True, text=True, check=False,
        )  # fmt: skip
        deadline = time.monotonic() + 5
        while fake.connections > len(seen) and time.monotonic() < deadline:
            time.sleep(0.01)
    assert done.returncode == code, done.stderr
    assert all(sent == b"" for sent in seen), seen


def test_a_cached_plan_logs_in_while_sqlplan_starts(cli: Cli, ssl_server: Cluster) -> None:
    """The plan is in the cache, so it is known valid at once: the thread that opened the
    connection also logs in (SCRAM-SHA-256-PLUS, channel_binding=require), and the run's first
    attempt takes that very connection."""
    from runner.connect import early

    cli.write(
        "tls.yaml", "sqlplan: 1\nname: tls\nsteps:\n  - query: SELECT 1 AS one\n    row: '{one}'\n"
    )
    url = ssl_server.url("scram", "sslmode=require&channel_binding=require")
    assert cli("run", "tls.yaml", env={"DATABASE_URL": url}).exit_code == 0  # cached now
    previous = Path.cwd()
    os.chdir(cli.cwd)
    try:
        early.start(
            ["run", "tls.yaml"], early.env_for({"DATABASE_URL": url}), str(cli.cwd), known_valid
        )
        pending = early._Slot.pending
        assert pending is not None
        pending._thread.join(20)
        assert pending.connection is not None
        opened = pending.connection
        con = connect(parse_target(url))
        try:
            assert con._usock is opened.sock  # that very socket, logged in already
            assert con.auth.mechanism_name == "SCRAM-SHA-256-PLUS"
            assert con.run("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [[True]]
        finally:
            con.close()
    finally:
        early.discard()
        os.chdir(previous)


def test_the_attempt_made_at_start_keeps_the_connect_timeout_option(tmp_path: Path) -> None:
    """--connect-timeout applies to the attempt made at start as to the others: one
    connection to a silent server with --connect-retries 0, not a second one after it."""
    (tmp_path / "ok.yaml").write_text("sqlplan: 1\nname: ok\nsteps:\n  - batch: SELECT 1\n")
    with FakeServer(lambda conn, _: time.sleep(8)) as silent:
        url = f"postgresql://u@127.0.0.1:{silent.port}/d?sslmode=require"
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", "ok.yaml", "--connect-retries", "0",
             "--connect-timeout", "1"],
            cwd=tmp_path, env={**os.environ, "DATABASE_URL": url}, capture_output=True,
            text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 5
        assert done.stderr.splitlines()[-1].endswith(": timed out")
        assert silent.connections == 1


_HOSTS = st.sampled_from(["localhost", "LocalHost", "db.example.com", "EP-Cool-1.neon.tech",
                          "127.0.0.1", "[::1]", "%6Cocalhost", "a,b", ""])  # fmt: skip
_QUERIES = st.lists(
    st.sampled_from(["sslmode=require", "sslmode=disable", "sslmode=prefer", "sslmode=allow",
                     "sslmode=verify-full", "channel_binding=require", "connect_timeout=3",
                     "port=6000", "host=elsewhere", "hostaddr=10.0.0.1", "application_name=x",
                     "options=-c%20x%3D1", "sslnegotiation=direct", "sslnegotiation=postgres"]),
    max_size=3,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    host=_HOSTS,
    port=st.sampled_from(["", ":5433", ":6543"]),
    query=_QUERIES,
    env=st.dictionaries(
        st.sampled_from(["PGPORT", "PGSSLMODE", "PGHOST", "PGSSLNEGOTIATION"]),
        st.sampled_from(["5999", "require", "disable", "elsewhere", "direct"]),
        max_size=2,
    ),
    where=st.sampled_from(["flag", "environment", ".env", ".env export", ".env quoted"]),
)
def test_the_guess_made_before_resolving_is_the_resolved_target(
    host: str, port: str, query: list[str], env: dict[str, str], where: str
) -> None:
    """Before target.py is even imported, the thread that connects at start reads host, port
    and sslmode from a URL that says them by itself, and opens the connection. Whenever it
    does, the target resolved afterwards (by the one resolver) must be that very address;
    otherwise the socket is only discarded, so a guess may decline, never differ."""
    from runner.connect import early
    from runner.connect.target import resolve_target

    url = f"postgresql://u:pw@{host}{port}/db" + ("?" + "&".join(query) if query else "")
    with tempfile.TemporaryDirectory() as cwd:
        flag, environ = None, dict(env)
        if where == "flag":
            flag = url
        elif where == "environment":
            environ["DATABASE_URL"] = url
        else:
            line = {".env": url, ".env export": f"export {url}", ".env quoted": f'"{url}"'}[where]
            line = (
                f"DATABASE_URL={line}"
                if not line.startswith("export")
                else f"export DATABASE_URL={url}"
            )
            Path(cwd, ".env").write_text(f"# settings\nOTHER=1\n{line}\n")
        guess = early._guess(flag, environ, cwd)
        if guess is None:
            return
        try:
            target = resolve_target(flag, environ, Path(cwd))
        except ConfigError:
            return  # the run refuses the URL; the guessed socket is discarded unused
        assert target is not None
        assert guess[:4] == (
            target.host.lower(),
            target.port,
            target.sslmode,
            target.sslnegotiation,
        )
        assert guess[4] == target.connect_timeout


def test_a_plan_validated_now_logs_in_beside_the_imports(ssl_server: Cluster) -> None:
    """Not in the cache: the connection opened at start waits, TLS up, for the plans' verdict;
    go() (the plans are valid) makes it log in at once, in the background, and the first
    attempt takes that connection."""
    from runner.connect import early
    from runner.connect.handshake import LoggedIn

    url = ssl_server.url("scram", "sslmode=require&channel_binding=require")
    early.start(["run", "p.yaml"], early.env_for({"DATABASE_URL": url}), str(Path.cwd()), lambda _: False)  # fmt: skip
    try:
        pending = early._Slot.pending
        assert pending is not None
        time.sleep(0.5)
        assert pending.connection is None  # TLS up, no log-in yet
        assert pending.sock is not None
        target = parse_target(url)
        early.go(target)
        pending._thread.join(10)
        logged = pending.connection
        assert isinstance(logged, LoggedIn)
        con = connect(target)
        try:
            assert con._usock is logged.sock  # that connection, logged in already
            assert con.run("SELECT current_user") == [["scram"]]
        finally:
            con.close()
    finally:
        early.discard()


def test_without_a_verdict_the_early_socket_is_closed(
    monkeypatch: pytest.MonkeyPatch, certs: Certificates
) -> None:
    """A command that neither connects nor gives up (a very long validation, say) leaves the
    socket opened at start waiting; it is closed before the server's authentication_timeout
    would close it, and the first attempt then opens its own."""
    from runner.connect import early

    monkeypatch.setattr(early, "VERDICT_WAIT", 0.3)
    seen: list[bytes] = []
    with FakeServer(_endpoint_that_listens(certs, seen)) as fake:
        url = f"postgresql://scram:{ENCODED}@localhost:{fake.port}/postgres?sslmode=require"
        early.start(["run", "p.yaml"], early.env_for({"DATABASE_URL": url}), str(Path.cwd()), lambda _: False)  # fmt: skip
        try:
            pending = early._Slot.pending
            assert pending is not None
            pending._thread.join(5)
            assert pending.sock is None
            assert pending.connection is None
            deadline = time.monotonic() + 5
            while not seen and time.monotonic() < deadline:
                time.sleep(0.01)
            assert seen == [b""]  # the TLS handshake, then nothing: closed
            assert early.take(parse_target(url), True, 5) is None
        finally:
            early.discard()


def _direct_tls_front(
    certs: Certificates, upstream_port: int, seen: list[bytes], alpn: bool = True
) -> Callable[[socket.socket, int], None]:
    """What PostgreSQL 17 and Neon's proxy do with sslnegotiation=direct: TLS from the first
    byte, ALPN `postgresql` chosen (unless not `alpn`); then the plain server behind it."""
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    if alpn:
        context.set_alpn_protocols(["postgresql"])

    def handle(conn: socket.socket, _: int) -> None:
        seen.append(conn.recv(1, socket.MSG_PEEK))  # the first byte: TLS, or an SSLRequest
        with (
            context.wrap_socket(conn, server_side=True) as tls,
            socket.create_connection(("127.0.0.1", upstream_port)) as upstream,
        ):

            def back() -> None:
                with contextlib.suppress(OSError):
                    while data := upstream.recv(65536):
                        tls.sendall(data)

            threading.Thread(target=back, daemon=True).start()
            with contextlib.suppress(OSError):
                while data := tls.recv(65536):
                    upstream.sendall(data)

    return handle


def test_direct_tls_skips_the_sslrequest(
    cli: Cli, plain_server: Cluster, certs: Certificates
) -> None:
    """sslnegotiation=direct: the first byte on the wire is a TLS record, not an SSLRequest,
    the ALPN protocol is `postgresql`, and the run works (early connection or not)."""
    seen: list[bytes] = []
    cli.write("ok.yaml", "sqlplan: 1\nname: ok\nsteps:\n  - query: SELECT 1 AS one\n    row: '{one}'\n")  # fmt: skip
    with FakeServer(_direct_tls_front(certs, plain_server.port, seen)) as front:
        url = f"postgresql://scram:{ENCODED}@localhost:{front.port}/postgres?sslmode=require&sslnegotiation=direct"
        for _ in range(2):  # validated, then from the cache (logged in at start)
            result = cli("run", "ok.yaml", env={"DATABASE_URL": url})
            assert (result.exit_code, result.stdout, result.stderr) == (0, "1\n", "")
        target = parse_target(url)
        con = connect(target)
        try:
            assert con._usock.selected_alpn_protocol() == "postgresql"
        finally:
            con.close()
    assert seen == [b"\x16"] * 3  # a TLS handshake record each time


def test_direct_tls_needs_the_postgresql_alpn(plain_server: Cluster, certs: Certificates) -> None:
    seen: list[bytes] = []
    with FakeServer(_direct_tls_front(certs, plain_server.port, seen, alpn=False)) as front:
        target = plain_server.target("scram", port=front.port, sslmode="require", sslnegotiation="direct")  # fmt: skip
        with pytest.raises(ConnectError, match="did not choose the ALPN protocol 'postgresql'"):
            connect(target)


def test_direct_tls_to_a_server_before_17_says_why(ssl_server: Cluster) -> None:
    target = ssl_server.target("scram", sslmode="require", sslnegotiation="direct")
    with pytest.raises(ConnectError, match=r"sslnegotiation=direct needs PostgreSQL 17 or later"):
        connect(target, RetryPolicy(retries=0, timeout=3))


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_direct_tls_needs_sslmode_require_or_stronger(mode: str) -> None:
    with pytest.raises(ConfigError, match=f"sslnegotiation=direct needs sslmode=require or stronger, not {mode}"):  # fmt: skip
        parse_target(f"postgresql://u@h/d?sslmode={mode}&sslnegotiation=direct")


def test_a_remembered_scram_log_in_through_pgbouncer(
    plain_server: Cluster, pooler: Pooler, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PgBouncer asking its clients for SCRAM takes the first SCRAM message sent with the
    StartupMessage (the server is remembered after the first log-in) as PostgreSQL does."""
    from runner.connect import memory

    started = start_pgbouncer(plain_server, "pooled", scram=True)
    assert started is not None  # the pooler fixture found pgbouncer
    told: list[tuple[str, ...]] = []
    remember = memory.remember

    def spy(target: Target, tls: bool, mechanisms: tuple[str, ...]) -> None:
        told.append(mechanisms)
        remember(target, tls, mechanisms)

    monkeypatch.setattr(memory, "remember", spy)
    try:
        target = plain_server.target("scram", port=started.port, database="pooled", sslmode="disable")  # fmt: skip
        for _ in range(3):
            con = connect(target)
            try:
                assert con.run("SELECT current_user, current_database()") == [["scram", "pooled"]]
            finally:
                con.close()
        assert memory.offered(target, False) == ("SCRAM-SHA-256",)
        assert told == [("SCRAM-SHA-256",)]  # learned once; never forgotten: no stale log-in
    finally:
        stop_pgbouncer(started)
