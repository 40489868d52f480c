"""Reports for CI: `run --format json` (checked against its schema and against what the
database holds), `--format github` annotations at the failing step's line, JUnit XML with a
test case per step, and a Markdown summary; text mode's stdout stays the plan's own lines."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import ROOT, Cli, Database, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCHEMA = json.loads((ROOT / "schemas" / "run-report.schema.json").read_text())


def _env(database: Database) -> dict[str, str]:
    return {"DATABASE_URL": database.url}


def _json(result: Result) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(result.stdout)
    jsonschema.validate(document, SCHEMA)
    return document


PLAN = """\
sqlplan: 1
name: books
steps:
  - name: Table
    batch: CREATE TABLE IF NOT EXISTS books (id int PRIMARY KEY, title text)
  - name: Add
    execute: INSERT INTO books VALUES ($1, $2) RETURNING id
    params: [1, Dune]
    capture: {book: id}
    after: "added {book}"
  - name: Load
    bulk_insert: INSERT INTO books VALUES ($1, $2)
    rows: [[2, Emma], [3, Ulysses]]
    expect: {count: 2}
  - name: Read
    query: SELECT title FROM books ORDER BY id
    row: "{title}"
"""


def test_json_says_what_ran_and_keeps_the_plans_lines(cli: Cli, database: Database) -> None:
    cli.write("plan.yaml", PLAN)
    text = cli("run", "plan.yaml", env=_env(database))
    database.query("DROP TABLE books")
    result = cli("run", "plan.yaml", "--format", "json", env=_env(database))
    assert result.exit_code == 0, result.stderr
    document = _json(result)
    assert (document["ok"], document["exit_code"], document["error"]) == (True, 0, None)
    [plan] = document["plans"]
    assert plan["output"] == text.stdout.splitlines()
    assert plan["status"] == "ok"
    steps = plan["steps"]
    assert [s["kind"] for s in steps] == ["batch", "execute", "bulk_insert", "query"]
    assert [s["line"] for s in steps] == [5, 7, 12, 16]
    assert [s["status"] for s in steps] == ["committed"] * 4
    assert [s["rows"] for s in steps] == [None, 1, 2, 3]
    assert steps[1]["captures"] == {"book": "1"}
    assert steps[2]["expect"] == {"held": True}


@given(
    fail_at=st.integers(min_value=1, max_value=4),
    kinds=st.lists(st.sampled_from(["batch", "execute", "bulk"]), min_size=4, max_size=4),
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_each_step_status_is_what_the_database_holds(
    cli: Cli, database: Database, fail_at: int, kinds: list[str]
) -> None:
    """Steps of any kind, one of which fails: a step the report calls committed left its row,
    one rolled back or not run did not, and the error is at the failing step's line."""
    database.query("DROP TABLE IF EXISTS marks; CREATE TABLE marks (n int CHECK (n > 0))")
    steps = []
    for number, kind in enumerate(kinds, start=1):
        value = -number if number == fail_at else number
        if kind == "batch":
            steps.append(f"  - batch: INSERT INTO marks VALUES ({value})\n")
        elif kind == "execute":
            steps.append(f"  - execute: INSERT INTO marks VALUES ($1)\n    params: [{value}]\n")
        else:
            steps.append(f"  - bulk_insert: INSERT INTO marks VALUES ($1)\n    rows: [[{value}]]\n")
    cli.write("plan.yaml", "sqlplan: 1\nname: marks\nsteps:\n" + "".join(steps))
    result = cli("run", "plan.yaml", "--format", "json", env=_env(database))
    assert result.exit_code == 1
    [plan] = _json(result)["plans"]
    held = {row[0] for row in database.query("SELECT n FROM marks")}
    for step in plan["steps"]:
        assert (step["number"] in held) == (step["status"] == "committed"), plan
    assert plan["error"]["sqlstate"] == "23514"
    assert plan["error"]["line"] == plan["steps"][fail_at - 1]["line"]


def test_json_reports_an_unmet_expectation_and_invalid_plans(cli: Cli, database: Database) -> None:
    cli.write("plan.yaml", PLAN.replace("{count: 2}", "{count: 3}"))
    result = cli("run", "plan.yaml", "--format", "json", env=_env(database))
    assert result.exit_code == 7
    [plan] = _json(result)["plans"]
    assert plan["steps"][2]["expect"] == {"held": False}
    assert plan["steps"][2]["status"] == "rolled back"
    assert plan["error"]["message"] == 'step 3 "Load": expected 3 rows affected, got 2'
    assert plan["ledger"][0].startswith("committed: step 1")
    cli.write("bad.yaml", "sqlplan: 1\nname: bad\nsteps:\n  - batch: SELEC 1\n")
    result = cli("run", "bad.yaml", "--format", "json", env=_env(database))
    assert result.exit_code == 3
    document = _json(result)
    assert document["plans"] == []
    assert document["error"]["diagnostics"][0]["line"] == 4


def test_github_annotates_the_failing_line_and_keeps_the_output(
    cli: Cli, database: Database
) -> None:
    cli.write("plan.yaml", PLAN.replace("[[2, Emma], [3, Ulysses]]", "[[2, Emma], [1, Again]]"))
    result = cli("run", "plan.yaml", "--format", "github", env=_env(database))
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "added 1"
    [annotation] = [line for line in lines if line.startswith("::error ")]
    assert annotation.startswith("::error file=plan.yaml,line=13,col=")
    assert "duplicate key value violates unique constraint" in annotation
    assert annotation.endswith("[23505]")
    assert "plan.yaml:12:5: error: " in result.stderr  # the step; the annotation: its row
    assert re.search(r"^  row: 2 \(at plan\.yaml:13:\d+\)$", result.stderr, re.M)


def test_junit_has_a_case_per_step_and_the_failure(cli: Cli, database: Database) -> None:
    cli.write("plan.yaml", PLAN.replace("{count: 2}", "{count: 3}"))
    cli.write("other.yaml", "sqlplan: 1\nname: other\nsteps:\n  - batch: SELECT 1\n")
    result = cli(
        "run", "plan.yaml", "other.yaml", "--junit", "junit.xml", "--summary", "summary.md",
        env=_env(database),
    )  # fmt: skip
    assert result.exit_code == 7
    root = ET.parse(cli.cwd / "junit.xml").getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["books", "other"]
    cases = suites[0].findall("testcase")
    assert [c.get("name") for c in cases] == [
        "step 1: Table",
        "step 2: Add",
        "step 3: Load",
        "step 4: Read",
    ]
    assert [c.get("line") for c in cases] == ["5", "7", "12", "16"]
    failure = cases[2].find("failure")
    assert failure is not None
    assert failure.get("type") == "7"
    assert "expected 3 rows affected, got 2" in (failure.text or "")
    assert cases[3].find("skipped") is not None
    assert (suites[0].get("failures"), suites[0].get("skipped")) == ("1", "1")
    assert suites[1].find("testcase/skipped") is not None  # the plan after: not run
    summary = (cli.cwd / "summary.md").read_text()
    assert summary.startswith("### sqlplan run: failed (exit 7)\n")
    assert "| `plan.yaml` (books) | ❌ failed | 2/4 committed |" in summary
    assert "| `other.yaml` (other) | ⏸️ not run | 0/1 committed |" in summary
    cli("run", "other.yaml", "--summary", "summary.md", env=_env(database))
    assert (cli.cwd / "summary.md").read_text().count("### sqlplan run") == 2  # appended


def test_junit_carries_invalid_plans_and_what_stderr_says_of_a_failure(
    cli: Cli, database: Database
) -> None:
    cli.write("bad.yaml", "sqlplan: 1\nname: bad\nsteps:\n  - batch: SELEC 1\n  - nope: 1\n")
    result = cli("run", "bad.yaml", "--junit", "j.xml", env=_env(database))
    assert result.exit_code == 3
    root = ET.parse(cli.cwd / "j.xml").getroot()
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "bad.yaml"
    failures = suite.findall("testcase/failure")
    assert len(failures) == int(suite.get("failures") or 0) == 3
    assert [f.text for f in failures] == result.stderr.splitlines()[:3]  # as stderr says them
    cli.write(
        "fail.yaml",
        "sqlplan: 1\nname: fail\nsteps:\n  - batch: CREATE TABLE u (n int UNIQUE)\n"
        "  - batch: INSERT INTO u VALUES (1); INSERT INTO u VALUES (1)\n",
    )
    result = cli("run", "fail.yaml", "--junit", "j.xml", env=_env(database))
    assert result.exit_code == 1
    failure = ET.parse(cli.cwd / "j.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None
    assert (failure.get("message") or "").endswith("[23505]")
    assert failure.text == result.stderr.rstrip("\n")  # SQLSTATE, detail, the ledger
    assert "  detail: Key (n)=(1) already exists." in (failure.text or "")


@pytest.mark.parametrize("flags", [["--junit", "j.xml"], ["--summary", "s.md"]])
def test_reports_leave_text_output_alone(cli: Cli, database: Database, flags: list[str]) -> None:
    cli.write("plan.yaml", PLAN)
    plain = cli("run", "plan.yaml", env=_env(database))
    database.query("DROP TABLE books")
    reported = cli("run", "plan.yaml", *flags, env=_env(database))
    assert (reported.exit_code, reported.stdout, reported.stderr) == (
        plain.exit_code,
        plain.stdout,
        plain.stderr,
    )
    assert Path(cli.cwd / flags[1]).stat().st_size > 0


def test_secrets_stay_masked_in_every_report(cli: Cli, database: Database) -> None:
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: s\nvars: {token: {type: text, secret: true}}\nsteps:\n"
        "  - execute: SELECT $1::int\n    params: ['{token}']\n",
    )
    args = ("run", "plan.yaml", "--var", "token=hunter2", "--junit", "j.xml", "--summary", "s.md")
    for form in ("json", "github"):
        result = cli(*args, "--format", form, env=_env(database))
        assert result.exit_code == 1
        reports = [result.stdout, (cli.cwd / "j.xml").read_text(), (cli.cwd / "s.md").read_text()]
        for text in (*reports, result.stderr):
            assert "hunter2" not in text
        for text in reports:  # the server's error quotes the value: masked there too
            assert "****" in text
