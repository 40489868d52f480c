"""`sqlplan status`: whether each `once` plan was applied, is pending, or changed since."""

from __future__ import annotations

import json
from typing import Any

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
from .fleet import target_options, wanted


@main.command("status")
@click.argument("paths", metavar="[PLAN...]", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--format",
    "report_format",
    type=click.Choice(("text", "json", "markdown")),
    default="text",
    show_default=True,
    help="text: a line per plan (a fleet: a matrix); json: one document (schemas/status.schema.json); markdown: a fleet's matrix as a table.",
)
@target_options
@database_url_option
@data_dir_option
@connect_retries_option
@connect_timeout_option
@teach(
    [
        "sqlplan status",
        "sqlplan status migrations/ --format json",
        "sqlplan status migrations/ --targets tenants.txt --format markdown",
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
    **fleet: Any,
) -> None:
    """Whether each `once` plan was applied to the database, is pending, or changed since.

    PLAN is a file or a directory (its *.yaml and *.yml files) [default: plans]. Reads
    sqlplan.history and changes nothing. With --targets (or --target, --targets-from), a
    matrix: each target of the fleet by each plan.
    """
    from .. import api
    from ..run import history

    if wanted(fleet):
        _fleet_status(paths, report_format, database_url, data_dir, connect_timeout, fleet)
    if report_format == "markdown":
        raise click.UsageError("--format markdown: only with a fleet (--targets)")

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


def _fleet_status(  # noqa: PLR0917  (the command's options, passed on)
    paths: tuple[str, ...],
    report_format: str,
    database_url: str | None,
    data_dir: str | None,
    connect_timeout: float | None,
    fleet: dict[str, Any],
) -> None:
    from .. import api
    from ..fleet import status

    try:
        targets = api.fleet_targets(
            targets_file=fleet["targets_file"], targets=fleet["target_specs"],
            targets_from=fleet["targets_from"], database_url=database_url, data_dir=data_dir,
            only=fleet["only"], shard=fleet["shard"],
        )  # fmt: skip
        plans, rows = api.fleet_status(
            plan_files(paths or ("plans",)), targets, parallel=fleet["parallel"],
            connect_timeout=connect_timeout,
        )  # fmt: skip
    except SqlPlanError as e:
        where = getattr(e, "position", None)
        if where is not None:
            click.echo(f"{where}: error: {e.message}", err=True)
            exit_with(e.exit_code)
        fail(e)
    if report_format == "json":
        click.echo(json.dumps(status.document(plans, rows), indent=2, ensure_ascii=False))
    elif report_format == "markdown":
        click.echo(status.markdown(plans, rows), nl=False)
    else:
        click.echo(status.text(plans, rows), nl=False)
    exit_with(ExitCode.OK)
