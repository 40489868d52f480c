"""What a backfill asks the server, apart from its own SQL: its checkpoint in sqlplan.backfill,
its table's key as the catalogue has it, and each batch's key range.

Table and column names are identifiers, quoted here; every value (a key, a checkpoint) travels
as a bind parameter, as text, and comes back as the server's text for it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..plan.model import BackfillStep, Plan
from . import wire

TABLE = "sqlplan.backfill"
# 'sqlplan' in ASCII, as sqlplan.history's: one lock for making either table.
LOCK_KEY = 0x73716C706C616E

CREATE = f"""\
BEGIN;
SELECT pg_advisory_xact_lock({LOCK_KEY});
CREATE SCHEMA IF NOT EXISTS sqlplan;
CREATE TABLE IF NOT EXISTS sqlplan.backfill (
    id text PRIMARY KEY,
    plan text NOT NULL,
    step int NOT NULL,
    relation text NOT NULL,
    key_columns text[] NOT NULL,
    last_key text[],
    keys bigint NOT NULL DEFAULT 0,
    rows bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    started_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
COMMENT ON TABLE sqlplan.backfill IS 'Checkpoints of sqlplan backfill steps: the last key done';
COMMIT"""

_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
CLAIM = (
    "INSERT INTO sqlplan.backfill (id, plan, step, relation, key_columns) "
    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
)
STATE = (
    f"SELECT last_key, keys, rows, batches, {_UTC.format('finished_at')} "
    "FROM sqlplan.backfill WHERE id = $1"
)
# Moves the checkpoint from where this run left it to the batch's last key, in the batch's
# transaction; when another run moved it first (or finished it), no row matches and the
# division fails, so that the batch's statement never runs.
MOVE = (
    "WITH moved AS (UPDATE sqlplan.backfill SET last_key = $2, keys = keys + $4, "
    "batches = batches + 1, updated_at = clock_timestamp() "
    "WHERE id = $1 AND last_key IS NOT DISTINCT FROM $3 AND finished_at IS NULL RETURNING 1) "
    "SELECT 1 / count(*) FROM moved"
)
COUNT = "UPDATE sqlplan.backfill SET rows = rows + $2 WHERE id = $1"
FINISH = (
    "UPDATE sqlplan.backfill SET finished_at = clock_timestamp() "
    "WHERE id = $1 AND last_key IS NOT DISTINCT FROM $2 AND finished_at IS NULL "
    f"RETURNING {_UTC.format('finished_at')}"
)


def identity(plan: Plan, step: BackfillStep) -> str:
    """The checkpoint's id: the plan's name and what the backfill does (its table, key and
    SQL), so that a changed statement starts over and an unchanged one resumes."""
    what = json.dumps([list(step.table), list(step.key), step.sql.text, step.lower_inclusive])
    return f"{plan.name}/{hashlib.sha256(what.encode()).hexdigest()[:16]}"


def look(ident: str) -> str:
    quoted = ident.replace("'", "''")
    return (
        f"SELECT last_key, rows, batches, finished_at FROM sqlplan.backfill WHERE id = '{quoted}'"
    )


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Key:
    """The table's key as the catalogue has it, and the queries that walk it."""

    relation: str  # the table, quoted and qualified as the server names it
    columns: tuple[str, ...]
    first_below: str | None  # a query for a value below the first key (`key > $1`), if any
    estimate: int  # rows, as pg_class says (0: never analyzed)

    @property
    def _list(self) -> str:
        return ", ".join(ident(c) for c in self.columns)

    def _after(self, first: int) -> str:
        params = ", ".join(f"${first + i}" for i in range(len(self.columns)))
        if len(self.columns) > 1:
            return f"({self._list}) > ROW({params})"
        return f"{self._list} > {params}"

    def next_first(self, started: bool) -> str:
        """The first key after the checkpoint ($1..$n): the batch's first."""
        where = f" WHERE {self._after(1)}" if started else ""
        return f"SELECT {self._list} FROM {self.relation}{where} ORDER BY {self._list} LIMIT 1"

    def next_last(self, started: bool) -> str:
        """The last key of the next batch of $n+1 (or $1) keys after the checkpoint, and how
        many keys the batch holds."""
        width = len(self.columns)
        where = f" WHERE {self._after(1)}" if started else ""
        limit = f"${width + 1}" if started else "$1"
        descending = ", ".join(f"{ident(c)} DESC" for c in self.columns)
        return (
            f"SELECT {self._list}, count(*) OVER () FROM (SELECT {self._list} FROM "
            f"{self.relation}{where} ORDER BY {self._list} LIMIT {limit}) batch "
            f"ORDER BY {descending} LIMIT 1"
        )


class KeyRefused(Exception):
    """The table or its key cannot be walked in batches: the reason."""


_TABLE = (
    "SELECT c.oid, c.oid::regclass::text, greatest(c.reltuples, 0)::bigint FROM pg_class c "
    "WHERE c.oid = to_regclass($1)"
)
_COLUMNS = (
    "SELECT a.attname, a.attnotnull, format_type(a.atttypid, a.atttypmod), t.typcategory, "
    "t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped AND a.attname = ANY ($2)"
)
# A valid unique index on exactly the key's columns, in its order (so that it also serves the
# batches' ORDER BY): a primary key, a unique constraint or a unique index without predicate.
_UNIQUE = (
    "SELECT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = $1 AND i.indisunique "
    "AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnkeyatts = $3 "
    "AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
    "WHERE k.o <= i.indnkeyatts ORDER BY k.o) = $2)"
)


def inspect(con: wire.Session, step: BackfillStep) -> Key:
    """The step's key as the catalogue has it; KeyRefused says why it cannot be walked."""
    name = ".".join(ident(part) for part in step.table)
    found = wire.extended(con, _TABLE, [[name]], text_rows=True).rows
    if not found:
        raise KeyRefused(f"there is no table {'.'.join(step.table)}")
    oid, relation, estimate = found[0]
    columns: dict[str, list[str]] = {
        str(row[0]): [str(v) for v in row[1:]]
        for row in wire.extended(con, _COLUMNS, [[oid, list(step.key)]], text_rows=True).rows
    }
    missing = [c for c in step.key if c not in columns]
    if missing:
        raise KeyRefused(f"{relation} has no column {', '.join(missing)}")
    [[unique]] = wire.extended(
        con, _UNIQUE, [[oid, list(step.key), len(step.key)]], text_rows=True
    ).rows
    key_text = ", ".join(step.key)
    if unique != "true":
        raise KeyRefused(
            f"{relation} has no valid unique index on ({key_text}), in this order: a key that "
            "is not unique can split its equal values across two batches, and without the "
            "index each batch reads the whole table; add a unique index (CREATE UNIQUE INDEX "
            "CONCURRENTLY) or choose another key"
        )
    nullable = [c for c in step.key if columns[c][0] != "true"]
    if nullable:
        test = " OR ".join(f"{ident(c)} IS NULL" for c in nullable)
        query = f"SELECT EXISTS (SELECT FROM {relation} WHERE {test})"
        [[has_null]] = wire.extended(con, query, [[]], text_rows=True).rows
        if has_null == "true":
            raise KeyRefused(
                f"{relation} has rows whose {' or '.join(nullable)} is NULL: no batch's key "
                "range holds them, so the backfill would leave them out; fill them in first, "
                "or choose a NOT NULL key"
            )
    below = _first_below(step, relation, columns)
    if below is None and not step.lower_inclusive:
        raise KeyRefused(below_refused(step, columns[step.key[0]][1]))
    return Key(relation, step.key, below, int(estimate))


def _first_below(step: BackfillStep, relation: str, columns: dict[str, list[str]]) -> str | None:
    """For `key > $1`: a query for a value below every key, from the first key's type (a
    number or a date less one, a timestamp less a microsecond); None for other types."""
    if step.lower_inclusive:
        return None
    first = step.key[0]
    _, _, category, type_name = columns[first]
    if category == "N" or type_name == "date":
        less = f"{ident(first)} - 1"
    elif type_name in ("timestamp", "timestamptz"):
        less = f"{ident(first)} - interval '1 microsecond'"
    else:
        return None
    rest = [ident(c) for c in step.key[1:]]
    listed = ", ".join(ident(c) for c in step.key)
    return f"SELECT {', '.join([f'({less})', *rest])} FROM {relation} ORDER BY {listed} LIMIT 1"


def below_refused(step: BackfillStep, type_text: str) -> str:
    key = step.key[0]
    return (
        f"the key {key} is of type {type_text}, below whose first value sqlplan cannot name "
        f"one: write the lower bound inclusive ({key} >= $1), and sqlplan passes each batch's "
        "first key as $1"
    )


def array(text: str | None) -> list[str] | None:
    """A text[] as the server writes it, back to its elements (they are keys' text forms)."""
    if text is None:
        return None
    items: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text[1:-1]:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            items.append("".join(current))
            current = []
        else:
            current.append(char)
    items.append("".join(current))
    return items
