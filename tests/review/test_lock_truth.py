"""The lock and rewrite analysis agrees with the server on statements generated over a schema
with partitions, foreign keys both ways, views, sequences, generated columns, domains,
policies, triggers, rules and statistics (tests/lock_truth.py; bench/locks.py runs all of
them on PostgreSQL 18 and 15). Its "may" is resolved from the catalogue, as `rehearse` does."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_truth import FAILING, SCHEMA, Copies, compare, observe, outside, probe, statements

from runner.connect.connection import connect
from runner.connect.target import with_database
from runner.plan.sqlparse import parse
from runner.review.catalog import snapshot
from runner.review.locks import describe, locks

VERSION = 18  # the embedded server's


@pytest.fixture
def schema(con: Any) -> Any:
    con.run(SCHEMA)
    return con


def test_the_analysis_agrees_with_the_server_on_generated_statements(schema: Any) -> None:
    ran: list[str] = []

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(sql=st.sampled_from(statements(VERSION)))
    def check(sql: str) -> None:
        truth = observe(schema, sql)
        if not truth.ran:
            return  # the grammar's statement does not apply to this schema
        ran.append(sql)
        wrong = [d for d in compare(truth, VERSION) if d.kind in FAILING]
        assert wrong == [], (sql, wrong)

    check()
    assert len(ran) > 50


def test_a_partitioned_tables_partitions_are_named_from_the_catalogue(schema: Any) -> None:
    """Offline the partitions are a "may"; with the catalogue they are the tables themselves."""
    (statement,) = parse("ALTER TABLE meas ADD COLUMN x int").statements
    offline = locks(statement)
    assert describe(offline) == [
        "ACCESS EXCLUSIVE on meas",
        "may: ACCESS EXCLUSIVE on the partitions of meas",
    ]
    resolved = snapshot(schema.run).resolve(offline)
    assert sorted(lock.relation for lock in resolved) == [
        "meas", "meas_2024", "meas_2025", "meas_default",
    ]  # fmt: skip
    assert {lock.mode for lock in resolved} == {"ACCESS EXCLUSIVE"}


@pytest.mark.parametrize("sql", ["DO $$BEGIN PERFORM 1; END$$", "ALTER EXTENSION plpgsql UPDATE"])
def test_a_statement_the_analysis_does_not_know_is_never_no_locks(sql: str) -> None:
    (statement,) = parse(sql).statements
    (lock,) = locks(statement)
    assert not lock.known
    assert lock.describe().startswith("not analysed: assume ACCESS EXCLUSIVE on ")


def test_statements_outside_a_transaction_block_wait_for_what_the_analysis_says(
    server: Any,
) -> None:
    """CREATE INDEX CONCURRENTLY, VACUUM FULL, REINDEX ... CONCURRENTLY, DETACH ...
    CONCURRENTLY: each table held by a second session in turn, the mode the statement waits
    for compared with the analysis (bench/locks.py probes every one of them)."""
    admin = connect(server.target)
    copies = Copies(
        admin,
        lambda name: with_database(server.target, name),
        connect,
        f"lt_{uuid.uuid4().hex[:10]}",
    )
    try:
        copies.make_base()
        ran = []
        for sql in [*random.Random(19).sample(list(outside(VERSION)), 3), "VACUUM FULL child"]:
            truth = probe(copies, sql)
            if not truth.ran:
                continue
            ran.append(sql)
            assert truth.probed, sql
            wrong = [d for d in compare(truth, VERSION) if d.kind in FAILING]
            assert wrong == [], (sql, wrong)
        assert "VACUUM FULL child" in ran
    finally:
        copies.drop(copies.base)
        admin.close()
