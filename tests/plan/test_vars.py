"""Vars: declared with a type, given as --var, --vars FILE or an environment variable, bound as
parameters and never pasted into SQL. What sqlplan accepts for a type, PostgreSQL reads as the
same value (a differential test against the server's own input functions); a bad value is a
diagnostic before any connection; a secret never appears in any output."""

from __future__ import annotations

import json
import string
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import Position
from runner.plan.model import Var
from runner.plan.values import sql_text
from runner.plan.vars import VarValueError, from_text

COLUMN = {
    "text": "text",
    "smallint": "smallint",
    "integer": "integer",
    "bigint": "bigint",
    "numeric": "numeric",
    "boolean": "boolean",
    "date": "date",
    "timestamptz": "timestamptz",
    "json": "jsonb",
    "list": "text[]",
}

_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30)
_JUNK = st.text(alphabet=string.printable, max_size=12)


def _offsets() -> st.SearchStrategy[timezone]:
    return st.integers(-14 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def _json() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | _TEXT
        | st.floats(allow_nan=False, allow_infinity=False)
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=6,
    )


# Texts for each type: mostly well-formed, with junk mixed in to find what is accepted wrongly.
TEXTS: dict[str, st.SearchStrategy[str]] = {
    "text": _TEXT,
    **{
        kind: st.integers(-(10**30), 10**30).map(str)
        | st.integers(-(2**bits) - 2, 2**bits + 2).map(str)
        | st.builds(
            lambda n, pad: f"{pad}+{n}{pad}", st.integers(0, 10**9), st.sampled_from(["", " "])
        )
        | _JUNK
        for kind, bits in (("smallint", 15), ("integer", 31), ("bigint", 63))
    },
    "numeric": st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "inf", ".5", "5.", "1e-3", "-0.0"])
    | _JUNK,
    "boolean": st.sampled_from(
        ["true", "FALSE", "yes", "No", "on", "OFF", "1", "0", "t", "f", "y", "n"]
    )
    | _JUNK,
    "date": st.dates().map(lambda d: d.isoformat()) | _JUNK,
    "timestamptz": st.datetimes(timezones=_offsets()).map(lambda d: d.isoformat())
    | st.datetimes().map(lambda d: d.isoformat(sep=" ", timespec="minutes"))
    | _JUNK,
    "json": _json().map(json.dumps)
    | st.sampled_from(
        ["NaN", "-Infinity", '{"a": [Infinity]}', '"\\ud800"', '"\\u0000"', "1E400", " [] "]
    )
    | _JUNK,
    "list": st.lists(_TEXT.filter(lambda t: "," not in t), max_size=4).map(",".join)
    | st.lists(st.integers() | _TEXT, max_size=4).map(json.dumps),
}


def _var(kind: str, *, secret: bool = False) -> Var:
    return Var("v", kind, None, None, secret, Position("plan.yaml", 1, 1))


def _server_reads(con: Any, text: str, column: str) -> Any:
    """What PostgreSQL's input function makes of `text` (None when it refuses it)."""
    try:
        return con.run(f"SELECT CAST(:t AS {column})::text", t=text)[0][0]
    except Exception:
        con.run("ROLLBACK")
        return None


@pytest.mark.parametrize("kind", list(TEXTS))
def test_what_a_var_accepts_postgres_reads_as_the_same_value(con: Any, kind: str) -> None:
    """For any text: if sqlplan accepts it as `kind`, the server accepts what sqlplan sends for
    it, and reads it as the same value as the text itself (for a list: as the array of the
    items). sqlplan may refuse more than PostgreSQL does, never less."""
    column = COLUMN[kind]
    accepted = []

    @_SETTINGS
    @given(text=TEXTS[kind])
    def check(text: str) -> None:
        try:
            value = from_text(_var(kind), text)
        except VarValueError:
            return
        sent = sql_text(value)
        assert sent is not None
        got = _server_reads(con, sent, column)
        assert got is not None, (kind, text, sent)
        if kind == "list":
            stripped = text.strip()
            items = (
                [i if isinstance(i, str) else str(i) for i in json.loads(stripped)]
                if stripped.startswith("[")
                else [i.strip() for i in stripped.split(",")]
                if stripped
                else []
            )
            # the items as text, each one bound as itself (pg8000's own array literal would
            # leave an item "NuLL" unquoted, which the server reads as NULL)
            want = con.run(
                "SELECT ARRAY(SELECT e FROM jsonb_array_elements_text(CAST(:j AS jsonb))"
                " WITH ORDINALITY AS x(e, n) ORDER BY n)::text",
                j=json.dumps(items),
            )[0][0]
        else:
            want = _server_reads(con, text, column)
        assert got == want, (kind, text, sent, got, want)
        accepted.append(text)

    check()
    assert accepted, f"no {kind} value was accepted"


def _plan(cli: Cli, text: str, name: str = "plan.yaml") -> str:
    cli.write(name, text)
    return name


TYPED = """\
sqlplan: 1
name: typed
vars:
  year: integer
  price: {type: numeric, default: 12345678901234.123456789}
  active: {type: boolean, default: yes}
  day: {type: date, default: "2026-12-01"}
  at: {type: timestamptz, default: "2026-12-01T09:30:00+01:00"}
  doc: {type: json, default: {a: 1.10, b: [true, null]}}
  tags: {type: list, default: [x, "y z", "{}"]}
  title: text
steps:
  - batch: CREATE TABLE typed (year int, price numeric, active boolean, day date, at timestamptz, doc jsonb, tags text[], title text, label text, raw text)
  - execute: INSERT INTO typed VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    params: ["{year}", "{price}", "{active}", "{day}", "{at}", "{doc}", "{tags}", "{title}", "{title} ({year})", "{{year}} {1,2} {\\"k\\": 1}"]
    after: "stored {title} of {year}: {count} row"
"""


def test_each_type_reaches_the_column_as_written(cli: Cli, database: Database) -> None:
    _plan(cli, TYPED)
    title = "O'Brien; DROP TABLE typed; --"
    result = cli(
        "run", "plan.yaml", "--var", "year=1965", "--var", f"title={title}",
        env={"DATABASE_URL": database.url},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"stored {title} of 1965: 1 row\n"
    (row,) = database.query(
        "SELECT year, price::text, active, day::text, at = '2026-12-01T09:30:00+01:00', "
        'doc = \'{"a": 1.10, "b": [true, null]}\', tags, title, label, raw FROM typed'
    )
    assert row == [
        1965, "12345678901234.123456789", True, "2026-12-01", True, True,
        ["x", "y z", "{}"], title, f"{title} (1965)", '{year} {1,2} {"k": 1}',
    ]  # fmt: skip


def test_precedence_is_var_then_file_then_environment_then_default(
    cli: Cli, database: Database
) -> None:
    _plan(
        cli,
        "sqlplan: 1\nname: p\nvars:\n"
        "  a: {type: text, default: da, env: SQLPLAN_TEST_A}\n"
        "  b: {type: text, default: db, env: SQLPLAN_TEST_B}\n"
        "  c: {type: text, default: dc, env: SQLPLAN_TEST_C}\n"
        "  d: {type: text, default: dd}\n"
        "on_connect: '{a} {b} {c} {d}'\nsteps:\n  - batch: SELECT 1\n",
    )
    cli.write("values.yaml", "a: fa\nb: fb\n")
    result = cli(
        "run", "plan.yaml", "--vars", "values.yaml", "--var", "a=va",
        env={"DATABASE_URL": database.url, "SQLPLAN_TEST_A": "ea", "SQLPLAN_TEST_B": "eb", "SQLPLAN_TEST_C": "ec"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "va fb ec dd\n"


@pytest.mark.parametrize(
    ("kind", "bad", "message"),
    [
        ("integer", "19x5", "the value is not an integer"),
        ("numeric", "1,5", "the value is not a number"),
        ("boolean", "maybe", "the value is not a boolean"),
        ("date", "2026-02-30", "the value is not a date (YYYY-MM-DD)"),
        ("timestamptz", "yesterday", "the value is not a timestamp"),
        ("json", "{a: 1}", "the value is not JSON"),
        ("list", "[1, 2", "the value is not a JSON array"),
    ],
)
def test_a_bad_value_is_a_diagnostic_at_the_var_before_connecting(
    cli: Cli, kind: str, bad: str, message: str
) -> None:
    _plan(
        cli,
        f"sqlplan: 1\nname: p\nvars:\n  v: {kind}\nsteps:\n  - execute: SELECT $1\n    params: ['{{v}}']\n",
    )
    # a URL nothing listens on: reaching it would be exit 5, not 3
    result = cli(
        "run", "plan.yaml", "--var", f"v={bad}", "--database-url", "postgresql://u@127.0.0.1:9/d"
    )
    assert result.exit_code == 3
    assert result.stderr.startswith(f"plan.yaml:4:3: error: --var v: {message}")
    assert "[var-type]" in result.stderr
    assert bad not in result.stderr  # a usage error never echoes a value


def test_missing_and_unknown_vars_are_diagnostics(cli: Cli) -> None:
    _plan(
        cli,
        "sqlplan: 1\nname: p\nvars:\n  year: integer\n  region: {type: text, env: REGION}\n"
        "steps:\n  - execute: SELECT $1, $2\n    params: ['{year}', '{yaer}']\n",
    )
    checked = cli("check", "plan.yaml")
    assert checked.exit_code == 1
    assert (
        "plan.yaml:8:25: error: unknown var {yaer}: the plan declares {year}, {region}; "
        "did you mean {year}? (write {{yaer}} for the text {yaer}) [var-unknown]"
    ) in checked.stdout
    _plan(cli, "sqlplan: 1\nname: p\nvars:\n  year: integer\n  region: {type: text, env: REGION}\n"
          "steps:\n  - execute: SELECT $1\n    params: ['{year}']\n")  # fmt: skip
    result = cli("run", "plan.yaml", "--var", "yaer=1")
    assert result.exit_code == 3
    assert (
        "plan.yaml:1:1: error: --var #1 (of 1) names a var the plan does not declare "
        "(its vars: year, region); did you mean 'year'? [var-unknown]" in result.stderr
    )
    assert (
        "plan.yaml:4:3: error: var 'year' (integer) has no value: give --var year=..."
        in result.stderr
    )
    assert (
        "var 'region' (text) has no value: give --var region=..., or set $REGION" in result.stderr
    )


def test_a_vars_file_is_read_with_positions(cli: Cli) -> None:
    _plan(cli, "sqlplan: 1\nname: p\nvars:\n  year: integer\nsteps:\n  - batch: SELECT 1\n")
    cli.write("values.yaml", "# values\nyear: nineteen\nother: 1\n")
    result = cli("run", "plan.yaml", "--vars", "values.yaml")
    assert result.exit_code == 3
    assert (
        "values.yaml:2:7: error: var 'year': the value is not an integer [var-type]"
        in result.stderr
    )
    assert "values.yaml:3:8: error: the vars file values.yaml gives 'other'" in result.stderr


SECRET = "s3cr3t-T0ken-value"


def test_a_secret_never_appears_in_any_output(cli: Cli, database: Database) -> None:
    _plan(
        cli,
        "sqlplan: 1\nname: p\nvars:\n  token: {type: text, env: SQLPLAN_TEST_TOKEN, secret: true}\n"
        "on_connect: 'token {token}'\n"
        "steps:\n"
        "  - batch: CREATE TABLE keys (k text)\n"
        "  - execute: INSERT INTO keys VALUES ($1)\n    params: ['Bearer {token}']\n"
        "    after: 'stored {$1}'\n"
        "  - query: SELECT k FROM keys\n    row: 'read {k}'\n"
        "  - execute: SELECT $1::int\n    params: ['{token}']\n",
    )
    env = {"DATABASE_URL": database.url, "SQLPLAN_TEST_TOKEN": SECRET}
    outputs = [
        cli("run", "plan.yaml", env=env),
        cli("show", "plan.yaml", env=env),
        cli("show", "plan.yaml", "--format", "markdown", env=env),
        cli("run", "--dry-run", "plan.yaml", env=env),
        cli("rehearse", "plan.yaml", "--format", "json", env=env),
    ]
    run = outputs[0]
    assert run.exit_code == 1  # the last step: the server echoes the value it cannot read
    assert run.stdout == "token ****\nstored ****\nread Bearer ****\n"
    assert 'invalid input syntax for type integer: "****"' in run.stderr
    for result in outputs:
        assert SECRET not in result.stdout + result.stderr
    # and what was stored is the real value
    assert database.query("SELECT k FROM keys") == [[f"Bearer {SECRET}"]]


def test_vars_in_rows_and_messages_and_a_rehearsal(cli: Cli, database: Database) -> None:
    _plan(
        cli,
        "sqlplan: 1\nname: p\nvars:\n  batch: integer\n  who: {type: text, default: loader}\n"
        "steps:\n"
        "  - batch: CREATE TABLE loaded (batch int, who text, n int)\n"
        "  - bulk_insert: INSERT INTO loaded VALUES ($1, $2, $3)\n"
        "    rows:\n      - ['{batch}', '{who}', 1]\n      - ['{batch}', 'by {who}', 2]\n"
        "    after: '{count} rows of batch {batch}'\n",
    )
    result = cli("run", "plan.yaml", "--var", "batch=7", env={"DATABASE_URL": database.url})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "2 rows of batch 7\n"
    assert database.query("SELECT batch, who, n FROM loaded ORDER BY n") == [
        [7, "loader", 1],
        [7, "by loader", 2],
    ]


def test_the_example_plan_runs(cli: Cli, database: Database) -> None:
    example = (ROOT / "plans" / "examples" / "vars.yaml").read_text()
    cli.write("vars.yaml", example)
    result = cli(
        "run", "vars.yaml", "--var", "year=1965", "--var", "title=Dune",
        env={"DATABASE_URL": database.url, "REGION": "us"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "Connected (region us)\nDune (1965) added to the us catalogue.\nus: Dune, 1965\n"
    )


def test_a_rows_from_file_named_with_a_var_is_found_once_bound(
    cli: Cli, database: Database
) -> None:
    (cli.cwd / "data").mkdir()
    cli.write("data/eu.csv", "title,year\nDune,1965\n")
    cli.write("data/us.csv", "title,year\nEmma,1815\nUlysses,1922\n")
    cli.write("data/bad.csv", "name,when\nx,1\n")
    _plan(
        cli,
        "sqlplan: 1\nname: p\nvars:\n  region: text\n"
        "steps:\n"
        "  - batch: CREATE TABLE IF NOT EXISTS books (title text, year int)\n"
        "  - bulk_insert: INSERT INTO books VALUES ($1, $2)\n"
        "    rows_from: {file: 'data/{region}.csv', fields: [title, year]}\n"
        "    after: '{count} books from {region}'\n",
    )
    assert cli("check", "plan.yaml").exit_code == 0  # the file is looked for once bound
    env = {"DATABASE_URL": database.url}
    us = cli("run", "plan.yaml", "--var", "region=us", env=env)
    assert us.exit_code == 0, us.stderr
    assert us.stdout == "2 books from us\n"
    missing = cli("run", "plan.yaml", "--var", "region=fr", env=env)
    assert missing.exit_code == 3
    assert "plan.yaml:8:23: error: no file 'data/fr.csv' beside the plan" in missing.stderr
    header = cli("run", "plan.yaml", "--var", "region=bad", env=env)
    assert header.exit_code == 3
    assert "[rows-from]" in header.stderr
    assert database.query("SELECT count(*) FROM books") == [[2]]


@pytest.mark.parametrize(("kind", "bits"), [("smallint", 15), ("integer", 31), ("bigint", 63)])
def test_an_integer_var_takes_exactly_what_its_column_takes(con: Any, kind: str, bits: int) -> None:
    """Around each integer type's bounds, sqlplan refuses a value before anything runs exactly
    when PostgreSQL's column of that type would refuse it after earlier steps committed."""

    @_SETTINGS
    @given(n=st.integers(-(2**bits) - 3, 2**bits + 3) | st.integers(-(10**25), 10**25))
    def check(n: int) -> None:
        error = ""
        try:
            from_text(_var(kind), str(n))
        except VarValueError as e:
            error = str(e)
        ours = not error
        assert str(n) not in error  # the error never repeats the value
        assert ours == (_server_reads(con, str(n), kind) is not None), (kind, n)

    check()


UNREACHABLE = "postgresql://u@127.0.0.1:9/d"  # reaching it would be exit 5, not 3

REFUSED_PLAN = """\
sqlplan: 1
name: p
vars:
  note: text
  pin: {type: text, secret: true}
  n: integer
steps:
  - execute: SELECT $1, $2, $3
    params: ['{note}', '{pin}', '{n}']
"""


@pytest.mark.parametrize(
    ("values", "args", "found"),
    [
        ('note: "a\\0b"\npin: long-enough\nn: 1\n', [], "values.yaml:1:7: error: var 'note': the value holds a NUL character"),
        ("note: a\npin: long-enough\nn: 1\nn: 2\n", [], "values.yaml:4:1: error: duplicate key 'n' (first defined on line 3) [duplicate-key]"),
        ("note: a\npin: long-enough\nn: 3000000000\n", [], "values.yaml:3:4: error: var 'n': the value is out of range for integer"),
        ("note: a\npin: abc\nn: 1\n", [], "plan.yaml:5:3: error: var 'pin' is secret, but its value (or an item of it) is shorter than 4 characters"),
        ("note: a\nn: 1\n", ["--var", "pin:HoSecPin"], "plan.yaml:1:1: error: a --var has no '=': write --var name=value [var-unknown]"),
    ],
    ids=["nul", "duplicate key", "out of range", "short secret", "no ="],
)  # fmt: skip
def test_a_bad_var_is_refused_before_anything_runs(
    cli: Cli, values: str, args: list[str], found: str
) -> None:
    _plan(cli, REFUSED_PLAN)
    cli.write("values.yaml", values)
    result = cli("run", "plan.yaml", "--vars", "values.yaml", *args, "--database-url", UNREACHABLE)
    assert result.exit_code == 3, result.stderr
    assert found in result.stderr
    for value in ("HoSecPin", "3000000000", "abc"):
        assert value not in result.stderr  # never echoed


def test_vars_cannot_take_rows_from_out_of_the_plans_directory(
    cli: Cli, database: Database, tmp_path: Path
) -> None:
    """A var chooses among the files in the plan's directory (or below): `..` and a symbolic
    link that leads out are refused before anything runs, resolved as the file system does."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for folder in (project / "data", outside):
        (folder / "x.csv").write_text("n\n1\n")
    (project / "data" / "leak").symlink_to(outside)
    (project / "plan.yaml").write_text(
        "sqlplan: 1\nname: p\nvars:\n  region: text\nsteps:\n"
        "  - batch: CREATE TABLE IF NOT EXISTS t (n int)\n"
        "  - bulk_insert: INSERT INTO t (n) VALUES ($1)\n"
        "    rows_from:\n      file: 'data/{region}.csv'\n"
    )
    cli.cwd = project
    for region in ("../../elsewhere/x", "leak/x", "../../../../../../etc/x"):
        result = cli("run", "plan.yaml", "--var", f"region={region}", "--database-url", UNREACHABLE)
        assert result.exit_code == 3, (region, result.stderr)
        assert "the rows_from file the vars name is outside the plan's directory" in result.stderr
    result = cli("run", "plan.yaml", "--var", "region=x", env={"DATABASE_URL": database.url})
    assert result.exit_code == 0, result.stderr
    assert database.query("SELECT n FROM t") == [[1]]
