"""Lock and rewrite findings graded by the size and traffic of their table: `check --stats`
reads what `sqlplan stats` took from a database and estimates how long each statement holds its
lock (the table's bytes at a documented rate) and how many writes wait meanwhile. Small findings
become notes, large ones errors; the thresholds come from the plan's `review:` or a config file."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Diagnostic
from ..plan.model import ReviewSettings

# One query of the catalogue and the statistics views, never a row of data: the server's
# figures, and each table, partitioned table and materialized view outside the system schemas
# with its planner estimates (reltuples, relpages), sizes on disk, its indexes' sizes, and the
# writes pg_stat_user_tables counted since the statistics were reset (or the server started).
STATS_QUERY = """
WITH meta AS (
  SELECT current_setting('block_size')::int AS block_size,
         current_setting('server_version_num')::int AS server_version,
         extract(epoch FROM now() - coalesce(
             (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()),
             pg_postmaster_start_time()))::float8 AS window_seconds,
         to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS taken_at
), tables AS (
  SELECT n.nspname, c.relname, c.relkind::text, c.reltuples::float8, c.relpages::bigint,
         pg_relation_size(c.oid) AS bytes, pg_total_relation_size(c.oid) AS total,
         coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0) AS writes,
         coalesce((SELECT json_agg(json_build_array(i.relname, pg_relation_size(i.oid))
                                   ORDER BY i.relname)
                   FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                   WHERE x.indrelid = c.oid), '[]') AS indexes
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
  WHERE c.relkind IN ('r', 'p', 'm')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
)
SELECT m.block_size, m.server_version, m.window_seconds, m.taken_at, t.*
FROM meta m LEFT JOIN tables t ON true
ORDER BY t.nspname, t.relname
"""

# Counters that have counted for less than this many seconds say more about how the server was
# filled than about its traffic: no rate is made of them.
MIN_WINDOW = 300

_KINDS = {"r": "table", "p": "partitioned table", "m": "materialized view"}


def stats_document(rows: Sequence[Sequence[Any]]) -> dict[str, Any]:
    """The rows of STATS_QUERY (as text) as the document schemas/stats.schema.json describes."""
    block_size, version, window, taken_at = rows[0][:4]
    minutes = float(window) / 60
    tables = []
    for row in rows:
        schema, name, kind, tuples, pages, size, total, writes, indexes = row[4:]
        if name is None:
            continue  # no table at all: the one row of the server's figures
        tables.append(
            {
                "schema": schema,
                "name": name,
                "kind": _KINDS[kind],
                "rows": None if float(tuples) < 0 else round(float(tuples)),
                "pages": int(pages),
                "bytes": int(size),
                "total_bytes": int(total),
                "indexes": [
                    {"name": n, "bytes": int(b)}
                    # text from sqlplan's own queries, decoded JSON from a driver that decodes
                    for n, b in (json.loads(indexes) if isinstance(indexes, str) else indexes)
                ],
                "writes": int(writes),
                "writes_per_minute": (
                    round(int(writes) / minutes, 3) if float(window) >= MIN_WINDOW else None
                ),
            }
        )
    return {
        "version": 1,
        "taken_at": taken_at,
        "server_version": int(version),
        "block_size": int(block_size),
        "window_seconds": round(float(window), 3),
        "tables": tables,
    }


DEFAULTS = ReviewSettings(
    compat=False, small=1.0, large=60.0, busy=1000, rewrite_rate=50.0, scan_rate=200.0
)
MB = 1_000_000

# How each rule's statement spends its time under the lock: writing the table and its indexes
# anew, building an index from the table, reading every row, or only queueing (no estimate).
REWRITES = frozenset({"add-column-rewrite", "alter-column-type", "rewrite-table"})
BUILDS = frozenset({"create-index", "add-unique", "exclude-constraint"})
REBUILDS = frozenset({"reindex"})
SCANS = frozenset({"set-not-null", "add-check", "add-foreign-key"})
QUEUES = frozenset({"lock-timeout", "held-lock", "drop-index", "detach-partition"})
GRADED = REWRITES | BUILDS | REBUILDS | SCANS | QUEUES


@dataclass(frozen=True)
class Limits:
    """Review settings resolved: the plan's (or the config file's), else the defaults."""

    small: float
    large: float
    busy: float
    rewrite_rate: float
    scan_rate: float

    @classmethod
    def of(cls, settings: ReviewSettings) -> Limits:
        s = settings.over(DEFAULTS)
        values = (s.small, s.large, s.busy, s.rewrite_rate, s.scan_rate)
        return cls(*(float(v) if v is not None else 0.0 for v in values))


@dataclass(frozen=True)
class Grade:
    level: str  # "small", "medium" or "large"
    seconds: float | None  # the estimate under the lock; None where size says nothing
    text: str  # the figures, for the message


class Stats:
    """A `sqlplan stats` document, looked up by table name (schema-qualified or bare)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = document
        self.tables: dict[str, Mapping[str, Any]] = {}
        # A bare name is public's table if there is one (the usual search_path), else the
        # first schema's.
        for table in document.get("tables", []):
            self.tables[f"{table['schema']}.{table['name']}"] = table
            if table["schema"] == "public" or table["name"] not in self.tables:
                self.tables[table["name"]] = table

    def find(self, relation: str) -> Mapping[str, Any] | None:
        name = relation.replace('"', "")
        return self.tables.get(name) or self.tables.get(name.rsplit(".", 1)[-1])


def grade(code: str, relation: str, stats: Stats, settings: ReviewSettings) -> Grade | None:
    """The grade of a finding of rule `code` on `relation`; None when the rule is not one of
    size, or the stats do not know the table."""
    if code not in GRADED:
        return None
    table = stats.find(relation)
    if table is None:
        return None
    s = Limits.of(settings)
    indexes = sum(i["bytes"] for i in table["indexes"])
    if code in REWRITES:
        seconds: float | None = (table["bytes"] + indexes) / (s.rewrite_rate * MB)
        how = f"a rewrite of {size_text(table['bytes'] + indexes)} (with its indexes) at {s.rewrite_rate:g} MB/s"
    elif code in BUILDS:
        seconds = table["bytes"] / (s.rewrite_rate * MB)
        how = f"an index built from {size_text(table['bytes'])} at {s.rewrite_rate:g} MB/s"
    elif code in REBUILDS:
        seconds = indexes / (s.rewrite_rate * MB)
        how = f"{size_text(indexes)} of indexes rebuilt at {s.rewrite_rate:g} MB/s"
    elif code in SCANS:
        seconds = table["bytes"] / (s.scan_rate * MB)
        how = f"a scan of {size_text(table['bytes'])} at {s.scan_rate:g} MB/s"
    else:
        seconds, how = None, ""
    known = table["writes_per_minute"]
    rate = float(known) if known is not None else 0.0
    figures = f"{table['schema']}.{table['name']}: {table_figures(table)}"
    if seconds is not None:
        figures += f"; about {_duration(seconds)} under the lock ({how})"
        if rate:
            figures += f", {rate * seconds / 60:,.0f} writes waiting meanwhile"
    busy = rate >= s.busy
    if busy or (seconds is not None and seconds >= s.large):
        level = "large"
    elif seconds is not None and seconds < s.small and rate < s.busy / 10:
        # Queueing alone (no estimate) is never small: reads wait too, and they are not counted
        level = "small"
    else:
        level = "medium"
    return Grade(level, seconds, figures)


SEVERITY = {"small": "note", "medium": "warning", "large": "error"}


def hold_grade(seconds: float, table: Mapping[str, Any] | None, settings: ReviewSettings) -> str:
    """The grade of a lock a rehearsal held for `seconds`: measured on a copy, the time needs
    no estimate; the table's writes a minute (when known) still make a busy table large."""
    s = Limits.of(settings)
    known = table["writes_per_minute"] if table is not None else None
    rate = float(known) if known is not None else 0.0
    if rate >= s.busy or seconds >= s.large:
        return "large"
    if seconds < s.small and rate < s.busy / 10:
        return "small"
    return "medium"


def graded(
    diagnostics: Sequence[Diagnostic],
    stats: Stats,
    settings: Mapping[str, ReviewSettings],
) -> list[Diagnostic]:
    """The diagnostics with their lock and rewrite findings graded: the figures appended to
    the message, and the severity the grade gives (small: note, medium: warning, large:
    error). `settings` are each file's review settings."""
    found = []
    for d in diagnostics:
        if d.severity != "warning" or not d.relation:
            found.append(d)
            continue
        g = grade(d.code, d.relation, stats, settings.get(d.position.path, ReviewSettings()))
        if g is None:
            found.append(d)
            continue
        found.append(
            replace(d, message=f"{d.message} [{g.level}: {g.text}]", severity=SEVERITY[g.level])
        )
    return found


def table_figures(table: Mapping[str, Any]) -> str:
    """A table's rows, size and writes a minute, as a reviewer reads them."""
    rows = "unknown rows" if table["rows"] is None else f"{table['rows']:,} rows"
    size = table.get("total_bytes", table.get("bytes", 0))
    rate = table["writes_per_minute"]
    writes = "writes/min unknown" if rate is None else f"{rate:,.0f} writes/min"
    return f"{rows}, {size_text(size)}, {writes}"


def size_text(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
