"""A password never appears in any output: every configuration and connection error path, with
a password full of URL-special and non-ASCII characters, searched for in stdout and stderr,
plain, percent-encoded and piece by piece. The embedded server gets none of the user's
environment."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Cli, Database, Server

from runner.connect.connection import connect
from runner.connect.embedded import server_environment

# Each piece between special characters is distinctive, so that a partial echo is found too.
PIECES = ["Zq9s3cr", "Wx7", "Kp2", "Jm4", "Vb8", "Yt6", "Hn5"]
PASSWORD = "Zq9s3cr#Wx7/Kp2@Jm4:Vb8?Yt6&Hn5é€%"
ENCODED = quote(PASSWORD, safe="")

OK_PLAN = "sqlplan: 1\nname: ok\nsteps:\n  - query: SELECT 1 AS one\n    row: '{one}'\n"

URLS = {
    "raw password, '#' and '/' in it": f"postgresql://alex:{PASSWORD}@127.0.0.1:9/db",
    "scheme with one slash": f"postgres:/alex:{ENCODED}@127.0.0.1:9/db",
    "scheme without slashes": f"postgres:alex:{ENCODED}@127.0.0.1/db",
    "no scheme": f"alex:{ENCODED}@127.0.0.1/db",
    "bad percent escape": f"postgresql://alex:{ENCODED}%zz@127.0.0.1/db",
    "unknown parameter": f"postgresql://alex:{ENCODED}@127.0.0.1/db?sslmod=require",
    "bad port": f"postgresql://alex:{ENCODED}@127.0.0.1:port/db",
    "bad sslmode": f"postgresql://alex:{ENCODED}@127.0.0.1/db?sslmode=always",
    "missing '='": f"postgresql://alex:{ENCODED}@127.0.0.1/db?sslmode",
    "two hosts": f"postgresql://alex:{ENCODED}@h1,h2/db",
    "password parameter": f"postgresql://alex@127.0.0.1/db?password={ENCODED}&sslmode=bad",
    "bad IPv6": f"postgresql://alex:{ENCODED}@[::1/db",
    "refused": f"postgresql://alex:{ENCODED}@127.0.0.1:9/db?connect_timeout=2",
}


def _leaks(text: str) -> list[str]:
    return [p for p in [PASSWORD, ENCODED, *PIECES] if p in text]


@pytest.mark.parametrize("url", URLS.values(), ids=URLS.keys())
@pytest.mark.parametrize("where", ["flag", "environment", "dotenv"])
def test_no_error_path_echoes_the_password(cli: Cli, url: str, where: str) -> None:
    cli.write("ok.yaml", OK_PLAN)
    env = {"SQLPLAN_CONNECT_RETRIES": "0"}
    args = ["run", "ok.yaml"]
    if where == "flag":
        args += ["--database-url", url]
    elif where == "environment":
        env["DATABASE_URL"] = url
    else:
        cli.write(".env", f"DATABASE_URL='{url}'\n")
    rehearse = ["rehearse", *args[1:]]
    for command in (args, rehearse, ["db", "url", *args[2:]], ["db", "status"]):
        result = cli(*command, env=env)
        assert _leaks(result.stdout + result.stderr) == [], (command, result.stdout + result.stderr)
    run = cli(*args, env=env)
    assert run.exit_code in (4, 5), run.stderr


def test_pg_variables_never_echo_the_password(cli: Cli) -> None:
    cli.write("ok.yaml", OK_PLAN)
    env = {"PGHOST": "127.0.0.1", "PGPORT": "nine", "PGPASSWORD": PASSWORD, "PGUSER": "alex"}
    for command in (["run", "ok.yaml"], ["db", "url"]):
        result = cli(*command, env=env)
        assert _leaks(result.stdout + result.stderr) == []
    env["PGPORT"] = "9"
    result = cli("run", "ok.yaml", env={**env, "SQLPLAN_CONNECT_RETRIES": "0"})
    assert result.exit_code == 5
    assert _leaks(result.stdout + result.stderr) == []


def test_a_failing_step_never_echoes_the_password(cli: Cli, database: Database) -> None:
    cli.write("bad.yaml", "sqlplan: 1\nname: bad\nsteps:\n  - batch: SELECT no_such_column\n")
    target = database.target
    url = f"postgresql://{target.user}:{ENCODED}@/{target.database}?host={quote(target.host, safe='')}&port={target.port}"
    for command in ("run", "rehearse"):
        result = cli(command, "bad.yaml", env={"DATABASE_URL": url})
        assert result.exit_code == 1
        assert _leaks(result.stdout + result.stderr) == []


def test_the_embedded_server_sees_none_of_the_users_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set(server_environment()) == {"PATH", "LC_ALL", "LANG", "TZ"}
    con = connect(server.target)
    try:
        pid = con.run("SELECT pg_backend_pid()")[0][0]
        environ = con.run(
            "SELECT pg_read_binary_file('/proc/' || :pid || '/environ')", pid=str(pid)
        )
    finally:
        con.close()
    names = {entry.split(b"=", 1)[0].decode() for entry in environ[0][0].split(b"\0") if entry}
    assert names <= {"PATH", "LC_ALL", "LANG", "TZ", "PG_GRANDPARENT_PID"}, names
    assert os.environ.get("SQLPLAN_CACHE_DIR")  # set by conftest for every test: not passed on
    assert "SQLPLAN_CACHE_DIR" not in names


@pytest.mark.postgres  # an embedded server of its own
def test_a_postmaster_started_with_secrets_in_the_shell_keeps_none(tmp_path: Path) -> None:
    from runner.connect.embedded import EmbeddedServer

    tmp_path.chmod(0o755)
    os.environ["DATABASE_URL_TEST_SECRET"] = PASSWORD
    try:
        embedded = EmbeddedServer(tmp_path / "state")
        target = embedded.ensure_running()
        try:
            con = connect(target)
            try:
                pid = con.run(
                    "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
                )[0][0]
                raw = con.run(
                    "SELECT pg_read_binary_file('/proc/' || :pid || '/environ')", pid=str(pid)
                )[0][0]
            finally:
                con.close()
        finally:
            embedded.destroy()
    finally:
        del os.environ["DATABASE_URL_TEST_SECRET"]
    assert _leaks(raw.decode("utf-8", "replace")) == []
