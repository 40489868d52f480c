"""Values reach the database exactly as written: every path (execute parameters, inline rows
as COPY and row by row, CSV parsed and sent whole, JSON Lines objects and arrays) stores what
the same value written as a SQL literal stores. Property-based, against the real server;
bench/differential.py runs the long profile."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli, Database, Server
from hypothesis import HealthCheck, given, settings
from value_oracle import DIFFERENCES, PATHS, Kind, cases, oracle_sql

from runner.connect.connection import connect

_FAST = settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class Store:
    """One database for a module's examples; each example starts from empty tables."""

    def __init__(self, server: Server, database: Database) -> None:
        self.database = database
        self.cli = Cli(Path(tempfile.mkdtemp(prefix="sqlplan-values-")), server)
        self.con = connect(database.target)

    def check(self, path: str, kind: Kind, values: list[Any]) -> None:
        self.con.run("DROP TABLE IF EXISTS got, want")
        plan = PATHS[path](kind, values, self.cli.cwd)
        self.cli.write("plan.yaml", plan)
        result = self.cli("run", "plan.yaml", env={"DATABASE_URL": self.database.url})
        assert (result.exit_code, result.stderr) == (0, ""), plan
        self.con.run(oracle_sql(kind, values))
        differences = self.con.run(DIFFERENCES)
        assert differences == [], (path, kind.name, differences)


@pytest.fixture
def store(server: Server, database: Database) -> Iterator[Store]:
    store = Store(server, database)
    try:
        yield store
    finally:
        store.con.close()


@pytest.mark.parametrize("path", PATHS)
def test_values_store_what_their_sql_literals_store(store: Store, path: str) -> None:
    @_FAST
    @given(case=cases(path))
    def run(case: tuple[Kind, list[Any]]) -> None:
        store.check(path, *case)

    run()
