"""The backfill step against a real PostgreSQL: its batches, its checkpoint, resuming."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest
from conftest import Cli, Database, start_sqlplan

from runner.connect.connection import connect

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


def _counted(database: Database, rows: int) -> None:
    database.query("CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)")
    database.query(f"INSERT INTO t (id) SELECT generate_series(1, {rows})")


COUNT = "UPDATE t SET v = v + 1 WHERE id > $1 AND id <= $2"


def test_a_batch_that_waits_on_a_lock_is_retried_alone(cli: Cli, database: Database) -> None:
    _counted(database, 300)
    holder = connect(database.target)
    holder.run("BEGIN")
    holder.run("UPDATE t SET v = v WHERE id = 150")  # in the second batch of 100

    def release() -> None:
        time.sleep(1.0)
        holder.run("ROLLBACK")

    releasing = threading.Thread(target=release)
    releasing.start()
    extra = "    lock_timeout: 200ms\n    retry: {attempts: 10, backoff: 100ms}\n"
    result = cli.run_plan(_plan(COUNT, extra=extra), "--format", "json", url=database.url)
    releasing.join()
    holder.close()
    assert result.exit_code == 0, result.stderr
    assert "the batch after id = 100 failed on lock_timeout [55P03]" in result.stderr
    assert database.query("SELECT min(v), max(v) FROM t") == [[1, 1]]
    figures = json.loads(result.stdout)["plans"][0]["steps"][0]["backfill"]
    assert (figures["batches"], figures["rows"], figures["checkpoint"]) == (3, 300, ["300"])


def test_a_lock_timeout_without_retry_keeps_the_batches_before_it(
    cli: Cli, database: Database
) -> None:
    _counted(database, 300)
    holder = connect(database.target)
    holder.run("BEGIN")
    holder.run("UPDATE t SET v = v WHERE id = 250")
    try:
        result = cli.run_plan(_plan(COUNT, extra="    lock_timeout: 100ms\n"), url=database.url)
    finally:
        holder.run("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "the batch after id = 200 was rolled back; the batches before it stay committed" in (
        result.stderr
    )
    assert "committed in part" in result.stderr
    assert database.query("SELECT count(*) FROM t WHERE v = 1") == [[200]]
    assert database.query("SELECT count(*) FROM t WHERE v = 0") == [[100]]
    resumed = cli.run_plan(_plan(COUNT), url=database.url)
    assert resumed.exit_code == 0, resumed.stderr
    assert database.query("SELECT min(v), max(v) FROM t") == [[1, 1]]


def test_two_runs_at_once_never_both_do_a_batch(cli: Cli, database: Database) -> None:
    _counted(database, 2000)
    slow = COUNT + " AND pg_sleep(0.0005) IS NOT NULL"
    plan = cli.write("plan.yaml", _plan(slow, batch=50))
    env = {"DATABASE_URL": database.url}
    runs = [start_sqlplan("run", str(plan), env=env) for _ in range(3)]
    outcomes = [(run.wait(120), run.communicate()[1]) for run in runs]
    assert all(code in (0, 1) for code, _ in outcomes), outcomes
    for code, stderr in outcomes:
        if code == 1:
            assert "another run of this backfill moved its checkpoint first" in stderr
    final = cli.run_plan(_plan(slow, batch=50), url=database.url)
    assert final.exit_code == 0, final.stderr
    assert database.query("SELECT min(v), max(v), count(*) FROM t") == [[1, 1, 2000]]


def test_rows_inserted_ahead_of_the_checkpoint_are_in_a_later_batch(
    cli: Cli, database: Database
) -> None:
    _counted(database, 500)
    stop = threading.Event()

    def insert() -> None:
        writer = connect(database.target)
        next_id = 501
        while not stop.is_set():
            writer.run("INSERT INTO t (id) VALUES (:id)", id=next_id)
            next_id += 1
            time.sleep(0.005)
        writer.close()

    inserting = threading.Thread(target=insert)
    inserting.start()
    try:
        result = cli.run_plan(_plan(COUNT, extra="    pause: 20ms\n", batch=50), url=database.url)
    finally:
        stop.set()
        inserting.join()
    assert result.exit_code == 0, result.stderr
    [[last]] = database.query("SELECT last_key[1]::int FROM sqlplan.backfill")
    assert isinstance(last, int)
    assert last > 500  # it went on to rows inserted while it ran
    assert database.query("SELECT count(*) FROM t WHERE id <= :last AND v <> 1", last=last) == [[0]]


def test_a_once_plan_that_ends_with_a_backfill_is_recorded_after_it(
    cli: Cli, database: Database
) -> None:
    _counted(database, 120)
    plan = _plan(COUNT).replace("name: backfill\n", "name: backfill\nonce: true\n")
    first = cli.run_plan(plan, url=database.url)
    assert first.exit_code == 0, first.stderr
    assert database.query("SELECT outcome FROM sqlplan.history") == [["succeeded"]]
    again = cli.run_plan(plan, url=database.url)
    assert again.exit_code == 0, again.stderr
    assert database.query("SELECT min(v), max(v) FROM t") == [[1, 1]]


def test_a_rehearsal_runs_the_first_batches_and_keeps_nothing(cli: Cli, database: Database) -> None:
    _counted(database, 1000)
    cli.write("plan.yaml", _plan(COUNT))
    result = cli("rehearse", "plan.yaml", "--database-url", database.url)
    assert result.exit_code == 0, result.stderr
    assert "the first 3 of its batches of 100 keys (300 rows changed)" in result.stdout
    assert "ROW EXCLUSIVE" in result.stdout
    assert database.query("SELECT max(v) FROM t") == [[0]]
    assert database.query("SELECT to_regclass('sqlplan.backfill')") == [[None]]


def test_check_warns_of_a_key_the_plan_left_without_a_unique_index_as_the_run_refuses_it(
    cli: Cli, database: Database
) -> None:
    plan = (
        "sqlplan: 1\nname: keys\nsteps:\n"
        "  - batch: CREATE TABLE a (id int, v int); CREATE TABLE b (id int, v int);"
        " CREATE UNIQUE INDEX ON b (id); CREATE TABLE c (id int PRIMARY KEY, v int)\n"
        + "".join(
            f'  - backfill: {{key: id, sql: "UPDATE {t} SET v = 1 WHERE id > $1 AND id <= $2"}}\n'
            for t in "cba"
        )
    )
    cli.write("plan.yaml", plan)
    checked = cli("check", "plan.yaml")
    assert checked.stdout.count("[backfill-key]") == 1
    assert "step 4: the backfill walks a by (id)" in checked.stdout
    ran = cli.run_plan(plan, url=database.url)
    assert ran.exit_code == 1
    assert "step 4 cannot run: a has no valid unique index on (id)" in ran.stderr


def test_off_a_terminal_progress_is_plain_lines(
    cli: Cli, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.cli import run

    monkeypatch.setattr(run._Terminal, "PLAIN_EVERY", 0.0)  # a line at every batch
    _counted(database, 300)
    result = cli.run_plan(_plan(COUNT), url=database.url)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("sqlplan: step 1")]
    assert len(lines) >= 2
    assert re.fullmatch(
        r'sqlplan: step 1 "Fill": batch 2, 200 rows changed, [\d,]+ rows/s: 200 of 300 \(66%\)',
        lines[0],
    ), lines
