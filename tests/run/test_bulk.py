"""Bulk inserts: the COPY path and the row-by-row path give the same counts, messages, errors
and all-or-nothing outcome; rows from CSV and JSON Lines files, typed values round-trip."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Cli, Database

from runner.plan.model import BULK_CHUNK_ROWS, BulkInsertStep
from runner.plan.validate import parse_plan

TABLE = """\
sqlplan: 1
name: bulk
steps:
  - batch: |
      CREATE TABLE IF NOT EXISTS books (
          id SERIAL PRIMARY KEY,
          title TEXT NOT NULL UNIQUE,
          year INT CHECK (year > 0)
      );
"""
# The same insert, as COPY can do it and as it cannot (so it goes row by row).
PATHS = {
    "copy": "INSERT INTO books (title, year) VALUES ($1, $2)",
    "rows": "INSERT INTO books (title, year) SELECT $1, $2",
}


def _step(statement: str, rows: str, after: str = "inserted {count} of {rows}") -> str:
    return TABLE + f'  - name: Load\n    bulk_insert: {statement}\n{rows}    after: "{after}"\n'


def _inline(rows: list[tuple[str, object]]) -> str:
    return "    rows:\n" + "".join(f"      - [{json.dumps(t)}, {json.dumps(y)}]\n" for t, y in rows)


def _run(cli: Cli, db: Database, text: str) -> tuple[int, str, str]:
    result = cli.run_plan(text, url=db.url)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("path", PATHS)
def test_the_statement_decides_the_path(path: str) -> None:
    step = parse_plan(_step(PATHS[path], _inline([("a", 1)])), "p.yaml").steps[1]
    assert isinstance(step, BulkInsertStep)
    assert (step.copy_sql is not None) == (path == "copy")


@pytest.mark.parametrize("path", PATHS)
def test_success_counts_the_same_on_every_path(cli: Cli, database: Database, path: str) -> None:
    code, out, err = _run(
        cli, database, _step(PATHS[path], _inline([("a", 1), ("b", None), ("c\tt\\n", 3)]))
    )
    assert (code, out, err) == (0, "inserted 3 of 3\n", "")
    assert database.query("SELECT title, year FROM books ORDER BY id") == [
        ["a", 1],
        ["b", None],
        ["c\tt\\n", 3],
    ]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (("a", 9), 'duplicate key value violates unique constraint "books_title_key" [23505]'),
        (
            ("z", -1),
            'new row for relation "books" violates check constraint "books_year_check" [23514]',
        ),
        (("z", "x"), 'invalid input syntax for type integer: "x" [22P02]'),
        (
            (None, 1),
            'null value in column "title" of relation "books" violates not-null constraint [23502]',
        ),
    ],
)
def test_a_failing_row_fails_alike_on_every_path(
    cli: Cli, database: Database, path: str, bad: tuple[str, object], message: str
) -> None:
    rows = [("a", 1), ("b", 2), bad, ("d", 4)]
    code, out, err = _run(cli, database, _step(PATHS[path], _inline(rows)))
    assert (code, out) == (1, "")
    lines = err.splitlines()
    assert lines[0] == f'plan.yaml:11:5: error: step 2 "Load" failed: {message}'
    assert "  row: 3 (at plan.yaml:15:9)" in lines
    assert lines[-4:] == [
        "  the transaction was rolled back: none of the 4 rows were inserted",
        "what the server confirmed:",
        "  committed: step 1 (plan.yaml:4:5)",
        '  rolled back: step 2 "Load" (plan.yaml:11:5)',
    ]
    assert database.query("SELECT count(*) FROM books") == [[0]]


@pytest.mark.parametrize("path", PATHS)
def test_loads_larger_than_a_chunk_on_every_path(
    cli: Cli, database: Database, path: str, tmp_path: Path
) -> None:
    total = BULK_CHUNK_ROWS * 3 + 7
    data = cli.cwd / "books.csv"
    data.write_text("title,year\n" + "".join(f"t{i},{i + 1}\n" for i in range(total)))
    source = "    rows_from:\n      file: books.csv\n"
    assert _run(cli, database, _step(PATHS[path], source)) == (
        0,
        f"inserted {total} of {total}\n",
        "",
    )
    assert database.query("SELECT count(*), sum(year) FROM books") == [
        [total, total * (total + 1) // 2]
    ]
    # a duplicate in the last chunk: nothing of the load stays
    database.query("TRUNCATE books")
    with data.open("a") as f:
        f.write("t5,1\n")
    code, _, err = _run(cli, database, _step(PATHS[path], source))
    assert code == 1
    assert f"  row: {total + 1} (at books.csv:{total + 2}:1)" in err.splitlines()
    assert database.query("SELECT count(*) FROM books") == [[0]]


ROUND_TRIP = """\
sqlplan: 1
name: types
steps:
  - batch: |
      DROP TABLE IF EXISTS typed;
      CREATE TABLE typed (
          i bigint, n numeric, b boolean, t text, d date, ts timestamptz,
          j json, jb jsonb, a int[], ta text[]
      );
  - bulk_insert: |
      INSERT INTO typed (i, n, b, t, d, ts, j, jb, a, ta)
      VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    rows_from:
      file: {file}
{options}  - query: |
      SELECT i::text, n::text, b::text, t, d::text, ts::text, j::text, jb::text, a::text, ta::text
        FROM typed ORDER BY i NULLS LAST
    row: "{{i}}|{{n}}|{{b}}|{{t}}|{{d}}|{{ts}}|{{j}}|{{jb}}|{{a}}|{{ta}}"
"""
EXPECTED_TYPED = (
    # a quoted "" is an empty string (the || after false), an empty field is NULL
    "-1|-0.000001|false||1999-12-31|1999-12-31 23:59:59+00|null|[]|{}|{}\n"
    '9007199254740993|12.50|true|"quoted", and, commas|2024-02-29|2024-03-01 12:30:00.5+00|{"k": [1, 2]}|{"k": "v"}|{1,2,NULL}|{"a b",c}\n'
    "NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL|NULL\n"
)


def _run_in_utc(cli: Cli, db: Database, plan: str) -> tuple[int, str, str]:
    """Run a plan with timestamps shown in UTC, whatever the machine's zone."""
    cli.write("plan.yaml", plan)
    result = cli("run", "plan.yaml", env={"DATABASE_URL": db.url, "PGTZ": "UTC"})
    return result.exit_code, result.stdout, result.stderr


def test_csv_values_round_trip_exactly(cli: Cli, database: Database) -> None:
    (cli.cwd / "typed.csv").write_text(
        "i;n;b;t;d;ts;j;jb;a;ta\n"
        '9007199254740993;12.50;t;"""quoted"", and, commas";2024-02-29;2024-03-01 12:30:00.5+00;'
        '"{""k"": [1, 2]}";"{""k"":""v""}";"{1,2,NULL}";"{""a b"",c}"\n'
        '-1;-0.000001;false;"";1999-12-31;1999-12-31 23:59:59Z;null;[];{};{}\n'
        ";;;;;;;;;\n"
    )
    plan = ROUND_TRIP.format(file="typed.csv", options="      delimiter: ';'\n")
    assert _run_in_utc(cli, database, plan) == (0, EXPECTED_TYPED, "")


def test_jsonl_values_round_trip_exactly(cli: Cli, database: Database) -> None:
    (cli.cwd / "typed.jsonl").write_text(
        '{"i": 9007199254740993, "n": 12.50, "b": true, "t": "\\"quoted\\", and, commas", "d": "2024-02-29",'
        ' "ts": "2024-03-01T12:30:00.5Z", "j": {"k": [1, 2]}, "jb": {"k": "v"}, "a": "{1,2,NULL}", "ta": "{\\"a b\\",c}"}\n'
        "\n"
        '[-1, -0.000001, false, "", "1999-12-31", "1999-12-31 23:59:59+00", null, [], "{}", "{}"]\n'
        '{"i": null, "n": null, "b": null, "t": null, "d": null, "ts": null, "j": null, "jb": null, "a": null, "ta": null}\n'
    )
    keys = "[i, n, b, t, d, ts, j, jb, a, ta]"
    code, _, err = _run_in_utc(
        cli, database, ROUND_TRIP.format(file="typed.jsonl", options=f"      fields: {keys}\n")
    )
    assert code == 1  # the array line cannot be mapped by key names
    assert "typed.jsonl:3:" in err
    # arrays by position, objects by key: one file of each
    lines = (cli.cwd / "typed.jsonl").read_text().splitlines()
    (cli.cwd / "objects.jsonl").write_text("\n".join([lines[0], lines[3]]) + "\n")
    (cli.cwd / "arrays.jsonl").write_text(lines[2] + "\n")
    plan = ROUND_TRIP.format(file="objects.jsonl", options=f"      fields: {keys}\n")
    plan = plan.replace("  - query:", "  - bulk_insert: INSERT INTO typed (i, n, b, t, d, ts, j, jb, a, ta) "
                        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)\n    rows_from:\n      file: arrays.jsonl\n  - query:")  # fmt: skip
    # JSON null is NULL, where the CSV had the JSON text null
    expected = EXPECTED_TYPED.replace("|null|[]|{}|{}", "|NULL|[]|{}|{}")
    assert _run_in_utc(cli, database, plan) == (0, expected, "")


def test_csv_without_header_fields_by_position_and_a_null_marker(
    cli: Cli, database: Database
) -> None:
    # with NULL '\\N', an unquoted \\N is NULL and an empty field an empty string
    (cli.cwd / "b.csv").write_text('1990|"multi\nline"|x\n\\N|\\N|y\n')
    source = "    rows_from:\n      file: b.csv\n      header: false\n      delimiter: '|'\n      null_string: '\\N'\n      fields: [2, 1]\n"
    code, _out, err = _run(cli, database, _step(PATHS["copy"], source))
    assert code == 1
    assert 'null value in column "title"' in err
    assert "  row: 2 (at b.csv:3:1)" in err.splitlines()  # the second row starts on line 3
    (cli.cwd / "b.csv").write_text('1990|"multi\nline"|x\n\\N|"\\N"|y\n')  # a quoted \\N is text
    assert _run(cli, database, _step(PATHS["copy"], source)) == (0, "inserted 2 of 2\n", "")
    assert database.query("SELECT title, year FROM books ORDER BY id") == [
        ["multi\nline", 1990],
        ["\\N", None],
    ]


@pytest.mark.parametrize("path", PATHS)
def test_a_malformed_file_fails_with_its_line_and_inserts_nothing(
    cli: Cli, database: Database, path: str
) -> None:
    rows = "".join(f"t{i},{i}\n" for i in range(1, 2500)) + '"unclosed,1\nlast,2\n'
    (cli.cwd / "bad.csv").write_text("title,year\n" + rows)
    code, out, err = _run(
        cli, database, _step(PATHS[path], "    rows_from:\n      file: bad.csv\n")
    )
    assert (code, out) == (1, "")
    # COPY gets the file as it is and PostgreSQL's parser finds the problem; row by row, sqlplan's
    # own CSV reader does. Either way: the line, and not one row inserted.
    if path == "copy":
        assert err.splitlines()[:2] == [
            'plan.yaml:11:5: error: step 2 "Load" failed: unterminated CSV quoted field [22P04]',
            "  row: 2500 (at bad.csv:2501:1)",
        ]
    else:
        assert err.splitlines()[0] == (
            'bad.csv:2501:1: error: step 2 "Load" failed: unterminated CSV quoted field'
        )
    assert database.query("SELECT count(*) FROM books") == [[0]]


def test_file_problems_found_before_running(cli: Cli) -> None:
    (cli.cwd / "h.csv").write_text("name,year\nx,1\n")
    plan = TABLE + (
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows_from:\n      file: missing.csv\n"
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows_from:\n      file: h.csv\n      fields: [title, year]\n"
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows_from:\n      file: h.txt\n"
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows: [[a, 1]]\n    rows_from:\n      file: h.csv\n"
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows_from:\n      file: h.csv\n    before: '{rows} rows'\n"
    )
    cli.write("plan.yaml", plan)
    result = cli("check", "plan.yaml")
    assert result.stdout.splitlines() == [
        "plan.yaml:12:13: error: no file 'missing.csv' beside the plan (looked for missing.csv) [rows-from]",
        "plan.yaml:16:15: error: h.csv:1:1: the header has no field 'title' (it has name, year) [rows-from]",
        "plan.yaml:19:13: error: cannot tell the format of 'h.txt' from its extension: add format: csv or jsonl [rows-from]",
        "plan.yaml:20:5: error: a bulk_insert step needs either rows or rows_from (one of them) [missing-key]",
        "plan.yaml:27:14: error: unknown field {rows}: 'before' has no fields (write {{ and }} for literal braces) [template-field]",
    ]


def test_progress_shows_on_a_terminal_only(database: Database, tmp_path: Path) -> None:
    rows = 400_000
    (tmp_path / "big.csv").write_text(
        "title,year\n" + "".join(f"t{i},{i + 1}\n" for i in range(rows))
    )
    (tmp_path / "plan.yaml").write_text(
        _step(PATHS["copy"], "    rows_from:\n      file: big.csv\n")
    )
    env = {**os.environ, "DATABASE_URL": database.url}
    piped = subprocess.run([sys.executable, "-m", "runner", "run", "plan.yaml"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert piped.returncode == 0
    assert "%" not in piped.stderr  # no bar when stderr is not a terminal
    database.query("TRUNCATE books")
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", "plan.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=secondary)  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    stdout = process.communicate(timeout=60)[0]
    os.close(primary)
    assert process.returncode == 0
    assert stdout == f"inserted {rows} of {rows}\n".encode()
    assert b'step 2 "Load" from big.csv' in seen
    assert b"100%" in seen


def _on_a_terminal(tmp_path: Path, env: dict[str, str], stop: bool) -> tuple[int, bytes]:
    """`sqlplan run plan.yaml` with stderr on a terminal; `stop`: Ctrl-C once the bar shows."""
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", "plan.yaml"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=secondary)  # fmt: skip
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if stop and b"%" in seen and process.poll() is None:
            process.send_signal(signal.SIGINT)
            stop = False
    process.communicate(timeout=60)
    os.close(primary)
    return process.returncode, seen


@pytest.mark.parametrize("how", ["interrupted", "failed"])
def test_the_terminal_is_restored_however_a_load_ends(
    database: Database, tmp_path: Path, how: str
) -> None:
    """The bar hides the cursor while it draws; a load that is interrupted or fails gives it
    back and ends the bar's line before the error."""
    rows = 600_000
    bad = '"unterminated\n' if how == "failed" else ""
    (tmp_path / "big.csv").write_text(
        "title,year\n" + "".join(f"t{i},{i + 1}\n" for i in range(rows)) + bad
    )
    (tmp_path / "plan.yaml").write_text(
        _step(PATHS["rows"], "    rows_from:\n      file: big.csv\n")
    )
    env = {**os.environ, "DATABASE_URL": database.url}
    code, seen = _on_a_terminal(tmp_path, env, stop=how == "interrupted")
    assert code == (130 if how == "interrupted" else 1), seen[-2000:]
    hidden, shown = seen.rfind(b"\x1b[?25l"), seen.rfind(b"\x1b[?25h")
    assert 0 <= hidden < shown, seen[-2000:]
    error = seen.index(b"error: ", shown)
    assert b"\n" in seen[shown:error]  # the error starts a line of its own


@pytest.mark.parametrize(
    ("data", "where", "message"),
    [
        (
            "title,year\na,1\nb,2,extra\n",
            "bad.csv:3:5",
            "the record has 3 fields, but the statement takes 2",
        ),
        ("title,year\na,1\r\nb,2\n", "bad.csv:2:4", "unquoted carriage return found in data"),
        ('title,year\na,1\nb,"2\n', "bad.csv:3:3", "unterminated CSV quoted field"),
        ("title,year\na,1\nb,\xff\n", "bad.csv:3:3", "the file is not valid UTF-8 (byte 0xff)"),
    ],
)
def test_a_file_error_names_its_line_and_column(
    cli: Cli, database: Database, data: str, where: str, message: str
) -> None:
    (cli.cwd / "bad.csv").write_bytes(data.encode("latin-1"))
    # a statement COPY cannot do, so that sqlplan's own reader reads the file
    code, out, err = _run(
        cli, database, _step(PATHS["rows"], "    rows_from:\n      file: bad.csv\n")
    )
    assert (code, out) == (1, "")
    assert err.splitlines()[0] == f'{where}: error: step 2 "Load" failed: {message}'
    assert database.query("SELECT count(*) FROM books") == [[0]]


@pytest.mark.parametrize(
    ("statement", "fields"),
    [
        # parsed by sqlplan and sent as COPY (the fields in another order than the file's)
        ("INSERT INTO books (title, year) VALUES ($2, $1)", "      fields: [year, title]\n"),
        (PATHS["rows"], ""),  # parsed and sent row by row
    ],
    ids=["copy", "rows"],
)
@pytest.mark.parametrize("bad", [2, 70_001, 139_999])
def test_a_record_of_the_wrong_width_anywhere_names_its_line_and_column(
    cli: Cli, database: Database, statement: str, fields: str, bad: int
) -> None:
    """Past the first block of a file larger than one read, quoted records on both sides of
    the bad one (read a batch at a time): its own line and column, and nothing inserted."""
    lines = ["title,year"]
    for i in range(2, 140_001):
        lines.append(f'"t,{i}",{i}' if i % 3 else f"t{i},{i}")
    lines[bad - 1] = f"t{bad},{bad},extra"
    (cli.cwd / "wide.csv").write_text("\n".join(lines) + "\n")
    code, out, err = _run(
        cli, database, _step(statement, f"    rows_from:\n      file: wide.csv\n{fields}")
    )
    assert (code, out) == (1, "")
    column = len(f"t{bad},{bad},") + 1  # where the field past the second starts
    expected = "the header has 2" if fields else "the statement takes 2"
    assert err.splitlines()[0] == (
        f'wide.csv:{bad}:{column}: error: step 2 "Load" failed: the record has 3 fields, but '
        f"{expected}"
    )
    assert database.query("SELECT count(*) FROM books") == [[0]]
