"""Neon-style connections over TLS against a real SSL-enabled PostgreSQL (Debian's build).

The embedded server has no SSL, so these tests start Debian's `postgresql` binaries with a
certificate made at test time. Without them the tests are skipped, except in CI (CI=true),
where .ci/run installs them and a skip would hide a gap.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Cli

from runner.connection import connect
from runner.target import Target

PASSWORD = "p@ss:w/rd%é"
ENCODED = "p%40ss%3Aw%2Frd%25%C3%A9"
SSL_PLAN = """\
sqlplan: 1
name: tls
on_connect: connected
steps:
  - query: SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()
    row: "ssl={ssl}"
"""


def _debian_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


@dataclass
class TlsServer:
    port: int
    cert: Path

    def url(self, user: str, query: str, host: str = "localhost") -> str:
        return f"postgresql://{user}:{ENCODED}@{host}:{self.port}/postgres?{query}"


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsServer]:
    bin_dir = _debian_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        message = "no SSL-capable PostgreSQL: apt-get install postgresql openssl (as .ci/run does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    account = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    base = Path(tempfile.mkdtemp(prefix="sqlplan-tls-"))
    base.chmod(0o755)  # ours: mkdtemp just made it
    os.chown(base, account.pw_uid, account.pw_gid)
    user = (
        {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        if os.geteuid() == 0
        else {}
    )

    def run(*command: str | Path) -> None:
        subprocess.run([str(c) for c in command], check=True, capture_output=True, cwd=base, **user)  # type: ignore[call-overload]

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = base / "data"
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        "-keyout", base / "server.key", "-out", base / "server.crt",
        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost")  # fmt: skip
    run(bin_dir / "initdb", "-D", data, "-U", "admin", "--auth-local=trust", "--auth-host=reject")
    with open(data / "postgresql.conf", "a") as conf:
        conf.write(
            f"ssl = on\nssl_cert_file = '{base}/server.crt'\nssl_key_file = '{base}/server.key'\n"
            f"port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{base}'\n"
            "password_encryption = 'scram-sha-256'\n"
        )
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all neon 127.0.0.1/32 scram-sha-256\n"
        "hostssl all clear 127.0.0.1/32 password\n"
        "host all all 127.0.0.1/32 reject\n"
    )
    run(bin_dir / "pg_ctl", "-D", data, "-l", base / "server.log", "-w", "start")
    try:
        admin = connect(
            Target(host=str(base), port=port, user="admin", password=None, database="postgres")
        )
        try:
            for role in ("neon", "clear"):
                # DDL takes no bind parameters: the server quotes the values with format().
                sql = "SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :role::text, :pw::text)"
                admin.run(admin.run(sql, role=role, pw=PASSWORD)[0][0])
        finally:
            admin.close()
        yield TlsServer(port, base / "server.crt")
    finally:
        run(bin_dir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def _run(cli: Cli, url: str) -> tuple[int, str, str]:
    cli.write("tls.yaml", SSL_PLAN)
    result = cli("run", "tls.yaml", env={"DATABASE_URL": url})
    return result.exit_code, result.stdout, result.stderr


def test_neon_style_url_runs_over_tls_with_channel_binding(cli: Cli, tls_server: TlsServer) -> None:
    url = tls_server.url("neon", "sslmode=require&channel_binding=require")
    assert _run(cli, url) == (0, "connected\nssl=true\n", "")


def test_verify_full_checks_the_host_name(cli: Cli, tls_server: TlsServer) -> None:
    query = f"sslmode=verify-full&sslrootcert={tls_server.cert}"
    assert _run(cli, tls_server.url("neon", query)) == (0, "connected\nssl=true\n", "")
    code, out, err = _run(cli, tls_server.url("neon", query, host="127.0.0.1"))
    assert (code, out) == (5, "")
    assert "TLS certificate verification failed" in err


def test_channel_binding_require_refuses_before_sending_a_password(
    cli: Cli, tls_server: TlsServer
) -> None:
    code, out, err = _run(cli, tls_server.url("clear", "sslmode=require&channel_binding=require"))
    assert (code, out) == (5, "")
    assert (
        "channel_binding=require, but the server asked for a cleartext password; no password was sent"
        in err
    )
    assert PASSWORD not in err
    # without the requirement the same role connects (TLS, cleartext password inside it)
    assert _run(cli, tls_server.url("clear", "sslmode=require")) == (0, "connected\nssl=true\n", "")


def test_plaintext_is_refused_by_the_server_and_reported(cli: Cli, tls_server: TlsServer) -> None:
    code, out, err = _run(cli, tls_server.url("neon", "sslmode=disable"))
    assert (code, out) == (5, "")
    assert "no encryption [28000]" in err
    assert PASSWORD not in err
    assert ENCODED not in err


def test_wrong_password_is_a_clear_error_without_the_password(
    cli: Cli, tls_server: TlsServer
) -> None:
    url = tls_server.url("neon", "sslmode=require").replace(ENCODED, "wrong-secret")
    code, _, err = _run(cli, url)
    assert code == 5
    assert 'password authentication failed for user "neon" [28P01]' in err
    assert "wrong-secret" not in err
