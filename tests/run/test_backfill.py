"""The backfill step against a real PostgreSQL: its batches, its checkpoint, resuming."""

from __future__ import annotations

import json

from conftest import Cli, Database

PLAN = """\
sqlplan: 1
name: lower
steps:
  - name: Lower-case the emails
    backfill:
      table: users
      key: id
      batch: {batch}
      sql: UPDATE users SET email_lower = lower(email)
           WHERE id > $1 AND id <= $2 AND email_lower IS DISTINCT FROM lower(email)
    after: "Lower-cased {{count}} emails in {{batches}} batches."
"""


def _users(database: Database, rows: int) -> None:
    database.query(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text, email_lower text);"
        f"INSERT INTO users SELECT g * 3, 'User' || g || '@X.org' FROM generate_series(1, {rows}) g"
    )


def test_a_backfill_runs_in_batches_and_is_not_repeated(cli: Cli, database: Database) -> None:
    _users(database, 1000)
    result = cli.run_plan(PLAN.format(batch=300), url=database.url)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Lower-cased 1000 emails in 4 batches.\n"
    assert database.query("SELECT count(*) FROM users WHERE email_lower = lower(email)") == [[1000]]
    [[last, rows, batches, finished]] = database.query(
        "SELECT last_key, rows, batches, finished_at IS NOT NULL FROM sqlplan.backfill"
    )
    assert (last, rows, batches, finished) == (["3000"], 1000, 4, True)
    again = cli.run_plan(PLAN.format(batch=300), "--format", "json", url=database.url)
    assert again.exit_code == 0, again.stderr
    report = json.loads(again.stdout)
    step = report["plans"][0]["steps"][0]
    assert step["backfill"]["earlier"] is True
    assert step["backfill"]["batches"] == 0
    assert "not run again" in again.stderr


def _plan(sql: str, key: str = "id", extra: str = "", batch: int = 100) -> str:
    return (
        "sqlplan: 1\nname: backfill\nsteps:\n  - name: Fill\n    backfill:\n"
        f"      table: t\n      key: {key}\n      batch: {batch}\n      sql: {sql}\n{extra}"
    )


def test_a_backfill_stopped_at_its_max_duration_resumes_where_it_stopped(
    cli: Cli, database: Database
) -> None:
    database.query(
        "CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);"
        "INSERT INTO t (id) SELECT generate_series(1, 400)"
    )
    sql = "UPDATE t SET v = v + 1 WHERE id > $1 AND id <= $2 AND pg_sleep(0.001) IS NOT NULL"
    plan = _plan(sql, extra="    max_duration: 120ms\n", batch=50)
    first = cli.run_plan(plan, "--format", "json", url=database.url)
    assert first.exit_code == 9, first.stderr
    step = json.loads(first.stdout)["plans"][0]["steps"][0]
    assert step["status"] == "committed in part"
    done = step["backfill"]["batches"]
    assert done >= 1
    assert step["backfill"]["checkpoint"] == [str(50 * done)]
    assert step["backfill"]["rows"] == 50 * done
    # what the report says committed is what the table holds
    assert database.query("SELECT count(*) FROM t WHERE v = 1") == [[50 * done]]
    for _ in range(10):
        again = cli.run_plan(plan, url=database.url)
        if again.exit_code == 0:
            break
        assert again.exit_code == 9, again.stderr
        assert "committed in part" in again.stderr
    assert database.query("SELECT min(v), max(v), count(*) FROM t") == [[1, 1, 400]]


def test_the_key_is_refused_with_its_reason(cli: Cli, database: Database) -> None:
    database.query(
        "CREATE TABLE t (id int, code text UNIQUE, v int);"
        "INSERT INTO t VALUES (1, 'a', 0), (1, 'b', 0), (2, NULL, 0)"
    )
    not_unique = cli.run_plan(
        _plan("UPDATE t SET v = 1 WHERE id > $1 AND id <= $2"), url=database.url
    )
    assert not_unique.exit_code == 1
    assert "has no valid unique index on (id)" in not_unique.stderr
    with_null = cli.run_plan(
        _plan("UPDATE t SET v = 1 WHERE code >= $1 AND code <= $2", key="code"), url=database.url
    )
    assert with_null.exit_code == 1
    assert "rows whose code is NULL" in with_null.stderr
    database.query("DELETE FROM t WHERE code IS NULL")
    below = cli.run_plan(
        _plan("UPDATE t SET v = 1 WHERE code > $1 AND code <= $2", key="code"), url=database.url
    )
    assert below.exit_code == 1
    assert "write the lower bound inclusive (code >= $1)" in below.stderr
    missing = cli.run_plan(
        _plan("UPDATE t SET v = 1 WHERE nope > $1 AND nope <= $2", key="nope"), url=database.url
    )
    assert missing.exit_code == 1
    assert "has no column nope" in missing.stderr
    assert database.query("SELECT count(*) FROM t WHERE v = 1") == [[0]]


def test_a_checkpoint_of_any_text_resumes_after_it(cli: Cli, database: Database) -> None:
    """The checkpoint is a text[]: keys that an array literal quotes or escapes come back as
    they were, run after run."""
    keys = ["a,b", '"q"', "x\\y", "{}", "NULL", " s ", "", "é"]
    database.query(
        "CREATE TABLE t (k text, n int NOT NULL, v int NOT NULL DEFAULT 0, PRIMARY KEY (k, n))"
    )
    database.query(
        "INSERT INTO t (k, n) SELECT k, 1 FROM unnest(CAST(:keys AS text[])) k", keys=keys
    )
    plan = _plan(
        "UPDATE t SET v = v + 1 WHERE (k, n) >= ($1, $2) AND (k, n) <= ($3, $4)",
        key="[k, n]",
        extra="    max_duration: 1us\n",
        batch=1,
    )
    runs = [cli.run_plan(plan, url=database.url) for _ in range(len(keys) + 1)]
    # the last batch ends the run that does it; the run after it finds it finished
    assert [r.exit_code for r in runs] == [9] * (len(keys) - 1) + [0, 0], runs[-1].stderr
    assert "not run again" in runs[-1].stderr
    assert database.query("SELECT count(*) FROM t WHERE v = 1") == [[len(keys)]]
