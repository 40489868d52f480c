"""`sqlplan stats`: a database's table sizes and write rates, for `check --stats`."""

from __future__ import annotations

import json

import click

from ..errors import ExitCode, SqlPlanError
from .app import main
from .common import (
    connect_retries_option,
    connect_timeout_option,
    data_dir_option,
    database_url_option,
    exit_with,
    fail,
    notify,
    teach,
)


@main.command()
@database_url_option
@data_dir_option
@connect_retries_option
@connect_timeout_option
@teach(
    [
        'sqlplan stats --database-url "$PRODUCTION_READONLY_URL" > stats.json',
        "sqlplan stats",
    ],
    [
        (0, "the figures were printed"),
        (1, "reading the catalogue failed"),
        (2, "usage error"),
        (4, "configuration error"),
        (5, "cannot connect"),
    ],
)
def stats(
    *,
    database_url: str | None,
    data_dir: str | None,
    connect_retries: int,
    connect_timeout: float | None,
) -> None:
    """Print each table's size and write rate as JSON (schemas/stats.schema.json), for
    `sqlplan check --stats` to grade lock and rewrite findings by.

    Read in one query from the catalogue and the statistics views only, never a row of data:
    pg_class's reltuples and relpages, the sizes of each table and its indexes on disk, and the
    rows pg_stat_user_tables counted as inserted, updated and deleted since the statistics were
    reset (or the server started), as writes a minute. A read-only role is enough.
    """
    from .. import api

    try:
        document = api.table_stats(
            database_url=database_url, data_dir=data_dir, connect_retries=connect_retries,
            connect_timeout=connect_timeout, notify=notify,
        )  # fmt: skip
    except SqlPlanError as e:
        fail(e)
    click.echo(json.dumps(document, indent=2))
    tables = len(document["tables"])
    notify(
        f"{tables} table{'s' * (tables != 1)}, writes counted over {document['window_seconds']:.0f} s"
    )
    exit_with(ExitCode.OK)
