"""The compatibility rules against the server: the old application's statements run after a
generated migration, and every one that fails was warned of; every warning (but a narrowing's
"if") names a break that happens. Off by default, on by a plan or the review config file."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import Cli, Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.connect.connection import connect
from runner.plan.validate import plan_from_bytes
from runner.review.warnings import warnings

SCHEMA = """
CREATE TABLE orders (
  id int PRIMARY KEY, total bigint, note text, region text DEFAULT 'eu', qty bigint
);
INSERT INTO orders VALUES (1, 5000000000, repeat('n', 300), 'us', 3);
CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 100;
"""

# What the running application does: each statement worked before any migration.
APPLICATION = [
    "SELECT id, total, note, region FROM orders",
    "SELECT * FROM big_orders",
    "INSERT INTO orders (id, total, note, region, qty) "
    "VALUES (100, 6000000000, repeat('x', 300), 'eu', 6000000000)",
    "INSERT INTO orders (id) VALUES (101)",
    "UPDATE orders SET note = 'changed' WHERE id = 1",
]

MIGRATIONS = [
    "ALTER TABLE orders DROP COLUMN note",
    "ALTER TABLE orders DROP COLUMN region",
    "ALTER TABLE orders RENAME COLUMN note TO remark",
    "ALTER TABLE orders RENAME COLUMN total TO amount",
    "DROP VIEW big_orders",
    "ALTER TABLE orders RENAME TO purchases",
    "ALTER TABLE big_orders RENAME TO large_orders",
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(50)",
    "ALTER TABLE orders ALTER COLUMN note TYPE varchar(5000)",
    "ALTER TABLE orders ALTER COLUMN region TYPE varchar(10)",
    "ALTER TABLE orders ALTER COLUMN qty TYPE integer",
    "ALTER TABLE orders ALTER COLUMN qty TYPE smallint",
    "ALTER TABLE orders ALTER COLUMN qty TYPE numeric(5)",
    "ALTER TABLE orders ALTER COLUMN qty TYPE numeric",
    "ALTER TABLE orders ALTER COLUMN note SET NOT NULL",
    "ALTER TABLE orders ALTER COLUMN region SET NOT NULL",
    "ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web'",
    "ALTER TABLE orders ADD COLUMN channel text",
    "ALTER TABLE orders ADD COLUMN rank int",
    "ALTER TABLE orders ADD COLUMN rank int NOT NULL",
    "ALTER TABLE orders ALTER COLUMN note SET DEFAULT ''",
    "CREATE INDEX orders_note ON orders (note)",
]


def _plan(statements: list[str], compat: bool | None = True) -> Any:
    review = f"review: {{compat: {str(compat).lower()}}}\n" if compat is not None else ""
    steps = "".join(f"  - batch: {json.dumps(s)}\n" for s in statements)
    return plan_from_bytes(f"sqlplan: 1\nname: m\n{review}steps:\n{steps}".encode(), "m.yaml")


def _broken(con: Any, statements: list[str]) -> list[str]:
    """The application statements that fail after the migration (each in a savepoint)."""
    failed = []
    con.run("BEGIN")
    try:
        for statement in statements:
            con.run(statement)
        for sql in APPLICATION:
            con.run("SAVEPOINT app")
            try:
                con.run(sql)
            except Exception:
                failed.append(sql)
            con.run("ROLLBACK TO SAVEPOINT app")
    finally:
        con.run("ROLLBACK")
    return failed


def _alive(con: Any) -> None:
    assert _broken(con, []) == []  # the application works on the schema as it is


@pytest.mark.parametrize("statement", MIGRATIONS)
def test_each_migration_alone(database: Database, statement: str) -> None:
    _compare(database, [statement])


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(migration=st.lists(st.sampled_from(MIGRATIONS), min_size=2, max_size=3, unique=True))
def test_every_break_is_warned_of(database: Database, migration: list[str]) -> None:
    _compare(database, migration)


def _compare(database: Database, migration: list[str]) -> None:
    con = connect(database.target)
    try:
        if not con.run("SELECT to_regclass('orders') IS NOT NULL")[0][0]:
            con.run(SCHEMA.replace("\n", " "))
        _alive(con)
        try:
            failed = _broken(con, migration)
        except Exception:
            return  # the migration itself fails (renamed twice, ...): nothing to compare
    finally:
        con.close()
    found = [d for d in warnings(_plan(migration), compat=True) if d.code.startswith("compat-")]
    if failed:
        assert found, (migration, failed)
    # offline the current type and default are unknown: those warnings say "if" or "unless"
    certain = [d for d in found if " if the column " not in d.message and "unless" not in d.message]
    if certain:
        assert failed, (migration, certain)


def test_each_rule_names_what_breaks() -> None:
    found = {
        sql: [
            (d.code, d.message)
            for d in warnings(_plan([sql]), compat=True)
            if d.code.startswith("compat-")
        ]
        for sql in MIGRATIONS
    }
    assert [c for c, _ in found["ALTER TABLE orders DROP COLUMN note"]] == ["compat-drop-column"]
    assert (
        "running code that selects, inserts or updates note fails"
        in found["ALTER TABLE orders DROP COLUMN note"][0][1]
    )
    narrow = dict(found["ALTER TABLE orders ALTER COLUMN region TYPE varchar(10)"])
    assert "varchar(10)" in narrow["compat-narrow-type"]
    assert dict(found["ALTER TABLE orders ADD COLUMN channel text"]) == {}
    assert "compat-not-null" not in dict(
        found["ALTER TABLE orders ADD COLUMN channel text NOT NULL DEFAULT 'web'"]
    )


def test_what_the_plan_created_is_exempt() -> None:
    plan = _plan(
        [
            "ALTER TABLE orders ALTER COLUMN note SET DEFAULT ''",
            "ALTER TABLE orders ALTER COLUMN note SET NOT NULL",
            "CREATE TABLE fresh (id int, a text)",
            "ALTER TABLE fresh DROP COLUMN a",
            "ALTER TABLE orders ADD COLUMN tmp int",
            "ALTER TABLE orders RENAME COLUMN tmp TO kept",
            "DROP TABLE fresh",
        ]
    )
    assert [d.code for d in warnings(plan, compat=True) if d.code.startswith("compat-")] == []


@pytest.mark.parametrize(
    ("in_plan", "in_file", "on"),
    [(None, None, False), (True, None, True), (None, True, True), (False, True, False)],
)
def test_off_by_default_on_by_the_plan_or_the_file(
    cli: Cli, in_plan: bool | None, in_file: bool | None, on: bool
) -> None:
    review = f"review: {{compat: {str(in_plan).lower()}}}\n" if in_plan is not None else ""
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: m\n{review}steps:\n  - batch: ALTER TABLE orders DROP COLUMN note\n",
    )
    if in_file is not None:
        cli.write("sqlplan-review.yaml", f"compat: {str(in_file).lower()}\n")
    result = cli("check", "plan.yaml", "--format", "json")
    codes = [d["code"] for d in json.loads(result.stdout)["diagnostics"]]
    assert ("compat-drop-column" in codes) is on
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: m\n{review}steps:\n  - batch: ALTER TABLE orders DROP COLUMN note\n"
        "    allow: {compat-drop-column: the code stopped reading it in release 41}\n",
    )
    allowed = cli("check", "plan.yaml", "--format", "json")
    assert "compat-drop-column" not in [
        d["code"] for d in json.loads(allowed.stdout)["diagnostics"]
    ]
