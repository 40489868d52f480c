"""The lock model is true: every statement of every rule runs against the real server, and the
lock it takes on each relation (the strongest its backend holds, from pg_locks) and whether it
rewrote the table (pg_class.relfilenode before and after) are what runner/review/locks.py says.

Statements that can run in a transaction block run in one, rolled back; the others (CREATE
INDEX CONCURRENTLY, VACUUM FULL, CLUSTER, ...) are made to wait behind a second session's
ACCESS EXCLUSIVE lock, and the mode they wait for is read from pg_locks."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from conftest import Database

from runner.connect.connection import connect
from runner.plan.sqlparse import parse
from runner.review.locks import MODES, locks

SETUP = """
CREATE TABLE t (id int PRIMARY KEY, a int, v varchar(10));
CREATE TABLE u (id int PRIMARY KEY);
INSERT INTO u SELECT g FROM generate_series(1, 10) g;
INSERT INTO t SELECT g, g, 'x' FROM generate_series(1, 10) g;
CREATE INDEX t_a ON t (a);
CREATE UNIQUE INDEX t_a_unique ON t (a);
CREATE TABLE p (id int) PARTITION BY RANGE (id);
CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (100);
CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TRIGGER t_f BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f();
ALTER TABLE t ADD CONSTRAINT t_a_positive CHECK (a > 0) NOT VALID;
"""

IN_TRANSACTION = [
    "CREATE INDEX i ON t (a)",
    "ALTER TABLE t ADD COLUMN b float8 DEFAULT random()",
    "ALTER TABLE t ADD COLUMN b int DEFAULT 5",
    "ALTER TABLE t ADD COLUMN b timestamptz DEFAULT now()",
    "ALTER TABLE t ADD COLUMN b int GENERATED ALWAYS AS (a * 2) STORED",
    "ALTER TABLE t ADD COLUMN b serial",
    "ALTER TABLE t ADD COLUMN b int GENERATED ALWAYS AS IDENTITY",
    "ALTER TABLE t ALTER COLUMN a TYPE bigint",
    "ALTER TABLE t ALTER COLUMN v TYPE text",
    "ALTER TABLE t ALTER COLUMN v TYPE varchar(20)",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL",
    "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id)",
    "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
    "ALTER TABLE t ADD CONSTRAINT c CHECK (a < 100)",
    "ALTER TABLE t ADD CONSTRAINT c CHECK (a < 100) NOT VALID",
    "ALTER TABLE t VALIDATE CONSTRAINT t_a_positive",
    "ALTER TABLE t ADD CONSTRAINT un UNIQUE (a)",
    "ALTER TABLE t ADD CONSTRAINT un UNIQUE USING INDEX t_a_unique",
    "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING btree (a WITH =)",
    "ALTER TABLE t ALTER COLUMN a SET STATISTICS 200",
    "ALTER TABLE t DISABLE TRIGGER t_f",
    "ALTER TABLE t RENAME COLUMN v TO w",
    "ALTER TABLE t SET UNLOGGED",
    "ALTER TABLE p DETACH PARTITION p1",
    "DROP INDEX t_a",
    "REINDEX TABLE t",
    "LOCK TABLE t IN SHARE MODE",
    "LOCK TABLE t IN ROW EXCLUSIVE MODE",
    "CREATE TRIGGER t_g AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f()",
    "CREATE TABLE w (id int REFERENCES u (id))",
    "TRUNCATE t",
    "INSERT INTO u VALUES (11)",
    "UPDATE u SET id = id WHERE id = 1",
    "DROP TABLE u CASCADE",
]
# (statement, the table whose lock it waits for)
OUTSIDE = [
    ("CREATE INDEX CONCURRENTLY i ON t (a)", "t"),
    ("DROP INDEX CONCURRENTLY t_a", "t"),
    ("REINDEX TABLE CONCURRENTLY t", "t"),
    ("VACUUM FULL t", "t"),
    ("VACUUM t", "t"),
    ("CLUSTER t USING t_a", "t"),
    ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", "p"),
]
# A mode that conflicts with the one claimed but not with ACCESS SHARE, which some statements
# take first: the statement then waits for exactly the lock it claims.
_HOLD = {
    "ACCESS EXCLUSIVE": "ACCESS SHARE",
    "SHARE UPDATE EXCLUSIVE": "SHARE UPDATE EXCLUSIVE",
    "SHARE": "ROW EXCLUSIVE",
    "SHARE ROW EXCLUSIVE": "ROW EXCLUSIVE",
    "EXCLUSIVE": "ROW EXCLUSIVE",
}
_PG_MODES = {m: m.title().replace(" ", "") + "Lock" for m in MODES}


@pytest.fixture
def con(con: Any) -> Any:
    """conftest's connection, on a database with SETUP's tables."""
    con.run(SETUP)
    return con


def _filenodes(con: Any) -> dict[str, int]:
    rows = con.run(
        "SELECT relname, relfilenode FROM pg_class WHERE relname IN ('t', 'u', 'p', 'p1')"
    )
    return dict(rows)


@pytest.mark.parametrize("sql", IN_TRANSACTION)
def test_the_lock_model_matches_the_server_in_a_transaction(con: Any, sql: str) -> None:
    (statement,) = parse(sql).statements
    claimed = [lock for lock in locks(statement) if not lock.via]  # on the relations named
    assert claimed, f"the model knows nothing of {sql}"
    con.run("BEGIN")
    try:
        # the relations' OIDs must resolve before DROP removes them
        before = _filenodes(con)
        oids = {
            lock.relation: con.run("SELECT to_regclass(:r)::oid", r=lock.relation)[0][0]
            for lock in claimed
        }
        con.run(sql)
        for lock in claimed:
            rows = con.run(
                "SELECT mode FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation = :o",
                o=oids[lock.relation],
            )
            held = [m for m in MODES if [_PG_MODES[m]] in rows]
            assert held, (sql, lock)
            assert held[-1] == lock.mode, (sql, lock, held)
        after = _filenodes(con)
        for lock in claimed:
            name = lock.relation
            if name in before and name in after and lock.rewrite is not None:
                assert (before[name] != after[name]) == lock.rewrite, (sql, lock, before, after)
    finally:
        con.run("ROLLBACK")


@pytest.mark.parametrize(("sql", "table"), OUTSIDE)
def test_the_lock_model_matches_the_server_outside_a_transaction(
    con: Any, database: Database, sql: str, table: str
) -> None:
    (statement,) = parse(sql).statements
    # the first lock on a relation the statement names: the table (an index's, for DROP INDEX)
    (lock, *_) = [lock for lock in locks(statement) if not lock.via]
    before = _filenodes(con)
    holder = connect(database.target)
    worker = connect(database.target)
    holder.run("BEGIN")
    holder.run(f"LOCK TABLE {table} IN {_HOLD[lock.mode]} MODE")
    pid = worker.run("SELECT pg_backend_pid()")[0][0]
    done = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker.run(sql)
        except BaseException as e:
            errors.append(e)
        done.set()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        waited = None
        deadline = time.monotonic() + 10
        while waited is None and time.monotonic() < deadline:
            rows = con.run(
                "SELECT mode FROM pg_locks WHERE pid = :pid AND NOT granted AND locktype = 'relation' "
                "AND relation = to_regclass(:r)",
                pid=pid,
                r=table,
            )
            waited = rows[0][0] if rows else None
            time.sleep(0.02)
        assert waited == _PG_MODES[lock.mode], (sql, lock, waited)
    finally:
        holder.run("ROLLBACK")
        thread.join(30)
        holder.close()
        worker.close()
    assert not errors, errors
    after = _filenodes(con)
    if lock.rewrite is not None:
        assert (before[table] != after[table]) == lock.rewrite, (sql, before, after)
