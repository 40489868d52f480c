"""`sqlplan check`, `show` and `rehearse`: what a reviewer reads before a plan runs."""

from __future__ import annotations

import sys

import click

from ..errors import ExitCode, SqlPlanError, UsageError
from ..output import CHECK_FORMATS, SHOW_FORMATS
from ..review.rehearsal import REHEARSAL_FORMATS
from .app import main
from .common import (
    connect_retries_option,
    connect_timeout_option,
    data_dir_option,
    database_url_option,
    exit_with,
    fail,
    notify,
    pg_version_option,
    plan_files,
    signal_code,
    signal_name,
    teach,
    var_option,
    vars_option,
)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--format",
    "report_format",
    type=click.Choice((*CHECK_FORMATS, "sarif", "markdown")),
    default="text",
    show_default=True,
    help="text: file:line:col: severity: message [code]; json: one document; github: workflow commands that annotate a pull request; sarif: SARIF 2.1.0 for code scanning; markdown: the pull-request comment (`sqlplan comment` posts it).",
)
@click.option(
    "--rehearsal",
    "rehearsals",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="With --format markdown: a `rehearse --format json` report whose times join its plan's steps (repeatable).",
)
@click.option(
    "--changed-since",
    metavar="REF",
    help="Only the plans changed since the branch left REF (git; a plan whose file or rows_from data changed, committed or not), and the earlier plans of the run that define what they use.",
)
@click.option(
    "--stats",
    "stats_file",
    type=click.Path(exists=True, dir_okay=False),
    help="A `sqlplan stats` document: lock and rewrite findings graded by their table's size and writes (small: a note, large: an error).",
)
@click.option(
    "--review-config",
    type=click.Path(exists=True, dir_okay=False),
    help="Review settings for every plan (compat, grading thresholds) [default: sqlplan-review.yaml here, if any]; a plan's own review: wins.",
)
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
@click.option(
    "--pooler/--no-pooler",
    default=None,
    help="Also flag what a transaction-mode pooler breaks (session SET, session advisory locks, LISTEN, temporary tables across transactions, PREPARE) [default: when DATABASE_URL names one: Neon's -pooler host, or pgbouncer=true].",
)
@pg_version_option
@teach(
    [
        "sqlplan check",
        "sqlplan check plans/ migrations/add_index.yaml --strict --format github",
        "sqlplan check migrations/ --changed-since origin/main --format sarif",
    ],
    [
        (0, "no problems"),
        (1, "problems found (errors; with --strict, warnings too)"),
        (2, "usage error"),
    ],
)
def check(
    *,
    paths: tuple[str, ...],
    report_format: str,
    rehearsals: tuple[str, ...],
    changed_since: str | None,
    stats_file: str | None,
    review_config: str | None,
    strict: bool,
    pooler: bool | None,
    pg_version: int | None,
) -> None:
    """Check plans without connecting to any database.

    PATHS are plan files or directories searched for *.yaml and *.yml [default: plans].
    Everything `run` validates, SQL parsed by PostgreSQL's own parser, and review warnings:
    data loss (drop, truncate, delete-without-where, update-without-where), statements that
    cannot run where they are (no-transaction-block), and the locks and rewrites of DDL
    (create-index, add-column-rewrite, ... see the README), each silenced per step with
    `allow: [code]` or `allow: {code: reason}`. A file with errors still gets the warnings of
    its valid steps. Exit codes: 0 no problems, 1 problems found (errors, or with --strict
    warnings), 2 usage error.
    """
    from .. import api
    from ..output import check_report

    files = plan_files(paths or ("plans",))  # what `run` would run, no more, no less
    try:
        from ..api.checking import review_config as read_config
        from ..api.checking import stats_document

        stats = stats_document(stats_file) if stats_file else None
        found = api.check(
            files, strict=strict, pooler=pooler, pg_version=pg_version,
            changed_since=changed_since, stats=stats, review=read_config(review_config),
        )  # fmt: skip
    except SqlPlanError as e:
        fail(e)
    if found.changed is not None:
        more = f", and {len(found.needed)} earlier they stand on" if found.needed else ""
        notify(f"{len(found.changed)} of {len(files)} plans changed since {changed_since}{more}")
    if report_format == "sarif":
        from ..review import sarif

        click.echo(sarif.render(sarif.check_document(found.diagnostics)), nl=False)
    elif report_format == "markdown":
        from ..review import comment

        reports = [_rehearsal_report(path) for path in rehearsals]
        body = comment.render(
            found.files, found.diagnostics, found.plans, reports, version=pg_version
        )
        click.echo(body, nl=False)
        for name in comment.unmatched(found.plans, reports):
            notify(f"the rehearsal of plan {name!r} matches no plan checked; left out")
    else:
        chosen: dict[str, object] | None = None
        if found.changed is not None:
            chosen = {"ref": changed_since, "changed": found.changed, "needed": found.needed}
        click.echo(check_report(report_format, found.files, found.diagnostics, chosen), nl=False)
    errors, warnings = found.errors, found.warnings
    checked = found.files
    noun = "plan" if len(checked) == 1 else "plans"
    summary = f"{len(checked)} {noun} checked: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
    if found.notes:
        summary += f", {found.notes} note{'s' * (found.notes != 1)}"
    click.echo(summary, err=True)
    exit_with(found.exit_code)


def _rehearsal_report(path: str) -> dict[str, object]:
    """A `rehearse --format json` report, or a usage error that says why it is not one."""
    import json

    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        if not isinstance(document, dict) or document.get("version") != 1:
            raise ValueError("not a `rehearse --format json` report")
        for key in ("plan", "fingerprint", "ok", "holds", "statements"):
            if key not in document:
                raise ValueError(f"not a `rehearse --format json` report: no {key!r}")
    except (OSError, ValueError) as e:
        fail(UsageError(f"--rehearsal {path}: {e}"))
    return document


@main.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "show_format",
    type=click.Choice(SHOW_FORMATS),
    default="text",
    show_default=True,
    help="markdown is ready to paste in a pull-request comment.",
)
@pg_version_option
@var_option
@vars_option
@teach(
    [
        "sqlplan show plans/update_data.yaml",
        "sqlplan show plans/examples/vars.yaml --var year=1965 --var title=Dune --format markdown",
    ],
    [
        (0, "shown"),
        (2, "usage error"),
        (3, "the plan or a var's value is invalid"),
    ],
)
def show(
    plan_file: str,
    show_format: str,
    pg_version: int | None,
    var: tuple[str, ...],
    vars_files: tuple[str, ...],
) -> None:
    """Show what PLAN will do, without connecting: each step's kind, exact SQL with the bound
    values beside their placeholders, transaction boundaries, the messages it can print, and the
    plan's fingerprint (which `run` prints too, so that what ran can be matched to what was
    reviewed)."""
    from ..plan.cache import load_plan
    from ..review.show import render

    try:
        from ..plan.loading import bind_vars

        plan, _ = bind_vars(load_plan(plan_file), var, vars_files, required=False)
    except SqlPlanError as e:
        fail(e)
    click.echo(render(plan, show_format, pg_version), nl=False)


@main.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@database_url_option
@data_dir_option
@click.option(
    "--format",
    "report_format",
    type=click.Choice((*REHEARSAL_FORMATS, "sarif")),
    default="text",
    show_default=True,
    help="markdown is ready for a pull-request comment; json follows schemas/rehearsal.schema.json; sarif is SARIF 2.1.0 for code scanning.",
)
@click.option(
    "--lock-timeout",
    default="2s",
    show_default=True,
    help="How long a statement may wait for a lock before it is reported as one that would wait.",
)
@click.option(
    "--statement-timeout", default="60s", show_default=True, help="The longest a statement may run."
)
@click.option(
    "--skip-non-transactional",
    is_flag=True,
    help="Rehearse the rest of a plan that holds statements which cannot run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM, ...); they are marked not rehearsed.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Findings (observed locks that differ from the analysis) fail too.",
)
@click.option(
    "--review-config",
    type=click.Path(exists=True, dir_okay=False),
    help="The thresholds that grade each held lock [default: sqlplan-review.yaml here, if any]; a plan's own review: wins.",
)
@click.option(
    "--sarif",
    "sarif_file",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write the findings as SARIF 2.1.0 to this file, beside the --format report (one rehearsal, two reports).",
)
@connect_retries_option
@connect_timeout_option
@pg_version_option
@var_option
@vars_option
@teach(
    [
        "sqlplan rehearse migrations/002_add_column.yaml",
        "sqlplan rehearse migrations/002_add_column.yaml --format markdown --lock-timeout 2s",
    ],
    [
        (0, "every statement ran"),
        (1, "one failed or would wait for a lock (with --strict: findings too)"),
        (2, "usage error"),
        (3, "invalid plan"),
        (4, "configuration error"),
        (5, "cannot connect"),
    ],
)
def rehearse(
    *,
    var: tuple[str, ...],
    vars_files: tuple[str, ...],
    plan_file: str,
    database_url: str | None,
    data_dir: str | None,
    connect_retries: int,
    connect_timeout: float | None,
    report_format: str,
    lock_timeout: str,
    statement_timeout: str,
    skip_non_transactional: bool,
    strict: bool,
    review_config: str | None,
    sarif_file: str | None,
    pg_version: int | None,
) -> None:
    """Run PLAN in one transaction and roll it back, reporting for each statement the locks it
    took, the tables it rewrote, rows and time, beside the offline analysis of `check`.

    Nothing is committed, even if sqlplan is killed (the server rolls back); sequence values
    that nextval() advances are the exception. A statement that would wait longer than
    --lock-timeout for a lock is reported with who holds it instead of queueing behind them.
    Exit codes: 0 every statement ran, 1 one failed or would wait (or, with --strict, findings),
    2 usage, 3 invalid plan, 4 configuration, 5 cannot connect.
    """
    from .. import api
    from ..review.rehearsal import compare, render
    from ..run import interrupts

    try:
        from ..api.checking import review_config as read_config

        review = read_config(review_config)
        result = api.rehearse(
            plan_file, database_url=database_url, data_dir=data_dir, vars=var,
            vars_files=vars_files, lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            skip_non_transactional=skip_non_transactional, connect_retries=connect_retries,
            connect_timeout=connect_timeout, notify=notify, handle_signals=True, review=review,
        )  # fmt: skip
    except SqlPlanError as e:
        fail(e)
    except interrupts.Abandoned as e:
        sys.stdout.flush()
        click.echo(
            f"sqlplan: interrupted ({signal_name(e.signum)}); the rehearsal was never committed: "
            "the server rolls it back as the connection closes",
            err=True,
        )
        exit_with(signal_code(e.signum))
    scanned = ""
    if report_format == "sarif" or sarif_file:
        from ..review import sarif

        scanned = sarif.render(sarif.rehearsal_document(result, pg_version))
    if report_format == "sarif":
        click.echo(scanned, nl=False)
    else:
        click.echo(render(result, report_format, pg_version), nl=False)
    if sarif_file:
        try:
            with open(sarif_file, "w", encoding="utf-8") as f:
                f.write(scanned)
        except OSError as e:
            fail(UsageError(f"--sarif {sarif_file}: {e.strerror or e}"))
    if result.interrupted is not None:
        sys.stdout.flush()
        click.echo(
            f"sqlplan: interrupted ({signal_name(result.interrupted)}); the rehearsal was rolled "
            "back, nothing was committed",
            err=True,
        )
        exit_with(signal_code(result.interrupted))
    findings = sum(len(row.differences) for row in compare(result, pg_version))
    exit_with(ExitCode.OK if result.ok and not (strict and findings) else ExitCode.STEP_FAILED)
