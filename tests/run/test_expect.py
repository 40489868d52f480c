"""Expectations: a step's `expect` is checked before the step commits; a failed one stops the
plan with exit 7, the difference, and nothing of the step kept. Whether a query's rows match,
in any order, is decided as PostgreSQL's own EXCEPT ALL decides it (a differential test)."""

from __future__ import annotations

import json
from typing import Any

from conftest import ROOT, Cli, Database, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from value_oracle import yaml_value


def _run(cli: Cli, database: Database, text: str, *args: str) -> Result:
    return cli.run_plan(text, *args, url=database.url)


SETUP = """\
sqlplan: 1
name: p
steps:
  - batch: CREATE TABLE IF NOT EXISTS books (id int PRIMARY KEY, title text, active boolean, price numeric)
  - bulk_insert: INSERT INTO books VALUES ($1, $2, $3, $4)
    rows: [[1, Dune, true, 9.50], [2, Emma, false, null], [3, Ulysses, true, 12.00]]
"""


def test_counts_rows_and_errors_that_hold_let_the_plan_go_on(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
    expect: {count: 3}
  - execute: UPDATE books SET active = NOT active WHERE id > $1
    params: [1]
    expect: {count: {min: 1, max: 2}}
    after: "{count} changed"
  - execute: INSERT INTO books VALUES ($1, 'Again', true, 1)
    params: [1]
    expect: {error: "23505"}
    after: "the duplicate was refused"
  - query: SELECT id, title, active, price FROM books ORDER BY id
    expect:
      rows:
        - {id: 1, title: Dune, active: true, price: 9.50}
        - {id: 2, title: Emma, active: true, price: null}
        - {id: 3, title: Ulysses, active: false, price: 12.00}
  - query: SELECT title FROM books
    expect: {rows: [{title: Ulysses}, {title: Dune}, {title: Emma}], ordered: false}
"""
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "2 changed\nthe duplicate was refused\n"
    assert database.query("SELECT count(*) FROM books WHERE title = 'Again'") == [[0]]


def test_a_failed_count_keeps_nothing_and_exits_7(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
  - execute: UPDATE books SET title = upper(title) WHERE id >= $1
    params: [1]
    expect: {count: 2}
  - batch: SELECT 1
"""
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 7
    assert "plan.yaml:9:5: error: step 3: expected 2 rows affected, got 3\n" in result.stderr
    assert "its transaction was rolled back: nothing it did was kept" in result.stderr
    assert "  rolled back: step 3 (plan.yaml:7:5)\n  not run: step 4" in result.stderr
    assert database.query("SELECT title FROM books ORDER BY id") == [
        ["Dune"],
        ["Emma"],
        ["Ulysses"],
    ]


def test_wrong_rows_show_the_difference(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
  - query: SELECT id, title FROM books ORDER BY id
    expect:
      rows:
        - {id: 1, title: Dune}
        - {id: 2, title: Emma}
        - {id: 3, title: Ulises}
"""
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 7
    assert (
        "step 3: the rows are not the expected ones (- expected, + returned)\n"
        "      {id: 1, title: Dune}\n"
        "      {id: 2, title: Emma}\n"
        "    - {id: 3, title: Ulises}\n"
        "    + {id: 3, title: Ulysses}\n"
    ) in result.stderr


def test_a_negative_test_that_succeeds_fails_and_is_undone(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
  - execute: INSERT INTO books VALUES ($1, 'New', true, 1)
    params: [4]
    expect: {error: "23505"}
"""
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 7
    assert "step 3: expected it to fail with 23505, but it succeeded" in result.stderr
    assert database.query("SELECT count(*) FROM books") == [[3]]


def test_a_negative_test_inside_a_transaction_block_lets_the_block_go_on(
    cli: Cli, database: Database
) -> None:
    plan = (
        SETUP
        + """\
  - batch: BEGIN
  - execute: INSERT INTO books VALUES ($1, 'Kept', true, 1)
    params: [4]
  - execute: INSERT INTO books VALUES ($1, 'Duplicate', true, 1)
    params: [4]
    expect: {error: "23505"}
  - execute: INSERT INTO books VALUES ($1, 'Also kept', true, 1)
    params: [5]
  - batch: COMMIT
"""
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 0, result.stderr
    assert database.query("SELECT id, title FROM books WHERE id > 3 ORDER BY id") == [
        [4, "Kept"],
        [5, "Also kept"],
    ]


def test_a_bulk_load_that_misses_its_count_inserts_nothing(cli: Cli, database: Database) -> None:
    plan = SETUP.replace("rows: [[1,", "expect: {count: {max: 2}}\n    rows: [[1,")
    result = _run(cli, database, plan)
    assert result.exit_code == 7
    assert "expected at most 2 rows affected, got 3" in result.stderr
    assert "none of its rows were inserted" in result.stderr
    assert database.query("SELECT count(*) FROM books") == [[0]]


def test_expectations_use_vars(cli: Cli, database: Database) -> None:
    plan = (
        SETUP.replace("name: p\n", "name: p\nvars:\n  title: text\n")
        + """\
  - query: SELECT title FROM books WHERE id = 1
    expect: {rows: [{title: "{title}"}]}
"""
    )
    assert _run(cli, database, plan, "--var", "title=Dune").exit_code == 0
    database.query("DROP TABLE books")
    assert _run(cli, database, plan, "--var", "title=Emma").exit_code == 7


def test_expectations_are_checked_before_running(cli: Cli) -> None:
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - execute: DELETE FROM t WHERE a = $1\n    params: [1]\n    expect: {rows: [{a: 1}]}\n"
        "  - execute: DELETE FROM t WHERE a = $1\n    params: [1]\n    expect: {error: '23505', count: 1}\n"
        "  - query: SELECT a, b FROM t\n    expect: {rows: [{a: 1}, {b: 2}]}\n"
        "  - query: SELECT 1\n    expect: {count: {min: 3, max: 2}}\n",
    )
    result = cli("check", "plan.yaml")
    assert result.exit_code == 1
    lines = [line.split(": error: ")[1] for line in result.stdout.splitlines()]
    assert lines == [
        "expect.rows is for query steps (expect a count here) [expect]",
        "expect.error is a negative test: it cannot be combined with count or rows [expect]",
        "expected row 2 names b, but row 1 names a: each expected row names the same columns [expect]",
        "expect.count: min 3 is more than max 2 [expect]",
    ]


def test_a_rehearsal_checks_expectations_and_survives_a_negative_test(
    cli: Cli, database: Database
) -> None:
    database.query(
        "CREATE TABLE books (id int PRIMARY KEY, title text, active boolean, price numeric)"
    )
    database.query("INSERT INTO books VALUES (1, 'Dune', true, 1)")
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - execute: INSERT INTO books VALUES ($1, 'x', true, 1)\n    params: [1]\n"
        "    expect: {error: '23505'}\n"
        "  - query: SELECT count(*) AS n FROM books\n    expect: {rows: [{n: 1}]}\n",
    )
    result = cli("rehearse", "plan.yaml", "--format", "json", env={"DATABASE_URL": database.url})
    assert result.exit_code == 0, result.stderr
    statements = json.loads(result.stdout)["statements"]
    assert [s["status"] for s in statements] == ["ran", "ran"]
    assert statements[0]["detail"] == "failed with 23505, as the plan expects"


_TEXTS = st.lists(st.sampled_from(["a", "b", "B", "", "null", " a", "{x}"]) | st.none(), max_size=5)


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=_TEXTS, expected=_TEXTS)
def test_unordered_rows_match_as_except_all_says(
    cli: Cli, database: Database, con: Any, table: list[str | None], expected: list[str | None]
) -> None:
    """sqlplan's `ordered: false` passes exactly when PostgreSQL finds no row in either side
    EXCEPT ALL the other (NULLs equal, as EXCEPT treats them)."""
    con.run("DROP TABLE IF EXISTS got, want")
    con.run("CREATE TABLE got (t text)")
    con.run("CREATE TABLE want (t text)")
    for value in table:
        con.run("INSERT INTO got VALUES (:v)", v=value)
    for value in expected:
        con.run("INSERT INTO want VALUES (:v)", v=value)
    differs = con.run(
        "SELECT count(*) FROM ((SELECT t FROM got EXCEPT ALL SELECT t FROM want) "
        "UNION ALL (SELECT t FROM want EXCEPT ALL SELECT t FROM got)) d"
    )[0][0]
    rows = "[" + ", ".join("{t: " + yaml_value(v) + "}" for v in expected) + "]"
    result = _run(
        cli,
        database,
        f"sqlplan: 1\nname: p\nsteps:\n  - query: SELECT t FROM got\n"
        f"    expect: {{rows: {rows}, ordered: false}}\n",
    )
    assert result.exit_code == (0 if differs == 0 else 7), (table, expected, result.stderr)


def test_the_example_plan_runs_twice(cli: Cli, database: Database) -> None:

    example = ROOT / "plans" / "examples" / "expect.yaml"
    for _ in range(2):
        result = _run(cli, database, example.read_text())
        assert result.exit_code == 0, result.stderr
        assert result.stdout == (
            "The shelf refused a second Dune.\n1 book dated again.\nDune (1966)\nEmma (1815)\n"
        )
