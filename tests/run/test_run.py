"""`sqlplan run` against a real PostgreSQL: output, counts, transactions and failures."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from conftest import Cli, Database, start_sqlplan, wait_for_statement

from runner.plan.model import BULK_CHUNK_ROWS

BOOKS = """\
sqlplan: 1
name: books
steps:
  - batch: |
      CREATE TABLE books (
          id SERIAL PRIMARY KEY,
          title TEXT NOT NULL UNIQUE,
          year INT,
          in_stock BOOLEAN
      );
"""


def _run(cli: Cli, db: Database, plan: str, name: str = "plan.yaml") -> tuple[int, str, str]:
    result = cli.run_plan(plan, url=db.url, name=name)
    return result.exit_code, result.stdout, result.stderr


def test_execute_prints_after_or_after_no_rows_by_the_real_count(
    cli: Cli, database: Database
) -> None:
    plan = (
        BOOKS
        + """\
  - execute: INSERT INTO books (title, year) VALUES ($1, $2), ($3, $4)
    params: [A, 1, B, 2]
    after: "inserted {count}: {$1} and {$3}"
  - execute: UPDATE books SET in_stock = $1 WHERE year > $2
    params: [true, 1]
    after: "updated {count} (in_stock={$1})"
    after_no_rows: "nothing to update"
  - execute: DELETE FROM books WHERE title = $1
    params: [missing]
    after: "deleted {count}"
    after_no_rows: "'{$1}' not found ({count})"
"""
    )
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == "inserted 2: A and B\nupdated 1 (in_stock=true)\n'missing' not found (0)\n"
    assert database.query("SELECT title, in_stock FROM books ORDER BY id") == [
        ["A", None],
        ["B", True],
    ]


def test_bulk_insert_counts_rows_and_prints_before_and_after(cli: Cli, database: Database) -> None:
    plan = (
        BOOKS
        + """\
  - bulk_insert: INSERT INTO books (title, year, in_stock) VALUES ($1, $2, $3)
    rows:
      - [A, 1990, true]
      - [B, null, false]
      - [C, 2001, null]
    before: "inserting {rows} rows"
    after: "inserted {count} of {rows}"
"""
    )
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == "inserting 3 rows\ninserted 3 of 3\n"
    assert database.query("SELECT title, year, in_stock FROM books ORDER BY id") == [
        ["A", 1990, True],
        ["B", None, False],
        ["C", 2001, None],
    ]


def test_bulk_insert_failing_on_third_row_leaves_none_of_its_rows(
    cli: Cli, database: Database
) -> None:
    plan = (
        BOOKS
        + """\
  - execute: INSERT INTO books (title) VALUES ($1)
    params: [kept]
  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)
    rows:
      - [A, 1]
      - [B, 2]
      - [kept, 3]
      - [D, 4]
    before: starting
    after: never printed
"""
    )
    code, out, err = _run(cli, database, plan)
    assert code == 1
    assert out == "starting\n"
    lines = err.splitlines()
    assert lines[0].startswith("plan.yaml:13:5: error: step 3 failed: duplicate key value")
    assert lines[0].endswith("[23505]")
    assert "  detail: Key (title)=(kept) already exists." in lines
    assert "  row: 3 (at plan.yaml:17:9)" in lines
    assert "  the transaction was rolled back: none of the 4 rows were inserted" in lines
    assert database.query("SELECT title FROM books") == [["kept"]]


def test_bulk_insert_larger_than_a_chunk_is_still_all_or_nothing(
    cli: Cli, database: Database
) -> None:
    total = BULK_CHUNK_ROWS * 2 + 500
    rows = "".join(f"      - [t{i}, {i}]\n" for i in range(total))
    ok = (
        BOOKS
        + "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows:\n"
        + rows
    )
    ok += "    after: inserted {count}\n"
    code, out, err = _run(cli, database, ok)
    assert (code, out, err) == (0, f"inserted {total}\n", "")
    assert database.query("SELECT count(*), sum(year) FROM books") == [
        [total, total * (total - 1) // 2]
    ]

    # The same load into a fresh table, with a duplicate in the last chunk: nothing stays.
    failing = ok.replace("CREATE TABLE books", "DROP TABLE books; CREATE TABLE books")
    failing = failing.replace(f"[t{total - 2}, ", f"[t{total - 3}, ")
    code, out, err = _run(cli, database, failing, "failing.yaml")
    assert code == 1
    assert f"  row: {total - 1} (at failing.yaml:" in err
    assert database.query("SELECT count(*) FROM books") == [[0]]


def test_query_renders_values_as_a_reader_expects(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: values
steps:
  - query: |
      SELECT 1 AS n, NULL::text AS nothing, true AS yes, false AS no,
             1.50::numeric AS price, DATE '2024-02-29' AS day, ARRAY[1,2] AS arr,
             '{"a": 1}'::jsonb AS doc, $1::text AS param
    params: [p]
    header: "{count} row(s) for {$1}"
    row: "{n}|{nothing}|{yes}|{no}|{price}|{day}|{arr}|{doc}|{param}|{{literal}}"
    footer: end
"""
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert (
        out == '1 row(s) for p\n1|NULL|true|false|1.50|2024-02-29|{1,2}|{"a": 1}|p|{literal}\nend\n'
    )


def test_query_null_text_and_empty_message(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: empty
null_text: "(none)"
steps:
  - query: SELECT NULL::int AS v
    row: "v={v}"
  - query: SELECT 1 AS v WHERE false
    header: "--- {count} ---"
    row: "v={v}"
    empty: nothing here
    footer: "---"
"""
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == "v=(none)\n--- 0 ---\nnothing here\n---\n"


def test_unknown_column_in_row_template_fails_before_printing(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: typo
steps:
  - query: SELECT 1 AS title
    header: never printed
    row: "Title: {titel}"
"""
    code, out, err = _run(cli, database, plan)
    assert (code, out) == (1, "")
    assert err == (
        "plan.yaml:6:18: error: step 1: the row template uses {titel}, but the query returned "
        "no such column (its columns: title); did you mean {title}?\n"
        "what the server confirmed:\n"
        "  rolled back: step 1 (plan.yaml:4:5)\n"
    )


def test_sql_error_points_at_the_line_and_column_in_the_plan(cli: Cli, database: Database) -> None:
    plan = (
        BOOKS
        + """\
  - name: Broken query
    query: |
      SELECT id,
             titel
        FROM books
    row: "{id}"
"""
    )
    code, out, err = _run(cli, database, plan)
    assert (code, out) == (1, "")
    assert err.splitlines()[:3] == [
        'plan.yaml:14:14: error: step 2 "Broken query" failed: column "titel" does not exist [42703]',
        "           titel",
        "           ^",
    ]


def test_failing_batch_is_rolled_back_as_one_transaction(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: batch
steps:
  - batch: |
      CREATE TABLE a (id int);
      INSERT INTO a VALUES (1);
      INSERT INTO a VALUES ('not a number');
"""
    code, _, err = _run(cli, database, plan)
    assert code == 1
    assert "invalid input syntax for type integer" in err
    assert database.query("SELECT to_regclass('a') IS NULL") == [[True]]


def test_transaction_left_open_by_a_failure_is_rolled_back(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: explicit
steps:
  - batch: |
      CREATE TABLE a (id int PRIMARY KEY);
  - batch: |
      BEGIN;
      INSERT INTO a VALUES (1);
  - execute: INSERT INTO a VALUES ($1)
    params: [1]
"""
    code, _, err = _run(cli, database, plan)
    assert code == 1
    assert "  the open transaction was rolled back" in err.splitlines()
    assert database.query("SELECT count(*) FROM a") == [[0]]


def test_values_travel_as_bind_parameters(cli: Cli, database: Database) -> None:
    hostile = "x'); DROP TABLE books; --"
    plan = (
        BOOKS
        + f"""\
  - execute: INSERT INTO books (title) VALUES ($1)
    params: ["{hostile}"]
  - query: SELECT title FROM books WHERE title = $1
    params: ["{hostile}"]
    row: "{{title}}"
"""
    )
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == hostile + "\n"


def test_yaml_scalars_follow_yaml_1_2(cli: Cli, database: Database) -> None:
    # YAML 1.1 would read NO as false, 1:20 as 80 and 017 as 15.
    plan = """\
sqlplan: 1
name: scalars
steps:
  - query: SELECT $1::text AS a, $2::text AS b, $3::int AS c, $4::text AS d, $5::bool AS e
    params: [NO, "1:20", 017, 2024-01-01, true]
    row: "{a} {b} {c} {d} {e}"
"""
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == "NO 1:20 17 2024-01-01 true\n"


def test_on_connect_and_messages_are_plain_stdout(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: messages
on_connect: "connected {{to}} the server"
steps:
  - batch: SELECT 1
    before: "before: 100% {{ok}}"
    after: done
"""
    code, out, err = _run(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == "connected {to} the server\nbefore: 100% {ok}\ndone\n"


def test_server_warnings_go_to_stderr_with_the_step_position(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: warnings
steps:
  - batch: DROP TABLE IF EXISTS nothing_here
    after: dropped
  - name: Stray commit
    batch: COMMIT
    after: committed
"""
    code, out, err = _run(cli, database, plan)
    assert (code, out) == (0, "dropped\ncommitted\n")
    # the NOTICE of the first step is chatter; the WARNING of the second is shown
    assert err == (
        'plan.yaml:7:5: warning: step 2 "Stray commit": the server warns: '
        "there is no transaction in progress [25P01]\n"
    )


def test_a_transaction_left_open_at_the_end_is_an_error(cli: Cli, database: Database) -> None:
    plan = """\
sqlplan: 1
name: uncommitted
steps:
  - batch: CREATE TABLE a (id int)
  - name: Open
    batch: |
      BEGIN;
      INSERT INTO a VALUES (1);
  - execute: INSERT INTO a VALUES ($1)
    params: [2]
    after: inserted {count}
"""
    code, out, err = _run(cli, database, plan)
    assert (code, out) == (1, "inserted 1\n")
    assert err == (
        'plan.yaml:6:5: error: step 2 "Open" opened a transaction that no later step committed; '
        "it was rolled back (end the plan with a COMMIT)\n"
        "what the server confirmed:\n"
        "  committed: step 1 (plan.yaml:4:5)\n"
        '  rolled back: step 2 "Open" (plan.yaml:6:5), step 3 (plan.yaml:9:5)\n'
    )
    assert database.query("SELECT count(*) FROM a") == [[0]]
    # with the COMMIT, the same plan keeps its rows
    code, _, err = _run(
        cli,
        database,
        plan.replace("CREATE TABLE a (id int)", "DELETE FROM a") + "  - batch: COMMIT\n",
    )
    assert (code, err) == (0, "")
    assert database.query("SELECT count(*) FROM a") == [[2]]


def test_interrupt_exits_130_and_the_server_rolls_back(database: Database, tmp_path: Path) -> None:
    plan = tmp_path / "slow.yaml"
    plan.write_text("""\
sqlplan: 1
name: slow
steps:
  - batch: CREATE TABLE s (id int)
  - batch: BEGIN; INSERT INTO s VALUES (1)
  - query: SELECT pg_sleep(30) AS z
    row: "{z}"
""")
    process = start_sqlplan("run", str(plan), env={"DATABASE_URL": database.url})
    wait_for_statement(database.query, "SELECT pg_sleep%")
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130
    assert err.splitlines()[1:] == [
        f"{plan}:6:5: error: interrupted (Ctrl-C) at step 3: the running statement was "
        "cancelled and what it had not committed rolled back",
        "what the server confirmed:",
        f"  committed: step 1 ({plan}:4:5)",
        f"  rolled back: step 2 ({plan}:5:5), step 3 ({plan}:6:5)",
    ]
    # the cancel request stopped the 30 s sleep on the server too
    deadline = time.monotonic() + 5
    while database.query(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%'"
    )[0][0]:
        assert time.monotonic() < deadline, "the statement was not cancelled"
        time.sleep(0.05)
    assert database.query("SELECT count(*) FROM s") == [[0]]
