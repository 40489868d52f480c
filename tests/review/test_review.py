"""Plan review without a database: check's warnings and formats, show, the fingerprint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Cli
from jsonschema import Draft202012Validator

from runner.errors import Diagnostic, Position
from runner.output import check_report
from runner.plan.validate import parse_plan
from runner.review import warnings as review

REVIEW = sorted((ROOT / "tests" / "plans" / "review").glob("*.yaml"))
QUICKSTART = ("create_table", "read_data", "update_data", "delete_data")
UNREACHABLE = {"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:9/none?connect_timeout=1"}


@pytest.mark.parametrize("plan", REVIEW, ids=lambda p: p.stem)
def test_review_warnings_at_their_statements(plan: Path, cli: Cli) -> None:
    cli.cwd = plan.parent
    result = cli("check", plan.name, env=UNREACHABLE)
    assert result.exit_code == 0  # warnings alone pass...
    assert result.stdout == plan.with_suffix(".expected").read_text()
    assert cli("check", "--strict", plan.name).exit_code == 1  # ...unless --strict


def test_warning_codes_match_the_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text())
    assert tuple(schema["$defs"]["warningCode"]["enum"]) == review.WARNING_CODES


def test_json_report_follows_its_schema(cli: Cli) -> None:
    cli.cwd = ROOT / "tests" / "plans"
    result = cli("check", "--format", "json", "invalid", "review")
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    schema = json.loads((ROOT / "schemas" / "check-report.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    assert list(Draft202012Validator(schema).iter_errors(document)) == []
    assert document["errors"] == sum(d["severity"] == "error" for d in document["diagnostics"]) > 0
    expected = [
        p.read_text() for d in ("invalid", "review") for p in (cli.cwd / d).glob("*.expected")
    ]
    assert document["warnings"] == sum(text.count(": warning: ") for text in expected) > 0
    assert len(document["files"]) == len(list((cli.cwd / "invalid").glob("*.yaml"))) + len(
        list((cli.cwd / "review").glob("*.yaml"))
    )


def test_github_format_escapes_what_workflow_commands_need() -> None:
    diagnostic = Diagnostic(
        Position("plans/a,b:c.yaml", 3, 7), "100% wrong,\nsecond line: here", "x-y"
    )
    assert check_report("github", [], [diagnostic]) == (
        "::error file=plans/a%2Cb%3Ac.yaml,line=3,col=7,title=sqlplan x-y::100%25 wrong,%0Asecond line: here\n"
    )
    warning = Diagnostic(Position("p.yaml", 1, 1), "careful\r\n", "drop", severity="warning")
    assert (
        check_report("github", [], [warning])
        == "::warning file=p.yaml,line=1,col=1,title=sqlplan drop::careful%0D%0A\n"
    )


def test_github_format_through_the_cli(cli: Cli) -> None:
    cli.cwd = ROOT / "tests" / "plans" / "invalid"
    result = cli("check", "--format", "github", "params.yaml")
    assert result.stdout.splitlines()[0] == (
        "::error file=params.yaml,line=5,col=13,title=sqlplan param-count::"
        "the SQL takes 2 parameters ($1..$2), but params has 1 value"
    )


@pytest.mark.parametrize("name", QUICKSTART)
@pytest.mark.parametrize("form", ["text", "markdown"])
def test_show_matches_the_reviewed_golden_files(cli: Cli, name: str, form: str) -> None:
    cli.cwd = ROOT
    result = cli("show", "--format", form, f"plans/{name}.yaml", env=UNREACHABLE)
    assert (result.exit_code, result.stderr) == (0, "")
    suffix = "md" if form == "markdown" else "txt"
    assert result.stdout == (ROOT / "tests" / "golden" / f"{name}.show.{suffix}").read_text()


def test_run_dry_run_shows_and_connects_to_nothing(cli: Cli) -> None:
    cli.cwd = ROOT
    result = cli("run", "--dry-run", "plans/create_table.yaml", env=UNREACHABLE)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (ROOT / "tests" / "golden" / "create_table.show.txt").read_text()


def test_show_lists_a_long_bulk_insert_briefly_and_tracks_transactions() -> None:
    rows = "".join(f"      - [{i}]\n" for i in range(1500))
    text = (
        "sqlplan: 1\nname: big\nsteps:\n  - batch: BEGIN\n  - bulk_insert: INSERT INTO t VALUES ($1)\n"
        f"    rows:\n{rows}  - batch: COMMIT\n  - bulk_insert: INSERT INTO t VALUES ($1)\n    rows:\n{rows}"
    )
    from runner.review.show import render

    shown = render(parse_plan(text, "big.yaml"), "text")
    assert "    ... 1480 more rows" in shown
    assert "  transaction: opens a transaction block that a later step must end" in shown
    assert "  transaction: inside the transaction opened by step 1" in shown
    assert "  transaction: inside the transaction opened by step 1, which this step ends" in shown
    assert (
        "  transaction: one transaction: BEGIN, 1500 rows in 2 flights, COMMIT; all rows or none"
        in shown
    )


def test_bound_values_are_shown_safely_beside_their_placeholders() -> None:
    text = 'sqlplan: 1\nname: x\nsteps:\n  - execute: SELECT $2, $1, $1\n    params: ["it\'s */ odd", null]\n'
    from runner.review.show import render

    assert (
        "    SELECT $2 /* NULL */, $1 /* 'it''s * / odd' */, $1 /* 'it''s * / odd' */\n"
        in render(parse_plan(text, "x.yaml"), "text")
    )


def test_fingerprint_ignores_layout_and_comments_but_not_values() -> None:
    plain = "sqlplan: 1\nname: f\nsteps:\n  - execute: SELECT $1\n    params: [1]\n"
    restyled = '# a comment\nsqlplan: 1\nname: "f"\nsteps:\n- params:\n  - 1\n  execute: >-\n    SELECT $1\n'
    changed = plain.replace("[1]", "[2]")
    fingerprints = [parse_plan(t, "f.yaml").fingerprint for t in (plain, restyled, changed)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    assert len(fingerprints[0]) == 64


def test_run_prints_the_fingerprint_that_show_prints(cli: Cli) -> None:
    # in a scratch directory, so that no .env of the developer's can redirect the run
    plan = cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: fp\nsteps:\n  - query: SELECT $1::int AS n\n    params: [7]\n    row: '{n}'\n",
    )
    shown = cli("show", str(plan)).stdout
    ran = cli("run", str(plan))
    assert (ran.exit_code, ran.stdout) == (0, "7\n")
    assert ran.fingerprint is not None
    assert f"fingerprint: {ran.fingerprint}\n" in shown


def test_schema_command_prints_the_schema_file(cli: Cli) -> None:
    result = cli("schema")
    assert result.stdout == (ROOT / "schemas" / "plan.schema.json").read_text()


def test_pre_commit_hook_definition() -> None:
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "sqlplan-check"
    assert hook["entry"].split()[:2] == ["sqlplan", "check"]
    assert hook["language"] == "python"


def test_check_never_loads_a_database_driver(tmp_path: Path) -> None:
    """Proof that `check` cannot connect: the driver is never even imported."""
    probe = (
        "import sys\n"
        "from runner.cli import main\n"
        "try:\n"
        "    main(['check', 'plans'])\n"
        "except SystemExit as e:\n"
        "    print(e.code, 'pg8000' in sys.modules, 'runner.connect.connection' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                            env={"DATABASE_URL": UNREACHABLE["DATABASE_URL"], "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert result.stdout == "0 False False\n"


def test_show_describes_a_file_load_and_how_it_is_sent(tmp_path: Path) -> None:
    from runner.plan.validate import load_plan
    from runner.review.show import render

    (tmp_path / "books.csv").write_text("title,year\nDune,1965\n")
    plan = tmp_path / "load.yaml"
    plan.write_text(
        "sqlplan: 1\nname: load\nsteps:\n"
        "  - bulk_insert: INSERT INTO books (title, year) VALUES ($1, $2)\n    rows_from:\n      file: books.csv\n"
        "  - bulk_insert: INSERT INTO books (title, year) SELECT $1, $2\n    rows_from:\n      file: books.csv\n"
        "      fields: [year, title]\n"
    )
    shown = render(load_plan(plan), "text")
    csv = tmp_path / "books.csv"
    assert (
        "  transaction: one COPY statement: all its rows or none\n"
        "  round trip: its own\n"
        "  locks: ROW EXCLUSIVE on books\n"
        "  sql:\n    INSERT INTO books (title, year) VALUES ($1, $2)\n"
        '  sent as: COPY "books" ("title", "year") FROM STDIN\n'
        f"  rows from: {csv} (csv, a header line, delimiter ',', NULL as ''; fields for $1..$2: all, in order)\n"
    ) in shown
    assert (
        "  transaction: one transaction (BEGIN/COMMIT around flights of 1000 rows): all rows or none\n"
        in shown
    )
    assert (
        f"  rows from: {csv} (csv, a header line, delimiter ',', NULL as ''; fields for $1..$2: year, title)\n"
        in shown
    )


def test_the_rules_follow_the_postgres_version(cli: Cli) -> None:
    cli.write(
        "p.yaml",
        "sqlplan: 1\nname: p\npostgres: 13\nsteps:\n  - batch: SET lock_timeout = '1s'\n"
        "  - batch: ALTER TABLE events DETACH PARTITION events_2020\n",
    )
    older = cli("check", "p.yaml").stdout
    newer = cli("check", "--pg-version", "14", "p.yaml").stdout
    assert "CONCURRENTLY" not in older  # no concurrent form before PostgreSQL 14
    assert "use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14 and later)" in newer


def test_a_file_with_errors_still_gets_the_warnings_of_its_valid_steps(cli: Cli) -> None:
    cli.write(
        "p.yaml",
        "sqlplan: 1\nname: p\nsteps:\n  - batch: DELETE FROM t\n  - execute: SELECT $1\n",
    )
    result = cli("check", "p.yaml")
    assert result.stdout.splitlines() == [
        "p.yaml:4:12: warning: step 1: DELETE without WHERE deletes every row (if intended, add "
        "'delete-without-where' to the step's allow list) [delete-without-where]",
        "p.yaml:5:5: error: the SQL takes 1 parameter ($1), but params has 0 values [param-count]",
    ]


def test_show_gives_each_allowed_warning_its_reason(cli: Cli) -> None:
    cli.write(
        "p.yaml",
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - batch: ALTER TABLE orders ADD CONSTRAINT f FOREIGN KEY (c) REFERENCES customers (id)\n"
        "    allow: {add-foreign-key: orders is 2k rows, lock-timeout: run at night}\n",
    )
    assert cli("check", "p.yaml").stdout == ""
    shown = cli("show", "p.yaml").stdout
    assert "  allows: add-foreign-key (orders is 2k rows), lock-timeout (run at night)\n" in shown
    assert (
        "  locks: SHARE ROW EXCLUSIVE on orders, reads every row; SHARE ROW EXCLUSIVE on customers; "
        "may: SHARE ROW EXCLUSIVE on the partitions of orders, reads all their rows\n" in shown
    )


def test_show_says_what_runs_under_an_access_exclusive_lock(cli: Cli) -> None:
    """Held to the end of the transaction: within a step, and across the steps of a BEGIN."""
    cli.write(
        "p.yaml",
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - batch: |\n      ALTER TABLE orders ADD COLUMN note text;\n"
        "      UPDATE orders SET note = '';\n"
        "  - batch: BEGIN\n"
        "  - batch: ALTER TABLE customers ADD COLUMN note text\n"
        "  - batch: SELECT 1\n"
        "  - batch: SELECT 2\n"
        "  - batch: COMMIT\n"
        "  - batch: ALTER TABLE items ADD COLUMN note text\n",
    )
    lines = cli("show", "p.yaml").stdout.splitlines()
    held = [(line, i) for i, line in enumerate(lines) if line.startswith("  held: ")]
    assert [line for line, _ in held] == [
        "  held: the ACCESS EXCLUSIVE lock on orders is held until the transaction ends, while "
        "1 more statement runs under it (UPDATE orders SET note = '')",
        "  held: the ACCESS EXCLUSIVE lock on customers is held until the transaction ends, while "
        "2 more statements run under it (SELECT 1; SELECT 2)",
    ]
    titles = [next(t for t in reversed(lines[:i]) if t.startswith("step ")) for _, i in held]
    assert [t.split(" (")[0] for t in titles] == ["step 1", "step 3"]


def test_show_names_the_partitions_and_indexes_of_a_table_the_plan_created(cli: Cli) -> None:
    """No "may" where the plan itself made the table: its partitions, the tables referring to
    them, its indexes under the names PostgreSQL gives them."""
    cli.write(
        "p.yaml",
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - batch: |\n"
        "      CREATE TABLE m (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);\n"
        "      CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n"
        "      CREATE TABLE m_rest PARTITION OF m DEFAULT;\n"
        "      CREATE TABLE r (id int, at date, FOREIGN KEY (id, at) REFERENCES m_2024)\n"
        "  - batch: TRUNCATE m CASCADE\n"
        "    allow: [truncate]\n"
        "  - batch: DROP INDEX m_pkey\n"
        "  - batch: ALTER TABLE elsewhere ADD COLUMN x int\n"
        "    allow: [lock-timeout]\n",
    )
    steps = cli("show", "p.yaml").stdout.split("\nstep ")
    assert "  locks: ACCESS EXCLUSIVE on m; SHARE ROW EXCLUSIVE on m_2024\n" in steps[1]
    assert (
        "  locks: ACCESS EXCLUSIVE on m, rewrites it; ACCESS EXCLUSIVE on m_2024, rewrites it; "
        "ACCESS EXCLUSIVE on m_rest, rewrites it; ACCESS EXCLUSIVE on r, rewrites it\n" in steps[2]
    ), steps[2]
    (line,) = [line for line in steps[3].splitlines() if line.startswith("  locks: ")]
    assert sorted(line.removeprefix("  locks: ").split("; ")) == [
        f"ACCESS EXCLUSIVE on {name}"
        for name in ("m", "m_2024", "m_2024_pkey", "m_pkey", "m_rest", "m_rest_pkey")
    ]
    assert "may:" not in "".join(steps[:4])
    assert "may: ACCESS EXCLUSIVE on the partitions of elsewhere\n" in steps[4]
