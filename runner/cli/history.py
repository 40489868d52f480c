"""`sqlplan status`: whether each `once` plan was applied, is pending, or changed since."""

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
    plan_files,
    teach,
)


@main.command("status")
@click.argument("paths", metavar="[PLAN...]", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--format",
    "report_format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="text: a line per plan; json: one document (schemas/status.schema.json).",
)
@database_url_option
@data_dir_option
@connect_retries_option
@connect_timeout_option
@teach(
    [
        "sqlplan status",
        "sqlplan status migrations/ --format json",
    ],
    [
        (0, "the status was read"),
        (2, "usage error"),
        (3, "a plan is invalid"),
        (4, "configuration error"),
        (5, "cannot connect"),
        (1, "reading sqlplan.history failed"),
    ],
)
def history_status(
    *,
    paths: tuple[str, ...],
    report_format: str,
    database_url: str | None,
    data_dir: str | None,
    connect_retries: int,
    connect_timeout: float | None,
) -> None:
    """Whether each `once` plan was applied to the database, is pending, or changed since.

    PLAN is a file or a directory (its *.yaml and *.yml files) [default: plans]. Reads
    sqlplan.history and changes nothing.
    """
    from .. import api
    from ..run import history

    try:
        report = api.history_status(
            plan_files(paths or ("plans",)), database_url=database_url, data_dir=data_dir,
            connect_retries=connect_retries, connect_timeout=connect_timeout, notify=notify,
        )  # fmt: skip
    except SqlPlanError as e:
        fail(e)
    if report_format == "json":
        click.echo(json.dumps({"version": 1, "plans": report}, indent=2))
    else:
        click.echo(history.status_text(report), nl=False)
    exit_with(ExitCode.OK)
