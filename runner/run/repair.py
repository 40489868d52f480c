"""Concurrent index builds that repair themselves. A CREATE INDEX CONCURRENTLY that fails or is
interrupted leaves its index INVALID (pg_index.indisvalid false): writes keep maintaining it,
reads never use it, and `IF NOT EXISTS` then skips it silently. When such a step finds its
name taken (or skipped) by the INVALID index an earlier build left, sqlplan drops it
concurrently, says so and builds it again; before a REINDEX CONCURRENTLY it drops the
`_ccnew`/`_ccold` copies a failed rebuild left; after such a step fails, it drops what the
failure left, while the connection still stands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..plan.model import AnyStep
from . import wire

DROP_WAIT = "5s"  # the longest a repair waits for other transactions before it gives up

_FIND_BUILT = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND i.indrelid = to_regclass($1) AND c.relname = $2
"""

# A failed REINDEX CONCURRENTLY leaves <index>_ccnew (or _ccold) copies, numbered when taken.
_FIND_COPIES = """
SELECT n.nspname, c.relname FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND i.indrelid = coalesce(
    (SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = to_regclass($1)), to_regclass($1))
  AND c.relname ~ '_cc(new|old)[0-9]*$'
  AND ($2 = '' OR left(c.relname, length($2)) = $2)
"""


@dataclass(frozen=True)
class Target:
    """What a concurrent step builds: the relation to look on and how to find its leftovers."""

    query: str
    relation: str  # quoted, as to_regclass reads it
    name: str  # the index's name ('' for every copy on a table)
    what: str  # for the message
    # Look before the step runs. A build of a named index needs no look: a half-built one in
    # its way makes it fail on the name (42P07), or IF NOT EXISTS skip it with a notice, and
    # only then is the catalogue read: no round trip when nothing was left.
    ahead: bool = False


def target(step: AnyStep) -> Target | None:
    """The index a step builds concurrently, if it is one statement that does."""
    if len(step.statements) != 1:
        return None
    statement = step.statements[0]
    node: dict[str, Any] = statement.node
    relation = node.get("relation") or {}
    if not isinstance(relation.get("relname"), str):
        return None
    qualified = _quoted(relation.get("schemaname"), relation["relname"])
    if statement.kind == "IndexStmt" and node.get("concurrent"):
        name = node.get("idxname")
        if not isinstance(name, str):
            return None  # a name PostgreSQL picks: `check` asks for one
        return Target(_FIND_BUILT, qualified, name, f"the index {name}")
    if statement.kind == "ReindexStmt" and any(
        p.get("DefElem", {}).get("defname") == "concurrently" for p in node.get("params", [])
    ):
        kind = node.get("kind")
        if kind == "REINDEX_OBJECT_INDEX":
            return Target(_FIND_COPIES, qualified, relation["relname"], "the rebuilt index", True)
        if kind == "REINDEX_OBJECT_TABLE":
            return Target(_FIND_COPIES, qualified, "", "the rebuilt indexes", True)
    return None


def repair(con: wire.Session, found: Target) -> list[str]:
    """Drop the INVALID indexes an earlier build of `found` left; their names."""
    if wire.transaction_status(con) != b"I":
        return []  # inside a block the step cannot run anyway: its own error says so
    rows = wire.extended(con, found.query, [[found.relation, found.name]], text_rows=True).rows
    if not rows:
        return []
    # A concurrent drop waits for every transaction that may still see the index: bounded, so
    # that a long one elsewhere costs a warning (and a repair on the next run), not a hang.
    (before,) = wire.extended(
        con, "SELECT current_setting('lock_timeout')", [[]], text_rows=True
    ).rows[0]
    wire.extended(con, "SELECT set_config('lock_timeout', $1, false)", [[DROP_WAIT]])
    dropped = []
    try:
        for schema, name in rows:
            # DDL takes no parameters: the names come from the catalogue, quoted as identifiers
            wire.simple(con, f"DROP INDEX CONCURRENTLY IF EXISTS {_quoted(schema, name)}")
            dropped.append(f"{schema}.{name}")
    finally:
        if wire.transaction_status(con) == b"I":
            wire.extended(con, "SELECT set_config('lock_timeout', $1, false)", [[before]])
    return dropped


def skipped(con: wire.Session) -> bool:
    """Whether the statement just run skipped its index as one that exists (IF NOT EXISTS)."""
    return any(notice.get(b"C") == b"42P07" for notice in con.notices)


def _quoted(schema: object, name: str) -> str:
    def ident(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    return f"{ident(schema)}.{ident(name)}" if isinstance(schema, str) else ident(name)
