"""The library API (runner/api/, `import sqlplan`), used as a Python user would: no click,
no CLI runner; run plans on a real server and read the result. The command is a layer over
the same calls, so what it prints and reports is compared with what the API returns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import ROOT, Cli, Database

import sqlplan
from runner import report
from runner.errors import ConnectError, PlanInvalid, StepFailed, UsageError

FAILING = """\
sqlplan: 1
name: half
steps:
  - name: make
    batch: CREATE TABLE t (n int PRIMARY KEY);
  - name: one
    execute: INSERT INTO t VALUES ($1)
    params: [1]
    after: inserted {count}
  - name: clash
    execute: INSERT INTO t VALUES ($1)
    params: [1]
  - name: never
    batch: CREATE TABLE never_made (n int);
"""


class Seen(sqlplan.Events):
    """Every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def line(self, text: str) -> None:
        self.events.append(("line", text))

    def plan_started(self, result: sqlplan.PlanResult, index: int, count: int) -> None:
        self.events.append(("started", result.plan.name, index, count))

    def plan_finished(self, result: sqlplan.PlanResult, index: int, count: int) -> None:
        self.events.append(("finished", result.plan.name, result.status))

    def plan_not_run(self, result: sqlplan.PlanResult) -> None:
        self.events.append(("not run", result.plan.name))

    def lines(self) -> list[str]:
        return [e[1] for e in self.events if e[0] == "line"]


@pytest.fixture
def plans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "plans", tmp_path / "plans")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path / "plans"


def test_the_quickstart_through_the_api_prints_what_the_command_prints(
    plans: Path, database: Database, cli: Cli
) -> None:
    names = ["create_table", "read_data", "update_data", "read_data", "delete_data", "read_data"]
    for name in names:
        seen = Seen()
        result = sqlplan.run_plans([plans / f"{name}.yaml"], database_url=database.url, events=seen)
        assert (result.ok, result.exit_code, result.error) == (True, 0, None)
        assert [p.status for p in result.plans] == ["ok"]
        if name == "read_data":  # reads change nothing: the command, run after, must agree
            assert cli.cwd == plans.parent
            printed = cli("run", f"plans/{name}.yaml", env={"DATABASE_URL": database.url})
            assert printed.exit_code == 0
            assert printed.stdout == "".join(f"{line}\n" for line in seen.lines())
    assert database.query("SELECT count(*) FROM books") == [[3]]


def test_a_failing_step_is_on_the_result_and_the_database_agrees(
    tmp_path: Path, database: Database
) -> None:
    (tmp_path / "half.yaml").write_text(FAILING)
    seen = Seen()
    result = sqlplan.run_plans([tmp_path / "half.yaml"], database_url=database.url, events=seen)
    assert result.exit_code == sqlplan.ExitCode.STEP_FAILED
    assert not result.ok
    [plan] = result.plans
    assert plan.status == "failed"
    assert isinstance(plan.failure, StepFailed)
    assert plan.failure.step == 3
    assert plan.failure.server is not None
    assert plan.failure.server.sqlstate == "23505"
    fates = {n: f.value for n, f in plan.ledger.fates.items()}
    assert fates == {1: "committed", 2: "committed", 3: "rolled back", 4: "not run"}
    assert database.query("SELECT n FROM t") == [[1]]
    assert database.query("SELECT to_regclass('never_made') IS NULL") == [[True]]
    assert seen.events == [
        ("started", "half", 0, 1),
        ("line", "inserted 1"),
        ("finished", "half", "failed"),
    ]


def test_every_report_renders_the_result_the_command_reports(
    database: Database, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command's --format json is the API's result rendered: the same document, but for
    the clock."""
    monkeypatch.chdir(cli.cwd)
    cli.write("half.yaml", FAILING)
    result = sqlplan.run_plans(["half.yaml"], database_url=database.url)
    ours = json.loads(report.json_text(result))
    schema = json.loads((ROOT / "schemas" / "run-report.schema.json").read_text())
    jsonschema.validate(ours, schema)
    database.query("DROP TABLE t")
    printed = cli("run", "half.yaml", "--format", "json", env={"DATABASE_URL": database.url})
    theirs = json.loads(printed.stdout)

    def timeless(document: dict[str, Any]) -> dict[str, Any]:
        for plan in document["plans"]:
            plan["duration_ms"] = None
            for step in plan["steps"]:
                step["duration_ms"] = None
        return document

    assert timeless(ours) == timeless(theirs)
    assert printed.exit_code == result.exit_code == 1
    # JUnit and the summary come from the same result
    assert 'failures="1"' in report.junit_xml(result)
    assert "failed (exit 1)" in report.summary_markdown(result)
    assert any(
        line.startswith("::error file=half.yaml,line=") for line in report.github_lines(result)
    )


def test_invalid_plans_are_refused_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("sqlplan: 1\nname: bad\nsteps:\n  - batch: SELEC 1;\n")
    (tmp_path / "worse.yaml").write_text("sqlplan: 1\nname: worse\nsteps: []\n")
    # nothing listens there: the result is the plans' problems, not a connection refused
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
    result = sqlplan.run_plans([tmp_path], database_url=url)
    assert result.exit_code == sqlplan.ExitCode.INVALID_PLAN
    assert isinstance(result.error, PlanInvalid)
    assert result.plans == []
    found = {(Path(d.position.path).name, d.position.line) for d in result.error.diagnostics}
    assert ("bad.yaml", 4) in found
    assert any(name == "worse.yaml" for name, _ in found)
    with pytest.raises(PlanInvalid):
        sqlplan.load_plans([tmp_path])


def test_a_refused_connection_leaves_every_plan_not_run(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text("sqlplan: 1\nname: one\nsteps:\n  - batch: SELECT 1;\n")
    url = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"
    result = sqlplan.run_plans([tmp_path / "one.yaml"], database_url=url, connect_retries=0)
    assert result.exit_code == sqlplan.ExitCode.CONNECTION
    assert isinstance(result.error, ConnectError)
    assert [p.status for p in result.plans] == ["not run"]


def test_no_plan_files_is_a_usage_error(tmp_path: Path) -> None:
    result = sqlplan.run_plans([tmp_path])
    assert result.exit_code == sqlplan.ExitCode.USAGE
    assert isinstance(result.error, UsageError)
    with pytest.raises(UsageError):
        sqlplan.check([tmp_path])


VARS = """\
sqlplan: 1
name: echo
vars:
  greeting: {type: text, env: GREETING}
  times: {type: integer, default: 2}
steps:
  - query: SELECT $1::text AS said, $2::int AS n
    params: ["{greeting}", "{times}"]
    row: "{said} x{n}"
"""


@pytest.mark.parametrize(
    "vars", [{"greeting": "it's $1; DROP"}, ["greeting=it's $1; DROP"]], ids=["mapping", "strings"]
)
def test_vars_reach_the_server_as_written(tmp_path: Path, database: Database, vars: Any) -> None:
    (tmp_path / "echo.yaml").write_text(VARS)
    seen = Seen()
    result = sqlplan.run_plans(
        [tmp_path / "echo.yaml"], database_url=database.url, vars=vars, events=seen
    )
    assert result.ok
    assert seen.lines() == ["it's $1; DROP x2"]
    [loaded] = sqlplan.load_plans([tmp_path / "echo.yaml"], vars=vars)
    assert loaded.values == {"greeting": "it's $1; DROP", "times": 2}
    with pytest.raises(PlanInvalid) as missing:
        sqlplan.load_plans([tmp_path / "echo.yaml"], environ={})
    assert [d.code for d in missing.value.diagnostics] == ["var-missing"]
    environ = {"GREETING": "from the environment"}
    [loaded] = sqlplan.load_plans([tmp_path / "echo.yaml"], environ=environ)
    assert loaded.values["greeting"] == "from the environment"


def test_check_returns_what_the_command_prints(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "drop.yaml").write_text(
        "sqlplan: 1\nname: drop\nsteps:\n  - batch: DROP TABLE books;\n"
    )
    found = sqlplan.check([tmp_path / "drop.yaml"])
    assert (found.errors, found.warnings, found.exit_code) == (0, 1, 0)
    assert [d.code for d in found.diagnostics] == ["drop"]
    assert sqlplan.check([tmp_path / "drop.yaml"], strict=True).exit_code == 1
    cli.write("drop.yaml", (tmp_path / "drop.yaml").read_text())
    printed = cli("check", "drop.yaml", "--strict")
    assert printed.exit_code == 1
    assert printed.stdout.splitlines() == [
        str(d).replace(str(tmp_path) + "/", "") for d in found.diagnostics
    ]


def test_the_api_runs_without_click(tmp_path: Path, database: Database) -> None:
    """A Python user's program: import sqlplan, run a plan, read its result; click and the
    command are never imported."""
    (tmp_path / "one.yaml").write_text(
        "sqlplan: 1\nname: one\nsteps:\n  - query: SELECT 41 + 1 AS n\n    row: '{n}'\n"
    )
    program = (
        "import sys, sqlplan\n"
        "class Lines(sqlplan.Events):\n"
        "    def line(self, text): print('line', text)\n"
        f"r = sqlplan.run_plans(['one.yaml'], database_url={database.url!r}, events=Lines())\n"
        "print(r.exit_code, [p.status for p in r.plans], r.plans[0].ledger.rows)\n"
        "print(sorted(m for m in ('click', 'runner.cli') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["line 42", "0 ['ok'] {1: 1}", "[]"]


def test_a_rehearsal_reports_locks_and_commits_nothing(tmp_path: Path, database: Database) -> None:
    database.query("CREATE TABLE orders (id int PRIMARY KEY, customer int)")
    (tmp_path / "index.yaml").write_text(
        "sqlplan: 1\nname: index\nsteps:\n"
        "  - batch: CREATE INDEX orders_customer ON orders (customer);\n"
    )
    rehearsal = sqlplan.rehearse(tmp_path / "index.yaml", database_url=database.url)
    assert rehearsal.ok
    [statement] = rehearsal.statements
    assert statement.status == "ran"
    assert statement.locks.get("orders") == "SHARE", statement.locks
    assert database.query("SELECT to_regclass('orders_customer') IS NULL") == [[True]]
    (tmp_path / "concurrently.yaml").write_text(
        "sqlplan: 1\nname: c\nsteps:\n"
        "  - batch: CREATE INDEX CONCURRENTLY orders_c ON orders (customer);\n"
    )
    with pytest.raises(sqlplan.NotRehearsable) as refused:
        sqlplan.rehearse(tmp_path / "concurrently.yaml", database_url=database.url)
    assert "concurrently.yaml:4:5" in refused.value.message


def test_history_status_says_what_the_command_says(
    database: Database, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(cli.cwd)
    cli.write("once.yaml", "sqlplan: 1\nname: once\nonce: true\nsteps:\n  - batch: SELECT 1;\n")
    cli.write("every.yaml", "sqlplan: 1\nname: every\nsteps:\n  - batch: SELECT 1;\n")
    before = sqlplan.history_status(["."], database_url=database.url)
    assert [(e["name"], e["status"]) for e in before] == [
        ("every", "not once"),
        ("once", "pending"),
    ]
    assert sqlplan.run_plans(["once.yaml"], database_url=database.url).ok
    after = sqlplan.history_status(["."], database_url=database.url)
    printed = cli("status", ".", "--format", "json", env={"DATABASE_URL": database.url})
    assert printed.exit_code == 0
    assert json.loads(printed.stdout)["plans"] == after
    assert [e["status"] for e in after] == ["not once", "applied"]
