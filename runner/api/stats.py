"""`sqlplan stats`: a database's table sizes and write rates from its catalogue, no row data,
for `check --stats` to grade lock and rewrite findings by."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def table_stats(
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The document schemas/stats.schema.json describes, read in one query (review/grades.py's
    STATS_QUERY: the catalogue and the statistics views, no row data)."""
    from ..connect.connection import RetryPolicy, close, connect
    from ..connect.where import open_target
    from ..errors import SqlPlanError
    from ..review.grades import STATS_QUERY, stats_document
    from ..run import wire

    target = open_target(database_url, data_dir, environ, notify)
    con = connect(target, RetryPolicy(connect_retries, connect_timeout), notify)
    try:
        rows = wire.extended(con, STATS_QUERY, [[]], text_rows=True).rows
    except (wire.ServerFailure, wire.ConnectionLost) as e:
        raise SqlPlanError(f"reading the catalogue failed: {wire.reason(e)}") from None
    finally:
        close(con)
    return stats_document(rows)
