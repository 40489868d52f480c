"""The server's own answer to "which locks does this statement take, and does it rewrite the
table?", for statements generated from a grammar over a schema that has what real schemas have:
a partitioned table with a DEFAULT partition, foreign keys both ways, a view, a materialized
view, a sequence, generated columns, domains, a policy, a trigger, a rule, statistics.

Each statement runs in a transaction that is rolled back: the locks its backend then holds
(pg_locks, on relations that existed before it) and the tables whose relfilenode changed are
the truth it is compared with. `compare()` says where the offline analysis disagrees:

- missed: the server took a lock stronger than ROW EXCLUSIVE (one that blocks more than DDL)
  on a relation the analysis does not name (an index counts as its table's when the analysis
  names the table with at least the index's mode);
- weak: the analysis names the relation with a weaker mode than the server took;
- rewrite missed / rewrite invented: the relfilenode changed where the analysis says it does
  not, or did not where it says it does ("may rewrite" is neither);
- strong: the analysis claims more than the server took (counted, not a failure).

Used by tests/review/test_lock_truth.py (a fast profile) and bench/locks.py (every statement, on
PostgreSQL 18 and 15).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runner.plan.sqlparse import parse
from runner.review.catalog import Catalog, snapshot
from runner.review.locks import MODES, locks

SCHEMA = """
CREATE SCHEMA other;
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE DOMAIN plain_int AS int;
CREATE FUNCTION vol() RETURNS int LANGUAGE sql VOLATILE AS 'SELECT 1';
CREATE FUNCTION imm() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1';
CREATE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
CREATE TABLE parent (id int PRIMARY KEY, code text UNIQUE, n int);
CREATE TABLE child (
    id int PRIMARY KEY, parent_id int REFERENCES parent (id), n int, v varchar(10),
    note text, ts timestamp, big bigint
);
CREATE INDEX child_n ON child (n);
ALTER TABLE parent ADD COLUMN favourite int;
ALTER TABLE parent ADD CONSTRAINT parent_favourite_fk FOREIGN KEY (favourite) REFERENCES child (id);
ALTER TABLE child ADD CONSTRAINT child_n_check CHECK (n > -1000);
CREATE TABLE meas (id int, at date, val int, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
CREATE TABLE meas_2024 PARTITION OF meas FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE meas_2025 PARTITION OF meas FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE meas_default PARTITION OF meas DEFAULT;
CREATE INDEX meas_val ON meas (val);
CREATE TABLE meas_new (id int NOT NULL, at date NOT NULL, val int, note text);
CREATE TABLE gen (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
CREATE VIEW child_view AS SELECT id, parent_id, n FROM child;
CREATE MATERIALIZED VIEW child_counts AS SELECT parent_id, count(*) AS n FROM child GROUP BY 1;
CREATE UNIQUE INDEX child_counts_key ON child_counts (parent_id);
CREATE SEQUENCE seq;
ALTER TABLE child ENABLE ROW LEVEL SECURITY;
CREATE POLICY child_policy ON child USING (true);
CREATE TRIGGER child_trigger BEFORE INSERT ON child FOR EACH ROW EXECUTE FUNCTION trg();
CREATE RULE child_view_rule AS ON DELETE TO child_view DO INSTEAD NOTHING;
CREATE STATISTICS child_stats ON n, parent_id FROM child;
INSERT INTO parent SELECT g, 'c' || g, g FROM generate_series(1, 20) g;
INSERT INTO child SELECT g, 1 + g % 20, g, 'v', 'note', now(), g FROM generate_series(1, 50) g;
INSERT INTO meas SELECT g, date '2024-01-01' + g * 7, g, 'x' FROM generate_series(1, 150) g;
INSERT INTO gen SELECT g, g FROM generate_series(1, 10) g;
REFRESH MATERIALIZED VIEW child_counts;
ANALYZE;
"""

# tables by what they are, with a column of each shape
PLAIN = ("parent", "child", "gen")
PARTITIONED = ("meas",)
PARTITIONS = ("meas_2024", "meas_default")
TABLES = PLAIN + PARTITIONED + PARTITIONS
INT_COLUMN = {"parent": "n", "child": "n", "gen": "a", "meas": "val", "meas_2024": "val",
              "meas_default": "val"}  # fmt: skip
TEXT_COLUMN = {"parent": "code", "child": "note", "gen": None, "meas": "note",
               "meas_2024": "note", "meas_default": "note"}  # fmt: skip
LOCK_MODES = tuple(m for m in MODES)


def _add_column(version: int) -> Iterator[str]:
    types = ["int", "bigint", "text", "positive", "plain_int", "serial", "timestamptz", "uuid",
             "numeric(10,2)", "jsonb", "boolean", "date", "text[]"]  # fmt: skip
    defaults: dict[str, list[str]] = {
        "int": ["", "DEFAULT 0", "DEFAULT vol()", "DEFAULT imm()", "DEFAULT (random() * 10)::int"],
        "bigint": ["", "DEFAULT 7", "DEFAULT nextval('seq')"],
        "text": ["", "DEFAULT 'x'", "DEFAULT md5(random()::text)"],
        "positive": ["", "DEFAULT 1"],
        "plain_int": ["", "DEFAULT 1"],
        "serial": [""],
        "timestamptz": ["", "DEFAULT now()", "DEFAULT clock_timestamp()"],
        "uuid": ["", "DEFAULT gen_random_uuid()"] + (["DEFAULT uuidv7()"] if version >= 18 else []),
        "numeric(10,2)": ["", "DEFAULT 1.5"],
        "jsonb": ["", "DEFAULT '{}'", "DEFAULT jsonb_build_object('a', 1)"],
        "boolean": ["", "DEFAULT false"],
        "date": ["", "DEFAULT current_date", "DEFAULT now()::date"],
        "text[]": ["", "DEFAULT '{}'", "DEFAULT ARRAY['a']"],
    }
    for table in TABLES:
        for type_ in types:
            for default in defaults[type_]:
                yield f"ALTER TABLE {table} ADD COLUMN x {type_} {default}".rstrip()
                if default:
                    yield f"ALTER TABLE {table} ADD COLUMN x {type_} NOT NULL {default}"
        yield f"ALTER TABLE {table} ADD COLUMN x int REFERENCES parent (id)"
        yield f"ALTER TABLE {table} ADD COLUMN x int GENERATED ALWAYS AS IDENTITY"
        column = INT_COLUMN[table]
        yield f"ALTER TABLE {table} ADD COLUMN x int GENERATED ALWAYS AS ({column} + 1) STORED"
        if version >= 18:
            yield f"ALTER TABLE {table} ADD COLUMN x int GENERATED ALWAYS AS ({column} + 1) VIRTUAL"
            yield f"ALTER TABLE {table} ADD COLUMN x int GENERATED ALWAYS AS ({column} + 1)"
        yield f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS x int CHECK (x > 0)"


def _alter_column(version: int) -> Iterator[str]:
    for table in TABLES:
        column = INT_COLUMN[table]
        for type_ in ("int", "bigint", "smallint", "numeric", "text", "positive", "plain_int",
                      "float8"):  # fmt: skip
            yield f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {type_}"
        yield f"ALTER TABLE {table} ALTER COLUMN {column} TYPE bigint USING {column} + 1"
        text = TEXT_COLUMN[table]
        if text:
            for type_ in ("text", "varchar", "varchar(200)", "varchar(3)", "char(30)", "citext"):
                yield f"ALTER TABLE {table} ALTER COLUMN {text} TYPE {type_}"
            yield f"ALTER TABLE {table} ALTER COLUMN {text} SET STORAGE EXTERNAL"
            yield f"ALTER TABLE {table} ALTER COLUMN {text} SET COMPRESSION pglz"
        for action in ("SET NOT NULL", "DROP NOT NULL", "SET DEFAULT 5", "DROP DEFAULT",
                       "SET STATISTICS 200", "SET (n_distinct = 10)", "RESET (n_distinct)"):  # fmt: skip
            yield f"ALTER TABLE {table} ALTER COLUMN {column} {action}"
    yield "ALTER TABLE child ALTER COLUMN v TYPE varchar(20)"
    yield "ALTER TABLE child ALTER COLUMN v TYPE varchar(5)"
    yield "ALTER TABLE child ALTER COLUMN v TYPE text"
    yield "ALTER TABLE child ALTER COLUMN ts TYPE timestamptz"
    yield "ALTER TABLE child ALTER COLUMN ts TYPE timestamp(3)"
    yield "ALTER TABLE child ALTER COLUMN big TYPE int"
    yield "ALTER TABLE child ALTER COLUMN big TYPE bigint"
    yield "ALTER TABLE child ALTER COLUMN parent_id TYPE bigint"
    yield "ALTER TABLE parent ALTER COLUMN id TYPE bigint"
    yield "ALTER TABLE gen ALTER COLUMN b DROP EXPRESSION"
    if version >= 17:
        yield "ALTER TABLE gen ALTER COLUMN b SET EXPRESSION AS (a * 3)"
    yield "ALTER TABLE child ALTER COLUMN n ADD GENERATED ALWAYS AS IDENTITY"
    yield "ALTER TABLE parent ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY"


def _constraints(version: int) -> Iterator[str]:
    for table in TABLES:
        column = INT_COLUMN[table]
        for valid in ("", " NOT VALID"):
            yield f"ALTER TABLE {table} ADD CONSTRAINT k CHECK ({column} > -5){valid}"
            yield f"ALTER TABLE {table} ADD CONSTRAINT k FOREIGN KEY ({column}) REFERENCES parent (id){valid}"  # fmt: skip
        yield f"ALTER TABLE {table} ADD CONSTRAINT k UNIQUE ({column})"
        yield f"ALTER TABLE {table} ADD CONSTRAINT k EXCLUDE USING btree ({column} WITH =)"
        yield f"ALTER TABLE {table} ADD CHECK ({column} IS NOT NULL)"
    yield "ALTER TABLE child VALIDATE CONSTRAINT child_n_check"
    yield "ALTER TABLE child DROP CONSTRAINT child_n_check"
    yield "ALTER TABLE child DROP CONSTRAINT child_parent_id_fkey"
    yield "ALTER TABLE parent DROP CONSTRAINT parent_favourite_fk"
    yield "ALTER TABLE parent DROP CONSTRAINT parent_pkey CASCADE"
    yield "ALTER TABLE child RENAME CONSTRAINT child_n_check TO child_n_check2"
    yield "ALTER TABLE child DROP COLUMN parent_id"
    yield "ALTER TABLE parent DROP COLUMN favourite"
    yield "ALTER TABLE parent DROP COLUMN n"
    yield "ALTER TABLE meas DROP COLUMN note"
    yield "ALTER TABLE parent ADD PRIMARY KEY USING INDEX parent_code_key"
    yield "ALTER TABLE child ALTER CONSTRAINT child_parent_id_fkey DEFERRABLE"


def _table_forms(version: int) -> Iterator[str]:
    for table in TABLES:
        yield f"ALTER TABLE {table} RENAME TO renamed"
        yield f"ALTER TABLE {table} RENAME COLUMN {INT_COLUMN[table]} TO renamed"
        yield f"ALTER TABLE {table} SET SCHEMA other"
        yield f"ALTER TABLE {table} SET UNLOGGED"
        yield f"ALTER TABLE {table} SET LOGGED"
        yield f"ALTER TABLE {table} SET TABLESPACE pg_default"
        yield f"ALTER TABLE {table} SET (fillfactor = 70)"
        yield f"ALTER TABLE {table} RESET (fillfactor)"
        yield f"ALTER TABLE {table} SET (autovacuum_enabled = false)"
        yield f"ALTER TABLE {table} SET (user_catalog_table = true)"
        yield f"ALTER TABLE {table} SET (parallel_workers = 2)"
        yield f"ALTER TABLE {table} SET ACCESS METHOD heap"
        yield f"ALTER TABLE {table} SET WITHOUT CLUSTER"
        yield f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"
        yield f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY"
        yield f"ALTER TABLE {table} REPLICA IDENTITY FULL"
        yield f"ALTER TABLE {table} OWNER TO CURRENT_USER"
        yield f"ALTER TABLE {table} DISABLE TRIGGER ALL"
        yield f"ALTER TABLE {table} ENABLE TRIGGER USER"
        yield f"ALTER TABLE IF EXISTS {table} RENAME TO renamed"
        yield f"ALTER TABLE ONLY {table} ADD CONSTRAINT k CHECK ({INT_COLUMN[table]} > -5) NOT VALID"  # fmt: skip
    yield "ALTER TABLE child DISABLE TRIGGER child_trigger"
    yield "ALTER TABLE child ENABLE ALWAYS TRIGGER child_trigger"
    yield "ALTER TABLE child CLUSTER ON child_n"
    yield "ALTER TABLE child NO FORCE ROW LEVEL SECURITY"
    yield "ALTER TABLE meas ATTACH PARTITION meas_new FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"  # fmt: skip
    yield "ALTER TABLE meas DETACH PARTITION meas_2024"
    yield "ALTER TABLE meas DETACH PARTITION meas_default"
    yield "ALTER TABLE meas_new INHERIT meas_2025"
    yield "ALTER TABLE child INHERIT parent"


def _indexes(version: int) -> Iterator[str]:
    for table in (*TABLES, "child_counts"):
        column = "n" if table == "child_counts" else INT_COLUMN[table]
        yield f"CREATE INDEX i ON {table} ({column})"
        yield f"CREATE INDEX IF NOT EXISTS i ON {table} ({column}) WHERE {column} > 0"
        yield f"CREATE INDEX i ON {table} USING hash ({column})"
        yield f"CREATE UNIQUE INDEX i ON {table} ({column})"
        yield f"CREATE INDEX ON ONLY {table} ({column})"
        yield f"REINDEX TABLE {table}"
        yield f"CLUSTER {table}"
        yield f"ANALYZE {table}"
        yield f"COMMENT ON TABLE {table} IS 'x'"
        yield f"GRANT SELECT ON {table} TO PUBLIC"
        yield f"REVOKE ALL ON {table} FROM PUBLIC"
        yield f"CREATE STATISTICS s ON {column}, id FROM {table}"
        yield f"CREATE PUBLICATION pub FOR TABLE {table}"
        yield f"SECURITY LABEL ON TABLE {table} IS 'x'"
    for index in ("child_n", "meas_val", "parent_pkey", "child_counts_key", "meas_2024_val_idx"):
        yield f"DROP INDEX {index}"
        yield f"REINDEX INDEX {index}"
        yield f"ALTER INDEX {index} RENAME TO renamed"
        yield f"ALTER INDEX {index} SET (fillfactor = 80)"
        yield f"ALTER INDEX {index} SET TABLESPACE pg_default"
        yield f"COMMENT ON INDEX {index} IS 'x'"
        yield f"CLUSTER child USING {index}"
    yield "ALTER INDEX meas_val ATTACH PARTITION meas_val_new"
    yield "ALTER INDEX child_n ALTER COLUMN 1 SET STATISTICS 100"


def _objects(version: int) -> Iterator[str]:
    for table in TABLES:
        column = INT_COLUMN[table]
        yield f"CREATE TRIGGER tr AFTER UPDATE ON {table} FOR EACH ROW EXECUTE FUNCTION trg()"
        yield f"CREATE TRIGGER tr BEFORE INSERT ON {table} FOR EACH STATEMENT EXECUTE FUNCTION trg()"  # fmt: skip
        yield f"CREATE POLICY po ON {table} USING ({column} > 0)"
        yield f"CREATE RULE ru AS ON INSERT TO {table} DO ALSO NOTHING"
        yield f"COMMENT ON COLUMN {table}.{column} IS 'x'"
        yield f"CREATE VIEW v AS SELECT * FROM {table}"
        yield f"CREATE TABLE x (LIKE {table})"
        yield f"CREATE TABLE x (LIKE {table} INCLUDING ALL)"
        yield f"CREATE TABLE x AS SELECT * FROM {table}"
        yield f"CREATE TABLE x (id int REFERENCES {table} (id))" if table in ("parent", "child", "gen") else f"CREATE TABLE x () INHERITS ({table})"  # fmt: skip
        yield f"SELECT * INTO x FROM {table}"
        yield f"CREATE MATERIALIZED VIEW mv AS SELECT * FROM {table}"
    yield "CREATE TABLE meas_2026 PARTITION OF meas FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"  # fmt: skip
    yield "CREATE TABLE x (a int) INHERITS (parent)"
    yield "CREATE TABLE x (a int)"
    yield "CREATE TABLE x (id int PRIMARY KEY, p int REFERENCES parent (id) ON DELETE CASCADE)"
    yield "CREATE OR REPLACE VIEW child_view AS SELECT id, parent_id, n, note FROM child"
    yield "CREATE OR REPLACE VIEW child_view AS SELECT id, parent_id, n FROM child"
    yield "ALTER VIEW child_view RENAME TO renamed"
    yield "ALTER VIEW child_view SET SCHEMA other"
    yield "ALTER VIEW child_view ALTER COLUMN n SET DEFAULT 1"
    yield "ALTER MATERIALIZED VIEW child_counts RENAME TO renamed"
    yield "ALTER MATERIALIZED VIEW child_counts SET SCHEMA other"
    yield "ALTER MATERIALIZED VIEW child_counts SET (fillfactor = 70)"
    yield "ALTER MATERIALIZED VIEW child_counts SET TABLESPACE pg_default"
    yield "REFRESH MATERIALIZED VIEW child_counts"
    yield "REFRESH MATERIALIZED VIEW CONCURRENTLY child_counts"
    yield "REFRESH MATERIALIZED VIEW child_counts WITH NO DATA"
    yield "DROP MATERIALIZED VIEW child_counts"
    yield "DROP VIEW child_view"
    yield "DROP VIEW child_view CASCADE"
    yield "DROP TRIGGER child_trigger ON child"
    yield "DROP POLICY child_policy ON child"
    yield "ALTER POLICY child_policy ON child USING (n > 0)"
    yield "ALTER POLICY child_policy ON child RENAME TO renamed"
    yield "DROP RULE child_view_rule ON child_view"
    yield "DROP STATISTICS child_stats"
    yield "ALTER STATISTICS child_stats SET STATISTICS 100"
    yield "ALTER TRIGGER child_trigger ON child RENAME TO renamed"
    yield "DROP SEQUENCE seq"
    yield "ALTER SEQUENCE seq RESTART"
    yield "ALTER SEQUENCE seq INCREMENT BY 2"
    yield "ALTER SEQUENCE seq OWNED BY child.n"
    yield "ALTER SEQUENCE seq RENAME TO renamed"
    yield "SELECT nextval('seq')"
    yield "SELECT setval('seq', 10)"
    yield "COMMENT ON SEQUENCE seq IS 'x'"
    yield "ALTER DOMAIN positive ADD CONSTRAINT small CHECK (VALUE < 100000)"
    yield "ALTER DOMAIN positive ADD CONSTRAINT small CHECK (VALUE < 100000) NOT VALID"
    yield "ALTER DOMAIN plain_int SET NOT NULL"
    yield "ALTER DOMAIN positive DROP CONSTRAINT positive_check"
    yield "ALTER FUNCTION vol() IMMUTABLE"
    yield "CREATE OR REPLACE FUNCTION trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NULL; END'"  # fmt: skip
    yield "DROP FUNCTION trg() CASCADE"
    yield "DROP DOMAIN positive"
    yield "CREATE SCHEMA s2"
    yield "DROP SCHEMA other CASCADE"
    yield "CREATE TYPE mood AS ENUM ('a', 'b')"
    yield "CREATE SEQUENCE seq2"
    yield "CREATE EXTENSION IF NOT EXISTS plpgsql"


def _drops_and_locks(version: int) -> Iterator[str]:
    for table in TABLES:
        yield f"DROP TABLE {table}"
        yield f"DROP TABLE {table} CASCADE"
        yield f"DROP TABLE IF EXISTS {table}, missing_table"
        yield f"TRUNCATE {table}"
        yield f"TRUNCATE {table} CASCADE"
        yield f"TRUNCATE ONLY {table}"
        yield f"TRUNCATE {table} RESTART IDENTITY"
        for mode in LOCK_MODES:
            yield f"LOCK TABLE {table} IN {mode} MODE"
        yield f"LOCK TABLE ONLY {table} IN SHARE MODE"
        yield f"LOCK {table}"
    for mode in ("ACCESS SHARE", "SHARE", "ACCESS EXCLUSIVE"):
        yield f"LOCK TABLE child_view IN {mode} MODE"
        yield f"LOCK TABLE child_counts IN {mode} MODE"


def _dml(version: int) -> Iterator[str]:
    for table in TABLES:
        column = INT_COLUMN[table]
        yield f"UPDATE {table} SET {column} = {column} WHERE {column} = 1"
        yield f"UPDATE {table} SET {column} = {column}"
        yield f"DELETE FROM {table} WHERE {column} = -1"
        yield f"SELECT * FROM {table} WHERE {column} = 1"
        yield f"SELECT * FROM {table} WHERE {column} = 1 FOR UPDATE"
        yield f"SELECT * FROM {table} FOR SHARE"
        yield f"SELECT count(*) FROM ONLY {table}"
        yield f"MERGE INTO {table} t USING (SELECT 1 AS k) s ON t.id = s.k WHEN MATCHED THEN UPDATE SET {column} = t.{column}"  # fmt: skip
    yield "INSERT INTO parent VALUES (100, 'x', 1)"
    yield "INSERT INTO child (id, parent_id, n) VALUES (100, 1, 1)"
    yield "INSERT INTO meas VALUES (1000, '2025-03-01', 1, 'x')"
    yield "INSERT INTO meas_2024 VALUES (1000, '2024-03-01', 1, 'x')"
    yield "INSERT INTO gen (id, a) VALUES (100, 1)"
    yield "INSERT INTO parent VALUES (1, 'x', 1) ON CONFLICT (id) DO UPDATE SET n = 2"
    yield "DELETE FROM parent WHERE id = 20"
    yield "UPDATE child_view SET n = 1 WHERE id = 1"
    yield "DELETE FROM child_view WHERE id = 1"
    yield "SELECT * FROM child_view"
    yield "SELECT * FROM child_counts"
    yield "DO $$BEGIN PERFORM 1; END$$"
    yield "SET lock_timeout = '1s'"
    yield "SHOW search_path"
    yield "NOTIFY ch"
    yield "LISTEN ch"


def _combined(version: int) -> Iterator[str]:
    """ALTER TABLE with two subcommands: the statement takes the stronger lock of the two, and
    rewrites if either does."""
    for table in TABLES:
        column = INT_COLUMN[table]
        actions = [
            "ADD COLUMN y int",
            "ADD COLUMN z float8 DEFAULT random()",
            f"ALTER COLUMN {column} SET STATISTICS 100",
            f"ALTER COLUMN {column} TYPE bigint",
            f"ADD CONSTRAINT k2 CHECK ({column} > -9) NOT VALID",
            f"ALTER COLUMN {column} SET DEFAULT 3",
            "SET (autovacuum_enabled = true)",
            "ENABLE ROW LEVEL SECURITY",
        ]
        for first, second in itertools.combinations(actions, 2):
            yield f"ALTER TABLE {table} {first}, {second}"
    for first, second in itertools.combinations(TABLES, 2):
        yield f"LOCK TABLE {first}, {second} IN SHARE MODE NOWAIT"
        yield f"TRUNCATE {first}, {second}"


def outside(version: int) -> Iterator[str]:
    """Statements that cannot run in a transaction block: `probe` reads what they lock."""
    for table in (*PLAIN, *PARTITIONS, "child_counts"):
        column = "n" if table == "child_counts" else INT_COLUMN[table]
        yield f"CREATE INDEX CONCURRENTLY i ON {table} ({column})"
        yield f"CREATE UNIQUE INDEX CONCURRENTLY i ON {table} (id)"
        yield f"REINDEX TABLE CONCURRENTLY {table}"
        yield f"VACUUM {table}"
        yield f"VACUUM FULL {table}"
        yield f"VACUUM (ANALYZE) {table}"
    yield "REINDEX TABLE meas"
    yield "REINDEX TABLE CONCURRENTLY meas"
    yield "VACUUM meas"
    yield "VACUUM FULL meas"
    yield "CLUSTER meas USING meas_val"
    for index in ("child_n", "parent_pkey", "child_counts_key", "meas_2024_val_idx"):
        yield f"DROP INDEX CONCURRENTLY {index}"
        yield f"REINDEX INDEX CONCURRENTLY {index}"
    yield "ALTER TABLE meas DETACH PARTITION meas_2025 CONCURRENTLY"
    yield "ALTER TABLE meas DETACH PARTITION meas_default CONCURRENTLY"


GRAMMAR = (_add_column, _alter_column, _constraints, _table_forms, _indexes, _objects,
           _drops_and_locks, _dml, _combined)  # fmt: skip


def statements(version: int) -> list[str]:
    """Every statement the grammar generates for a server version, each once."""
    seen: dict[str, None] = {}
    for part in GRAMMAR:
        for sql in part(version):
            seen.setdefault(" ".join(sql.split()), None)
    return list(seen)


@dataclass
class Truth:
    """What one statement did on the server: the strongest mode on each relation that existed
    before it, which relations are indexes (and whose), and which tables were rewritten."""

    sql: str
    ran: bool = True
    error: str = ""
    modes: dict[str, str] = field(default_factory=dict)
    index_of: dict[str, str] = field(default_factory=dict)
    rewritten: set[str] = field(default_factory=set)
    catalog: Catalog = field(default_factory=Catalog)  # before the statement
    stored: set[str] = field(default_factory=set)  # tables and materialized views: a file
    probed: set[str] | None = None  # by `probe`: the only relations the truth covers


_PG_MODES = {m.title().replace(" ", "") + "Lock": m for m in MODES}
_RELATIONS = """
SELECT c.oid, c.relname, c.relkind, c.relfilenode, coalesce(t.relname, '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid LEFT JOIN pg_class t ON t.oid = i.indrelid
WHERE n.nspname IN ('public', 'other')
"""


def observe(con: Any, sql: str) -> Truth:
    """Run `sql` in a transaction, read what it did, roll it back."""
    truth = Truth(sql)
    con.run("BEGIN")
    try:
        before = {row[0]: row for row in con.run(_RELATIONS)}
        truth.catalog = snapshot(con.run)
        con.run("SAVEPOINT s")
        try:
            con.run(sql)
        except Exception as e:  # the grammar's statement does not apply to this schema
            truth.ran, truth.error = False, str(getattr(e, "args", [e])[0])
            return truth
        held = con.run(
            "SELECT relation, mode FROM pg_locks WHERE pid = pg_backend_pid() "
            "AND locktype = 'relation' AND granted AND relation IS NOT NULL"
        )
        after = {row[0]: row for row in con.run(_RELATIONS)}
        for oid, pg_mode in held:
            if oid not in before:
                continue  # a catalog, or a relation the statement created
            name = before[oid][1]
            mode = _PG_MODES[pg_mode]
            if name not in truth.modes or MODES.index(mode) > MODES.index(truth.modes[name]):
                truth.modes[name] = mode
            if before[oid][4]:
                truth.index_of[name] = before[oid][4]
        for oid, (_, name, kind, node, _table) in before.items():
            if kind in ("r", "m"):
                truth.stored.add(name)
                if oid in after and after[oid][3] != node:
                    truth.rewritten.add(name)
    finally:
        con.run("ROLLBACK")
    return truth


_TABLES = """
SELECT c.relname, c.relkind, c.relfilenode FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'other') AND c.relkind IN ('r', 'p', 'm')
"""


@dataclass
class Copies:
    """Fresh copies of a `base` database holding SCHEMA, for `probe`: `admin` runs CREATE and
    DROP DATABASE, `target(name)` is a database's Target, `connect(target)` a session."""

    admin: Any
    target: Any
    connect: Any
    base: str
    made: int = 0

    def make_base(self) -> None:
        """The base database (a template: no one stays connected to it)."""
        self.admin.run(f"CREATE DATABASE {self.base}")
        con = self.connect(self.target(self.base))
        try:
            con.run(SCHEMA)
        finally:
            con.close()

    def copy(self) -> str:
        self.made += 1
        name = f"{self.base}_p{self.made}"
        self.admin.run(f"CREATE DATABASE {name} TEMPLATE {self.base}")
        return name

    def drop(self, name: str) -> None:
        self.admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def session(self, name: str) -> Any:
        return self.connect(self.target(name))


def probe(copies: Copies, sql: str) -> Truth:
    """What a statement that cannot run in a transaction block locks, behind a second
    session: for each table, in a fresh copy of the database, another session holds ACCESS
    EXCLUSIVE on it (LOCK TABLE ONLY) and the mode the statement waits for there is read from
    pg_locks (the first it asks for on that table; none if it finishes without waiting). One
    more copy, unhindered, gives the rewrites (relfilenode before and after)."""
    probed: set[str] = set()
    truth = Truth(sql, probed=probed)
    name = copies.copy()
    try:
        con = copies.session(name)
        try:
            before = {r[0]: (r[1], r[2]) for r in con.run(_TABLES)}
            truth.catalog = snapshot(con.run)
            try:
                con.run(sql)
            except Exception as e:  # the statement does not apply to this schema
                truth.ran, truth.error = False, str(getattr(e, "args", [e])[0])
                return truth
            after = {r[0]: (r[1], r[2]) for r in con.run(_TABLES)}
        finally:
            con.close()
    finally:
        copies.drop(name)
    for table, (kind, node) in before.items():
        if kind in ("r", "m"):
            truth.stored.add(table)
            if table in after and after[table][1] != node:
                truth.rewritten.add(table)
    for table in sorted(before):
        held, mode = _waits_for(copies, sql, table)
        if held:
            probed.add(table)
        if mode is not None:
            truth.modes[table] = mode
    return truth


def _waits_for(copies: Copies, sql: str, table: str) -> tuple[bool, str | None]:
    """(whether the table could be held, the mode the statement waited for there)."""
    name = copies.copy()
    holder, worker, watcher = (copies.session(name) for _ in range(3))
    try:
        holder.run("BEGIN")
        try:
            holder.run(f"LOCK TABLE ONLY {table} IN ACCESS EXCLUSIVE MODE")
        except Exception:  # LOCK TABLE takes no materialized view
            return False, None
        pid = worker.run("SELECT pg_backend_pid()")[0][0]
        done = threading.Event()

        def work() -> None:
            with contextlib.suppress(Exception):  # what it waited for is the answer
                worker.run(sql)
            done.set()

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        waited = None
        deadline = time.monotonic() + 20
        while waited is None and not done.is_set() and time.monotonic() < deadline:
            rows = watcher.run(
                "SELECT mode FROM pg_locks WHERE pid = :pid AND NOT granted "
                "AND locktype = 'relation' AND relation = to_regclass(:r)",
                pid=pid,
                r=table,
            )
            waited = rows[0][0] if rows else None
            time.sleep(0.005)
        holder.run("ROLLBACK")
        thread.join(60)
        return True, _PG_MODES[waited] if waited else None
    finally:
        for session in (holder, worker, watcher):
            session.close()
        copies.drop(name)


@dataclass(frozen=True)
class Disagreement:
    kind: str  # missed, weak, strong, rewrite missed, rewrite invented
    relation: str
    detail: str


FAILING = ("missed", "weak", "rewrite missed", "rewrite invented")


def _bare(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def compare(truth: Truth, version: int) -> list[Disagreement]:
    """Where the offline analysis of `truth.sql` disagrees with what the server did."""
    (statement,) = parse(truth.sql).statements
    predicted: dict[str, str] = {}
    rewrites: dict[str, bool | None] = {}
    for lock in truth.catalog.resolve(locks(statement, version)):
        name = _bare(lock.relation)
        if name not in predicted or MODES.index(lock.mode) > MODES.index(predicted[name]):
            predicted[name] = lock.mode
        if name not in rewrites or lock.rewrite is True or (lock.rewrite is None and rewrites[name] is False):  # fmt: skip
            rewrites[name] = lock.rewrite
    if truth.probed is not None:  # modes only on the tables probed behind a second session
        predicted = {r: m for r, m in predicted.items() if r in truth.probed}
    found: list[Disagreement] = []
    for relation, mode in truth.modes.items():
        claimed = predicted.get(relation)
        if claimed is None and relation in truth.index_of:
            table_mode = predicted.get(truth.index_of[relation])
            if table_mode is not None and MODES.index(table_mode) >= MODES.index(mode):
                continue  # the table's lock covers its index's
        if claimed is None:
            if MODES.index(mode) > MODES.index("ROW EXCLUSIVE"):
                found.append(Disagreement("missed", relation, f"the server took {mode}"))
            continue
        if MODES.index(claimed) < MODES.index(mode):
            found.append(Disagreement("weak", relation, f"said {claimed}, the server took {mode}"))
        elif MODES.index(claimed) > MODES.index(mode):
            found.append(Disagreement("strong", relation, f"said {claimed}, the server took {mode}"))  # fmt: skip
    for relation, claimed in predicted.items():
        if relation not in truth.modes and MODES.index(claimed) > MODES.index("ROW EXCLUSIVE"):
            found.append(Disagreement("strong", relation, f"said {claimed}, the server took none"))
    for relation in sorted(truth.rewritten):
        if rewrites.get(relation) is False or relation not in rewrites:
            found.append(Disagreement("rewrite missed", relation, "the server rewrote it"))
    for relation, rewrite in rewrites.items():
        if relation not in truth.stored:
            continue  # a partitioned table has no file: its partitions' are rewritten
        if rewrite is True and relation not in truth.rewritten and relation in truth.modes:
            found.append(Disagreement("rewrite invented", relation, "the server kept its file"))
    return found


def kind_of(sql: str) -> str:
    """A statement's kind for the figures: its first words, without names."""
    words = sql.replace("(", " ").split()
    head = list(itertools.islice((w for w in words if w.isupper() or w in ("IF",)), 4))
    return " ".join(head) or words[0]
