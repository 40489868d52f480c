"""Fixtures: one real embedded PostgreSQL per test session, a fresh database per test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from servers import (
    Certificates,
    Cluster,
    cluster_owner,
    make_certificates,
    remove_cluster,
    require_debian_postgres,
    start_cluster,
)

from runner.cli import main
from runner.connect import early
from runner.connect.connection import connect
from runner.connect.embedded import EmbeddedServer
from runner.connect.target import Target, with_database
from runner.plan.cache import known_valid

ROOT = Path(__file__).resolve().parent.parent

# Validated plans are cached per user; the tests keep theirs apart (subprocesses inherit it).
os.environ["SQLPLAN_CACHE_DIR"] = tempfile.mkdtemp(prefix="sqlplan-tests-cache-")


@dataclass
class Server:
    state_dir: Path
    embedded: EmbeddedServer
    target: Target


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The embedded PostgreSQL, initialised in a private directory for this test session."""
    state_dir = Path(tempfile.mkdtemp(prefix="sqlplan-tests-")) / "state"
    # mkdtemp makes a 0700 directory of ours; open it so that, under root, the server's
    # unprivileged user can reach the cluster inside it.
    state_dir.parent.chmod(0o755)
    embedded = EmbeddedServer(state_dir)
    target = embedded.ensure_running()
    try:
        yield Server(state_dir, embedded, target)
    finally:
        embedded.destroy()
        shutil.rmtree(state_dir.parent, ignore_errors=True)


class Database:
    """A fresh database on the session's server, dropped after the test."""

    def __init__(self, target: Target) -> None:
        self.target = target

    @property
    def url(self) -> str:
        return self.target.url(mask_password=False)

    def query(self, sql: str, **params: object) -> list[list[object]]:
        con = connect(self.target)
        try:
            return list(con.run(sql, **params) or [])
        finally:
            con.close()


@pytest.fixture
def database(server: Server) -> Iterator[Database]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = connect(server.target)
    try:
        admin.run(f"CREATE DATABASE {name}")
    finally:
        admin.close()
    yield Database(with_database(server.target, name))
    admin = connect(server.target)
    try:
        admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


@pytest.fixture
def con(database: Database) -> Iterator[Any]:
    """A connection to the test's database, for setting up and reading back."""
    connection = connect(database.target)
    try:
        yield connection
    finally:
        connection.close()


_FINGERPRINT = re.compile(r"^sqlplan: plan .*, fingerprint [0-9a-f]{16}\n", re.M)


def split_fingerprint(stderr: str) -> tuple[str, str | None]:
    """(stderr without `run`'s fingerprint line, the fingerprint or None)."""
    match = _FINGERPRINT.search(stderr)
    if match is None:
        return stderr, None
    return stderr[: match.start()] + stderr[match.end() :], match.group(0).rsplit(" ", 1)[1].strip()


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str  # without the fingerprint line that `run` prints
    fingerprint: str | None


class Cli:
    """Runs `sqlplan` in-process with click's CliRunner, in a scratch directory, with a clean env."""

    def __init__(self, cwd: Path, server: Server) -> None:
        self.cwd = cwd
        self.server = server

    def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> Result:
        environment: dict[str, str | None] = {
            "DATABASE_URL": None,
            "SQLPLAN_DATA_DIR": str(self.server.state_dir),
        }
        environment.update(env or {})
        runner = CliRunner()
        previous = Path.cwd()
        os.chdir(self.cwd)
        try:
            # as the console script does: a command that connects starts connecting at once
            early.start(list(args), early.env_for(environment), str(self.cwd), known_valid)
            result = runner.invoke(main, list(args), env=environment, catch_exceptions=False)
        finally:
            early.discard()
            os.chdir(previous)
        stderr, fingerprint = split_fingerprint(result.stderr)
        return Result(result.exit_code, result.stdout, stderr, fingerprint)

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.write_text(text)
        return path

    def run_plan(self, text: str, *args: str, url: str, name: str = "plan.yaml") -> Result:
        """Write a plan and `sqlplan run` it against the database at `url`: the one helper
        the tests share for it."""
        self.write(name, text)
        return self("run", name, *args, env={"DATABASE_URL": url})


@pytest.fixture
def cli(tmp_path: Path, server: Server) -> Cli:
    return Cli(tmp_path, server)


def start_sqlplan(*args: str, env: Mapping[str, str]) -> subprocess.Popen[str]:
    """`sqlplan ARGS` as a separate process, for tests that send it signals."""
    return subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_statement(run: Callable[[str], Any], like: str, seconds: float = 20) -> None:
    """Wait until a statement matching `like` runs on the server (`run` executes SQL)."""
    deadline = time.monotonic() + seconds
    sql = f"SELECT count(*) FROM pg_stat_activity WHERE query LIKE '{like}'"
    while time.monotonic() < deadline and not run(sql)[0][0]:
        time.sleep(0.02)


@pytest.fixture(scope="module")
def certs() -> Iterator[Certificates]:
    """A CA, server and client certificates, made for a test module."""
    require_debian_postgres()
    directory = Path(tempfile.mkdtemp(prefix="sqlplan-certs-"))
    directory.chmod(0o755)  # ours: mkdtemp just made it
    yield make_certificates(directory, cluster_owner())
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def ssl_server(certs: Certificates) -> Iterator[Cluster]:
    """Debian's PostgreSQL with TLS (plaintext refused), for a test module."""
    cluster = start_cluster(require_debian_postgres(), tls=certs)
    yield cluster
    remove_cluster(cluster)


@pytest.fixture(scope="module")
def plain_cluster() -> Iterator[Cluster]:
    """Debian's PostgreSQL without TLS (SCRAM and the other roles), for a test module; what
    PgBouncer fronts in the tests."""
    cluster = start_cluster(require_debian_postgres(), tls=None)
    yield cluster
    remove_cluster(cluster)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache directory of the test's own (validation cache, remembered servers)."""
    directory = tmp_path / "cache"
    monkeypatch.setenv("SQLPLAN_CACHE_DIR", str(directory))
    monkeypatch.delenv("SQLPLAN_NO_CACHE", raising=False)
    return directory


# What a test needs, from the fixtures it uses (directly or through others): `postgres`, the
# embedded server; `debian`, Debian's PostgreSQL (TLS, a second version) or PgBouncer. The
# fast tier is `pytest -m "not postgres and not debian and not slow"`.
_NEEDS = {
    "postgres": {"server"},
    "debian": {"certs", "ssl_server", "cluster", "plain_cluster", "plain_server", "tls_cluster"},
}


# The whole suite (`pytest`, or a tier of it: `pytest -m "not slow"`) runs on this many
# worker processes, each with its own embedded server: its tests wait on servers far more
# than they compute, so four fit two cores (3 min 18 s against 9 min 14 s in one process).
# Tests named on the command line run in one process, as pytest runs them by default.
WORKERS = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    whole = config.args_source == pytest.Config.ArgsSource.TESTPATHS
    return WORKERS if whole and not config.getoption("usepdb", False) else 0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in _NEEDS.items():
            if used & fixtures:
                item.add_marker(marker)
