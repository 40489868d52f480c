"""`sqlplan status`: whether each `once` plan was applied, is pending, or changed since."""

from __future__ import annotations

import json

import click

from ..errors import ExitCode, SqlPlanError
from .app import main
from .common import (
    close_quietly,
    connect_retries_option,
    connect_timeout_option,
    data_dir_option,
    database_target,
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

    from ..connect.connection import RetryPolicy, connect
    from ..errors import PlanInvalid
    from ..plan.cache import load_plan
    from ..run import history, wire

    files = plan_files(paths or ("plans",))
    try:
        problems = []
        plans = []
        for file in files:
            try:
                plans.append(load_plan(file))
            except PlanInvalid as e:
                problems.extend(e.diagnostics)
        if problems:
            raise PlanInvalid(problems)
        target = database_target(database_url, data_dir)
        con = connect(target, RetryPolicy(connect_retries, connect_timeout), notify)
    except SqlPlanError as e:
        fail(e)
    try:
        found = history.read(con, [p.name for p in plans if p.once])
    except (wire.ServerFailure, wire.ConnectionLost) as e:
        reason = (
            f"{e.fields.get('M', '')} [{e.fields.get('C', '')}]"
            if isinstance(e, wire.ServerFailure)
            else f"the connection was lost ({e})"
        )
        fail(SqlPlanError(f"reading sqlplan.history failed: {reason}"))
    finally:
        close_quietly(con)
    report = history.status(plans, found)
    if report_format == "json":
        click.echo(json.dumps({"version": 1, "plans": report}, indent=2))
    else:
        click.echo(history.status_text(report), nl=False)
    exit_with(ExitCode.OK)
