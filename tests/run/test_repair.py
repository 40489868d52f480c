"""Concurrent index builds that repair themselves, against a real server: a unique build that
fails on a duplicate, a build cancelled mid-way, a run killed mid-build, and a REINDEX
CONCURRENTLY cancelled mid-way leave no INVALID index behind, or the next run drops it and
builds the index again; the index ends valid or the step ends with a clear error."""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from conftest import Cli, Database, start_sqlplan, wait_for_statement

from runner.connect.connection import connect

UNIQUE = """\
sqlplan: 1
name: idx
steps:
  - name: Unique a
    batch: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u_a ON u (a)
"""

INVALID = "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid ORDER BY 1"
VALID = "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indisvalid AND c.relname LIKE 'u\\_%' ORDER BY 1"


def _table(database: Database, duplicate: bool) -> None:
    database.query("CREATE TABLE u (id int, a int)")
    database.query("INSERT INTO u SELECT g, g FROM generate_series(1, 1000) g")
    if duplicate:
        database.query("INSERT INTO u VALUES (1001, 1)")


def test_a_failed_unique_build_leaves_nothing_invalid(cli: Cli, database: Database) -> None:
    _table(database, duplicate=True)
    result = cli.run_plan(UNIQUE, url=database.url)
    assert result.exit_code == 1
    assert 'could not create unique index "u_a" [23505]' in result.stderr
    assert "the INVALID index it left (public.u_a) dropped" in result.stderr
    assert database.query(INVALID) == []
    database.query("DELETE FROM u WHERE id = 1001")
    again = cli.run_plan(UNIQUE, url=database.url)
    assert again.exit_code == 0, again.stderr
    assert database.query(VALID) == [["u_a"]]


def test_an_invalid_index_an_earlier_build_left_is_rebuilt(cli: Cli, database: Database) -> None:
    """What IF NOT EXISTS alone would keep, silently: the run drops it and builds it again."""
    _table(database, duplicate=True)
    con = connect(database.target)
    try:
        with pytest.raises(Exception, match="could not create unique index"):
            con.run("CREATE UNIQUE INDEX CONCURRENTLY u_a ON u (a)")  # a build outside sqlplan
    finally:
        con.close()
    assert database.query(INVALID) == [["u_a"]]
    database.query("DELETE FROM u WHERE id = 1001")
    result = cli.run_plan(UNIQUE, url=database.url)
    assert result.exit_code == 0, result.stderr
    assert (
        'warning: step 1 "Unique a": dropped the INVALID index public.u_a an earlier build '
        "left" in result.stderr
    )
    assert "building it again" in result.stderr
    assert database.query(INVALID) == []
    assert database.query(VALID) == [["u_a"]]


def _holding(database: Database) -> Any:
    """A transaction with a snapshot: a concurrent build waits for it to end."""
    holder = connect(database.target)
    holder.run("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.run("SELECT count(*) FROM u")
    return holder


def _waiting(database: Database, like: str) -> None:
    """Until a statement like `like` waits on a lock (a concurrent build, on the holder)."""
    wait_for_statement(database.query, like)
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        f"WHERE query LIKE '{like}' AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not database.query(sql)[0][0]:
        time.sleep(0.05)


def _cancel(database: Database, like: str) -> None:
    _waiting(database, like)
    database.query(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '{like}'")


@pytest.mark.parametrize(
    ("sql", "left"),
    [
        ("CREATE INDEX CONCURRENTLY u_a ON u (a)", "u_a"),
        ("REINDEX INDEX CONCURRENTLY u_id", "u_id_ccnew"),
    ],
)
def test_a_build_cancelled_mid_way_is_cleaned_up(
    cli: Cli, database: Database, sql: str, left: str
) -> None:
    _table(database, duplicate=False)
    database.query("CREATE INDEX u_id ON u (id)")
    holder = _holding(database)
    try:
        cli.write("plan.yaml", f"sqlplan: 1\nname: c\nsteps:\n  - batch: {sql}\n")
        process = start_sqlplan(
            "run", str(cli.cwd / "plan.yaml"), env={"DATABASE_URL": database.url}
        )
        _cancel(database, sql.split(" u_", maxsplit=1)[0] + "%")
        holder.run("ROLLBACK")  # what the drop of the half-built index waits for
        _, stderr = process.communicate(timeout=30)
    finally:
        holder.close()
    assert process.returncode == 1, stderr
    assert "canceling statement due to user request [57014]" in stderr
    assert f"(public.{left}) dropped" in stderr
    assert database.query(INVALID) == []


def test_a_long_transaction_elsewhere_bounds_the_cleanup(cli: Cli, database: Database) -> None:
    """The drop of a half-built index waits for transactions that may see it: at most a few
    seconds, then it says the index stays INVALID and the next run repairs it."""
    _table(database, duplicate=False)
    sql = "CREATE INDEX CONCURRENTLY u_a ON u (a)"
    holder = _holding(database)
    try:
        cli.write("plan.yaml", f"sqlplan: 1\nname: c\nsteps:\n  - batch: {sql}\n")
        process = start_sqlplan(
            "run", str(cli.cwd / "plan.yaml"), env={"DATABASE_URL": database.url}
        )
        _cancel(database, "CREATE INDEX CONCURRENTLY%")
        started = time.monotonic()
        _, stderr = process.communicate(timeout=30)
        waited = time.monotonic() - started
    finally:
        holder.run("ROLLBACK")
        holder.close()
    assert process.returncode == 1
    assert "could not drop an INVALID index this failure left" in stderr
    assert "the next run drops it and builds it again" in stderr
    assert waited < 15
    assert database.query(INVALID) == [["u_a"]]
    again = cli.run_plan(f"sqlplan: 1\nname: c\nsteps:\n  - batch: {sql}\n", url=database.url)
    assert again.exit_code == 0, again.stderr
    assert database.query(VALID) == [["u_a"]]


def test_a_run_killed_mid_build_is_repaired_by_the_next(cli: Cli, database: Database) -> None:
    _table(database, duplicate=False)
    plan = UNIQUE.replace("CREATE UNIQUE INDEX", "CREATE INDEX")
    cli.write("plan.yaml", plan)
    holder = _holding(database)
    try:
        process = start_sqlplan(
            "run", str(cli.cwd / "plan.yaml"), env={"DATABASE_URL": database.url}
        )
        building = "CREATE INDEX CONCURRENTLY%"
        _waiting(database, building)
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=10)
        # the backend goes on waiting for the holder: end it as a dying server would
        database.query(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '{building}'"
        )
    finally:
        holder.run("ROLLBACK")
        holder.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and database.query(INVALID) != [["u_a"]]:
        time.sleep(0.05)
    assert database.query(INVALID) == [["u_a"]]  # what the killed run left
    result = cli.run_plan(plan, url=database.url)
    assert result.exit_code == 0, result.stderr
    assert "dropped the INVALID index public.u_a an earlier build left" in result.stderr
    assert database.query(INVALID) == []
    assert database.query(VALID) == [["u_a"]]
