"""`sqlplan rehearse`: the plan runs in one transaction on a real server and is rolled back.

What it reports is checked against the server (pg_locks, pg_class.relfilenode, the rows left
behind) and the offline analysis; that nothing persists is checked after normal ends, failures,
lock timeouts and a SIGKILL."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from conftest import ROOT, Cli, Database, start_sqlplan, wait_for_statement
from hypothesis import HealthCheck, assume, given, settings
from ledger_plans import RESET, GeneratedPlan, plans
from ledger_plans import SETUP as GENERATED_SETUP
from test_locks import IN_TRANSACTION, SETUP

import sqlplan
from runner.connect.connection import connect
from runner.errors import StepFailed
from runner.plan.validate import plan_from_bytes
from runner.review.rehearsal import compare
from runner.run.rehearse import rehearse

SCHEMA = json.loads((ROOT / "schemas" / "rehearsal.schema.json").read_text())

TABLE = """
CREATE TABLE items (id int PRIMARY KEY, a int);
INSERT INTO items SELECT g, g FROM generate_series(1, 50) g;
"""

MIGRATION = """\
sqlplan: 1
name: migrate
steps:
  - name: Index and a volatile default
    batch: |
      CREATE INDEX items_a ON items (a);
      ALTER TABLE items ADD COLUMN b float8 DEFAULT random();
  - name: Move some rows
    execute: UPDATE items SET a = a + $1 WHERE id <= $2
    params: [100, 7]
  - name: Add rows
    bulk_insert: INSERT INTO items (id, a) VALUES ($1, $2)
    rows:
      - [1001, 1]
      - [1002, 2]
"""


def load_plan_text(text: str) -> Any:
    return plan_from_bytes(text.encode(), "plan.yaml")


def _state(database: Database) -> list[object]:
    """What a rehearsal must leave as it found: columns, indexes, files, rows."""
    return [
        database.query(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass AND attnum > 0 "
            "ORDER BY attnum"
        ),
        database.query("SELECT indexname FROM pg_indexes WHERE tablename = 'items' ORDER BY 1"),
        database.query("SELECT relfilenode FROM pg_class WHERE relname = 'items'"),
        database.query("SELECT id, a FROM items ORDER BY id"),
    ]


def _rehearse(cli: Cli, database: Database, text: str, *args: str) -> Any:
    cli.write("plan.yaml", text)
    return cli("rehearse", "plan.yaml", "--database-url", database.url, *args)


def test_a_rehearsal_reports_what_the_server_did_and_leaves_nothing(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    before = _state(database)
    result = _rehearse(cli, database, MIGRATION, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report["committed"] is False
    assert report["ok"] is True
    assert report["findings"] == 0
    index, column, update, insert = report["statements"]
    assert index["locks"] == [{"relation": "items", "mode": "SHARE"}]
    assert index["rewritten"] == []
    assert column["locks"] == [
        {"relation": "items", "mode": "ACCESS EXCLUSIVE"},
        {"relation": "items_pkey", "mode": "ACCESS EXCLUSIVE", "table": "items"},
    ]
    assert column["rewritten"] == ["items"]
    assert update["rows"] == 7
    assert update["step"] == 2
    assert insert["rows"] == 2
    assert insert["status"] == "ran"
    assert _state(database) == before


def test_the_text_and_markdown_reports_name_the_plan_locks_and_rewrites(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    text = _rehearse(cli, database, MIGRATION)
    assert text.exit_code == 0, text.stderr
    assert "one transaction, rolled back" in text.stdout
    assert "locks: ACCESS EXCLUSIVE on items" in text.stdout
    assert "rewrote: items" in text.stdout
    assert "nothing was committed" in text.stdout
    markdown = _rehearse(cli, database, MIGRATION, "--format", "markdown")
    assert markdown.exit_code == 0
    fingerprint = json.loads(_rehearse(cli, database, MIGRATION, "--format", "json").stdout)[
        "fingerprint"
    ]
    assert f"Fingerprint `{fingerprint[:16]}`" in markdown.stdout
    rows = [line for line in markdown.stdout.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 4  # the header, then one row per statement
    assert "| 1 | `ALTER TABLE items ADD COLUMN b float8 DEFAULT random()` |" in markdown.stdout


@pytest.fixture
def con(con: Any) -> Any:
    """conftest's connection, on a database with SETUP's tables."""
    con.run(SETUP)
    return con


def _files(con: Any) -> list[Any]:
    return sorted(
        con.run(
            "SELECT relname, relfilenode FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        )
    )


@pytest.mark.parametrize("sql", IN_TRANSACTION)
def test_every_statement_of_the_lock_model_rehearses_without_findings(con: Any, sql: str) -> None:
    """What the rehearsal observes agrees with the analysis the server already confirmed
    (tests/review/test_locks.py), statement by statement; and each rehearsal leaves the schema as it
    was, or the next would start from a changed one."""
    before = _files(con)
    plan = load_plan_text(f"sqlplan: 1\nname: one\nsteps:\n  - batch: {json.dumps(sql)}\n")
    result = rehearse(plan, con)
    (row,) = compare(result)
    assert row.observed.status == "ran", row.observed.detail
    assert row.differences == (), row.differences
    assert row.observed.locks or row.observed.holding, "nothing observed"
    assert _files(con) == before


def test_a_failing_statement_stops_the_rehearsal_and_nothing_is_kept(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    before = _state(database)
    plan = MIGRATION.replace("SET a = a + $1", "SET a = a / ($1 - 100)")
    result = _rehearse(cli, database, plan, "--format", "json")
    assert result.exit_code == 1
    statuses = [s["status"] for s in json.loads(result.stdout)["statements"]]
    assert statuses == ["ran", "ran", "failed", "not run"]
    failed = json.loads(result.stdout)["statements"][2]
    assert "division by zero [22012]" in failed["detail"]
    assert _state(database) == before


def test_a_statement_that_would_wait_is_reported_with_who_holds_the_lock(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    holder = connect(database.target)
    try:
        holder.run("SET application_name = 'the_holder'")
        holder.run("BEGIN")
        holder.run("LOCK TABLE items IN ACCESS SHARE MODE")
        pid = holder.run("SELECT pg_backend_pid()")[0][0]
        started = time.monotonic()
        result = _rehearse(cli, database, MIGRATION, "--lock-timeout", "300ms")
        elapsed = time.monotonic() - started
    finally:
        holder.run("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert (
        f"would wait for a lock on items, held by pid {pid} (the_holder, ACCESS SHARE)"
        in result.stdout
    )
    assert "not run" in result.stdout
    assert elapsed < 10  # it did not queue behind the holder
    assert database.query("SELECT count(*) FROM items") == [[50]]


def test_statements_that_cannot_run_in_a_transaction_are_refused_or_skipped(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    plan = MIGRATION.replace(
        "CREATE INDEX items_a ON items (a);", "CREATE INDEX CONCURRENTLY items_a ON items (a);"
    )
    refused = _rehearse(cli, database, plan)
    assert refused.exit_code == 1
    assert "CREATE INDEX CONCURRENTLY" in refused.stderr
    assert "--skip-non-transactional" in refused.stderr
    assert refused.stdout == ""
    skipped = _rehearse(cli, database, plan, "--skip-non-transactional", "--format", "json")
    assert skipped.exit_code == 0, skipped.stderr
    first = json.loads(skipped.stdout)["statements"][0]
    assert first["status"] == "not rehearsed"
    assert "cannot run in a transaction block" in first["detail"]
    assert database.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_a'") == [[0]]


def test_transaction_control_in_the_plan_is_not_run(cli: Cli, database: Database) -> None:
    database.query(TABLE)
    plan = """\
sqlplan: 1
name: commits
steps:
  - batch: |
      BEGIN;
      INSERT INTO items VALUES (500, 500);
      COMMIT;
"""
    result = _rehearse(cli, database, plan, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert [s["status"] for s in json.loads(result.stdout)["statements"]] == [
        "not rehearsed",
        "ran",
        "not rehearsed",
    ]
    assert database.query("SELECT count(*) FROM items WHERE id = 500") == [[0]]


def test_a_killed_rehearsal_commits_nothing_and_releases_its_locks(
    database: Database, tmp_path: Path
) -> None:
    database.query(TABLE)
    (tmp_path / "plan.yaml").write_text(
        """\
sqlplan: 1
name: slow
steps:
  - batch: |
      INSERT INTO items VALUES (900, 900);
      ALTER TABLE items ADD COLUMN c int;
      SELECT pg_sleep(60);
"""
    )
    process = start_sqlplan(
        "rehearse", str(tmp_path / "plan.yaml"), env={"DATABASE_URL": database.url}
    )
    try:
        wait_for_statement(database.query, "SELECT pg_sleep(60)%")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and database.query(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(60)%'"
        ) != [[0]]:
            time.sleep(0.05)
        # The backend is gone (the server noticed the closed socket mid-statement) and the
        # table is free: a LOCK that conflicts with everything is granted at once.
        holder = connect(database.target)
        try:
            holder.run("SET lock_timeout = '1s'")
            holder.run("BEGIN")
            holder.run("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            holder.run("ROLLBACK")
        finally:
            holder.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert database.query("SELECT count(*) FROM items WHERE id = 900") == [[0]]
    assert database.query(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'c'"
    ) == [[0]]


def test_settings_travel_as_values_not_sql(cli: Cli, database: Database) -> None:
    database.query(TABLE)
    result = _rehearse(cli, database, MIGRATION, "--lock-timeout", "1s'; DROP TABLE items; --")
    assert result.exit_code != 0
    assert "invalid value for parameter" in result.stderr
    assert database.query("SELECT count(*) FROM items") == [[50]]


def test_an_observation_stronger_than_the_analysis_is_a_finding(
    cli: Cli, database: Database
) -> None:
    """A plan whose function takes a lock the analysis cannot see: --strict fails on it."""
    database.query(TABLE)
    database.query(
        "CREATE FUNCTION grab() RETURNS void LANGUAGE sql "
        "AS 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE'"
    )
    plan = """\
sqlplan: 1
name: hidden
steps:
  - batch: |
      SELECT grab() FROM items LIMIT 1;
"""
    loose = _rehearse(cli, database, plan, "--format", "json")
    assert loose.exit_code == 0, loose.stderr
    (statement,) = json.loads(loose.stdout)["statements"]
    tables = [lock for lock in statement["locks"] if "table" not in lock]
    assert tables == [{"relation": "items", "mode": "ACCESS EXCLUSIVE"}]
    assert statement["differences"] == [
        "took ACCESS EXCLUSIVE on items, which the analysis did not foresee"
    ]
    strict = _rehearse(cli, database, plan, "--strict")
    assert strict.exit_code == 1
    assert "finding: took ACCESS EXCLUSIVE on items" in strict.stdout


def test_a_rehearsal_runs_alongside_its_own_reads(database: Database) -> None:
    """Another session reading the table while a rehearsal holds SHARE on it is not blocked,
    and sees none of the rehearsal's rows."""
    database.query(TABLE)
    con = connect(database.target)
    plan = load_plan_text(
        "sqlplan: 1\nname: r\nsteps:\n  - batch: |\n      CREATE INDEX items_a ON items (a);\n"
        "      INSERT INTO items VALUES (700, 700);\n      SELECT pg_sleep(0.5);\n"
    )
    seen: list[object] = []

    def read() -> None:
        time.sleep(0.2)
        seen.append(database.query("SELECT count(*) FROM items"))

    reader = threading.Thread(target=read)
    try:
        reader.start()
        result = rehearse(plan, con)
    finally:
        reader.join(10)
        con.close()
    assert result.ok
    assert seen == [[[50]]]


def test_a_lost_connection_is_reported_and_nothing_is_committed(
    cli: Cli, database: Database
) -> None:
    database.query(TABLE)
    plan = """\
sqlplan: 1
name: slow
steps:
  - execute: INSERT INTO items VALUES ($1, $1)
    params: [800]
  - batch: |
      SELECT pg_sleep(30);
"""
    cli.write("plan.yaml", plan)

    def terminate() -> None:
        wait_for_statement(database.query, "SELECT pg_sleep(30)%")
        database.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
        )

    killer = threading.Thread(target=terminate)
    killer.start()
    try:
        result = cli("rehearse", "plan.yaml", "--database-url", database.url)
    finally:
        killer.join(30)
    assert result.exit_code == 1
    assert "the connection was lost during step 2" in result.stderr
    assert "nothing was committed" in result.stderr
    assert "Traceback" not in result.stderr
    assert database.query("SELECT count(*) FROM items WHERE id = 800") == [[0]]


def test_holds_follow_the_transactions_of_a_real_run(cli: Cli, database: Database) -> None:
    """A lock is held from the statement that takes it to the end of its transaction: the step,
    or the step that ends a BEGIN a previous step opened. Tables the plan creates block nobody."""
    database.query(TABLE)
    plan = """\
sqlplan: 1
name: holds
steps:
  - batch: |
      CREATE TABLE fresh (id int);
      CREATE INDEX fresh_id ON fresh (id);
  - batch: BEGIN
  - batch: ALTER TABLE items ADD COLUMN note text
    allow: [lock-timeout]
  - execute: UPDATE items SET note = $1 WHERE id <= 40
    params: [x]
  - batch: COMMIT
  - batch: CREATE INDEX items_a ON items (a)
"""
    result = _rehearse(cli, database, plan, "--format", "json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    seconds = {s["step"]: s["seconds"] for s in report["statements"] if s["status"] == "ran"}
    holds = {(h["relation"], h["mode"]): h for h in report["holds"]}
    assert set(holds) == {("items", "ACCESS EXCLUSIVE"), ("items", "SHARE")}
    exclusive = holds["items", "ACCESS EXCLUSIVE"]
    assert (exclusive["first_step"], exclusive["last_step"]) == (3, 5)
    assert exclusive["seconds"] == pytest.approx(seconds[3] + seconds[4], abs=2e-6)
    share = holds["items", "SHARE"]
    assert (share["first_step"], share["last_step"]) == (6, 6)
    # the table's figures, as the catalogue had them before the plan
    (total,) = database.query("SELECT pg_total_relation_size('items')")[0]
    assert exclusive["table"]["bytes"] == share["table"]["bytes"] == total
    text = _rehearse(cli, database, plan).stdout
    assert "ACCESS EXCLUSIVE on items (unknown rows, " in text  # never analysed
    assert "from its statement in step 3 to the COMMIT of step 5; reads and writes wait" in text


@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_an_interrupted_rehearsal_reports_as_far_as_it_got_and_commits_nothing(
    database: Database, tmp_path: Path, signum: int, code: int, name: str
) -> None:
    database.query(TABLE)
    (tmp_path / "plan.yaml").write_text(
        """\
sqlplan: 1
name: slow
steps:
  - execute: INSERT INTO items VALUES ($1, $1)
    params: [901]
  - batch: SELECT pg_sleep(60)
  - batch: SELECT 1
"""
    )
    process = start_sqlplan(
        "rehearse", str(tmp_path / "plan.yaml"), env={"DATABASE_URL": database.url}
    )
    try:
        wait_for_statement(database.query, "SELECT pg_sleep(60)%")
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, stderr
    assert "ran in" in stdout
    assert "interrupted: cancelled at the user's request" in stdout
    assert "  SELECT 1\n    not run\n" in stdout  # the plan stops where it was interrupted
    assert f"sqlplan: interrupted ({name}); the rehearsal was rolled back" in stderr
    assert "Traceback" not in stderr
    assert database.query("SELECT count(*) FROM items WHERE id = 901") == [[0]]


def test_partitions_and_the_other_side_of_a_foreign_key_are_foreseen(
    cli: Cli, database: Database
) -> None:
    """The analysis's "may" (partitions, the referenced table) is resolved from the catalogue
    the rehearsal reads first: what the server locks there is no finding, and is named."""
    database.query(
        "CREATE TABLE m (id int, at date) PARTITION BY RANGE (at); "
        "CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01'); "
        "CREATE TABLE m_d PARTITION OF m DEFAULT; CREATE TABLE k (id int PRIMARY KEY)"
    )
    result = _rehearse(
        cli,
        database,
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - batch: ALTER TABLE m ADD COLUMN x int\n"
        "    allow: [lock-timeout]\n"
        "  - batch: ALTER TABLE m ADD COLUMN y int REFERENCES k (id)\n"
        "    allow: [lock-timeout]\n",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "analysis: ACCESS EXCLUSIVE on m; ACCESS EXCLUSIVE on m_1; ACCESS EXCLUSIVE on m_d" in result.stdout  # fmt: skip
    assert "SHARE ROW EXCLUSIVE on k" in result.stdout
    assert "0 findings" in result.stdout


def test_what_the_plan_creates_is_foreseen_as_it_goes(cli: Cli, database: Database) -> None:
    """The catalogue read before the run lacks what the plan creates: the partitions and
    indexes it makes are followed from its own statements, so a lock on them is no finding."""
    database.query("CREATE TABLE m (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)")
    result = _rehearse(
        cli,
        database,
        "sqlplan: 1\nname: p\nsteps:\n"
        "  - batch: |\n"
        "      CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');\n"
        "      CREATE TABLE n (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);\n"
        "      CREATE TABLE n_1 PARTITION OF n FOR VALUES FROM (0) TO (100);\n"
        "      CREATE TABLE n_d PARTITION OF n DEFAULT\n"
        "  - batch: ALTER TABLE m ADD COLUMN x int\n"
        "    allow: [lock-timeout]\n"
        "  - batch: ALTER TABLE n ADD COLUMN y int\n"
        "    allow: [lock-timeout]\n",
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "analysis: ACCESS EXCLUSIVE on m; ACCESS EXCLUSIVE on m_1" in result.stdout
    assert "analysis: ACCESS EXCLUSIVE on n; ACCESS EXCLUSIVE on n_1; ACCESS EXCLUSIVE on n_d" in result.stdout  # fmt: skip
    assert "0 findings" in result.stdout


_GENERATED = settings(
    max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


@_GENERATED
@given(generated=plans(max_segments=4))
def test_a_rehearsal_counts_what_a_run_counts_and_stops_where_it_fails(
    database: Database, tmp_path_factory: pytest.TempPathFactory, generated: GeneratedPlan
) -> None:
    """Differential: the rehearsal runs each step through the engine's executor, so over
    generated plans (every kind, multi-statement batches, blocks, failing statements) it
    counts the rows of every execute and bulk insert as a real run of the plan does, fails at
    the step the run fails at, and leaves nothing, where the run leaves its rows."""
    assume("retry:" not in generated.text)  # a retry is the run's, not the rehearsal's
    database.query(GENERATED_SETUP)
    database.query(RESET)
    path = tmp_path_factory.mktemp("generated") / "plan.yaml"
    path.write_text(generated.text)
    plan = load_plan_text(generated.text)
    con = connect(database.target)
    try:
        rehearsal = rehearse(plan, con)
    finally:
        con.close()
    assert database.query(
        "SELECT count(*) FROM (SELECT step FROM t UNION ALL SELECT step FROM u) a"
    ) == [[0]]

    run = sqlplan.run_plans([path], database_url=database.url)
    failed = [o.step for o in rehearsal.statements if o.status == "failed"]
    # a statement the server refused (not a plan that leaves its block open: the run's finding)
    run_failed = [
        p.failure.step
        for p in run.plans
        if isinstance(p.failure, StepFailed) and p.failure.server is not None
    ]
    assert failed[:1] == run_failed, (generated.text, rehearsal.statements, run.plans)
    ledger = run.plans[0].ledger
    counted = {o.step: o.rows for o in rehearsal.statements if o.status == "ran"}
    for step in plan.steps:
        if step.kind in ("execute", "bulk_insert") and step.number in counted:
            assert counted[step.number] == ledger.rows.get(step.number), (
                step.label,
                generated.text,
            )
            assert counted[step.number] == generated.rows[step.number]
