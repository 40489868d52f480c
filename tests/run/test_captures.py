"""Captures: a step takes vars from the rows its statement returned, later steps use them as
parameters. A capture that does not get what it takes fails the step, and the step's
transaction is rolled back: nothing it did is kept."""

from __future__ import annotations

import json

from conftest import ROOT, Cli, Database, Result

PLAN = """\
sqlplan: 1
name: captures
vars:
  title: text
steps:
  - batch: CREATE TABLE IF NOT EXISTS books (id serial PRIMARY KEY, title text, author_id int)
  - name: Add the book
    execute: INSERT INTO books (title) VALUES ($1) RETURNING id, title
    params: ["{title}"]
    capture: {book_id: id}
    after: "added {title} as {book_id}"
  - execute: UPDATE books SET author_id = $1 WHERE id = $2
    params: [7, "{book_id}"]
    after: "{count} row for book {book_id}"
  - query: SELECT id FROM books ORDER BY id
    capture_all: {ids: id}
  - query: SELECT count(*) AS n FROM books WHERE id = ANY($1::int[])
    params: ["{ids}"]
    row: "{n} books: {$1}"
"""


def _run(cli: Cli, database: Database, text: str, *args: str) -> Result:
    return cli.run_plan(text, *args, url=database.url)


def test_captured_values_are_used_by_later_steps(cli: Cli, database: Database) -> None:
    first = _run(cli, database, PLAN, "--var", "title=Dune")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == ("added Dune as 1\n1 row for book 1\n1 books: {1}\n")
    second = _run(cli, database, PLAN, "--var", "title=Emma", "--no-pipeline")
    assert second.stdout == "added Emma as 2\n1 row for book 2\n2 books: {1,2}\n"
    assert database.query("SELECT id, title, author_id FROM books ORDER BY id") == [
        [1, "Dune", 7],
        [2, "Emma", 7],
    ]


def test_a_capture_of_several_rows_fails_and_keeps_nothing(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE t (id int)")
    plan = (
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - execute: INSERT INTO t SELECT g FROM generate_series(1, $1) g RETURNING id\n"
        "    params: [3]\n    capture: [id]\n"
        "  - batch: SELECT 1\n"
    )
    result = _run(cli, database, plan)
    assert result.exit_code == 1
    stderr = result.stderr
    assert (
        "plan.yaml:6:15: error: step 1: capture id takes one row, but the statement returned 3 rows"
        in stderr
    )
    assert "its transaction was rolled back: nothing it did was kept" in stderr
    assert "  rolled back: step 1 (plan.yaml:4:5)\n  not run: step 2 (plan.yaml:7:5)\n" in stderr
    assert database.query("SELECT count(*) FROM t") == [[0]]


def test_a_capture_of_a_missing_column_names_the_columns(cli: Cli, database: Database) -> None:
    plan = "sqlplan: 1\nname: p\nsteps:\n  - query: SELECT 1 AS book_id\n    capture: [bookid]\n"
    result = _run(cli, database, plan)
    assert result.exit_code == 1
    assert (
        "capture bookid takes the column 'bookid', but the statement returned no such column "
        "(its columns: book_id); did you mean 'book_id'?"
    ) in result.stderr


def test_captures_are_checked_before_anything_runs(cli: Cli) -> None:
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: p\nvars:\n  id: integer\nsteps:\n"
        "  - execute: SELECT $1\n    params: ['{later}']\n"
        "  - execute: UPDATE t SET a = 1 WHERE a = 2\n    capture: [a]\n"
        "  - query: SELECT 1 AS later, 2 AS id\n    capture: [later, id]\n",
    )
    result = cli("check", "plan.yaml")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "plan.yaml:7:15: error: unknown var {later}" in lines[0]
    assert (
        "plan.yaml:9:15: error: a capture needs the statement's rows, and it returns none"
        in lines[1]
    )
    assert "plan.yaml:11:22: error: var 'id' is already declared or captured" in lines[2]


def test_a_rehearsal_captures_too(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE books (id serial PRIMARY KEY, title text, author_id int)")
    cli.write("plan.yaml", PLAN)
    result = cli(
        "rehearse", "plan.yaml", "--var", "title=Dune", "--format", "json",
        env={"DATABASE_URL": database.url},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    statuses = [s["status"] for s in json.loads(result.stdout)["statements"]]
    assert statuses == ["ran"] * 5
    assert database.query("SELECT count(*) FROM books") == [[0]]


def test_show_says_who_captures_and_who_uses(cli: Cli) -> None:
    cli.write("plan.yaml", PLAN)
    shown = cli("show", "plan.yaml").stdout
    assert "  captures book_id = id\n" in shown
    assert "  uses book_id from step 2 (which captures it)\n" in shown
    assert "  captures ids = every row's id, as a list\n" in shown


def test_the_example_plan_runs(cli: Cli, database: Database) -> None:

    example = ROOT / "plans" / "examples" / "captures.yaml"
    result = _run(cli, database, example.read_text(), "--var", "author=Ursula K. Le Guin")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ("Ursula K. Le Guin is author 1.\n2 titles added.\nTitles {1,2}.\n")
