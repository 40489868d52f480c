"""`sqlplan run`: the options become one api.run_plans call; a terminal shows it as it goes,
and the reports render its result once it is over."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from ..errors import ExitCode, SqlPlanError
from ..events import Events
from .app import main
from .common import (
    connect_retries_option,
    connect_timeout_option,
    data_dir_option,
    database_url_option,
    exit_with,
    failure_text,
    notify,
    plan_files,
    signal_code,
    stdout_to_devnull,
    teach,
    var_option,
    vars_option,
)
from .fleet import fleet_options, refuse_strays, wanted
from .fleet import run_fleet as _run_fleet

if TYPE_CHECKING:
    from ..errors import Position
    from ..report import PlanResult, RunResult


@main.command()
@click.argument("paths", metavar="PLAN...", nargs=-1, required=True, type=click.Path(exists=True))
@database_url_option
@data_dir_option
@connect_retries_option
@connect_timeout_option
@click.option(
    "--dry-run",
    is_flag=True,
    help="Validate and show what would run (as `sqlplan show`); connect to nothing.",
)
@click.option(
    "--no-pipeline",
    envvar="SQLPLAN_NO_PIPELINE",
    is_flag=True,
    help="Send each step in a round trip of its own, even those that could share one. [env: SQLPLAN_NO_PIPELINE]",
)
@click.option(
    "--format",
    "report_format",
    type=click.Choice(("text", "json", "github")),
    default="text",
    show_default=True,
    help="text: the plans' own lines on stdout; json: one document on stdout (schemas/run-report.schema.json), the plans' lines inside it; github: text, and annotations on the failing step's line.",
)
@click.option(
    "--junit",
    "junit_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Also write JUnit XML: a test suite per plan, a test case per step.",
)
@click.option(
    "--summary",
    "summary_file",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Also append a Markdown summary to FILE (for example $GITHUB_STEP_SUMMARY).",
)
@click.option(
    "--lock-timeout",
    metavar="DURATION",
    envvar="SQLPLAN_LOCK_TIMEOUT",
    callback=lambda ctx, param, value: _duration(param, value),
    help="The longest each step waits for a lock (5s, 500ms, 1min), as SET LOCAL in its transaction; a step's own lock_timeout wins, and this wins over the plan's. [env: SQLPLAN_LOCK_TIMEOUT]",
)
@click.option(
    "--statement-timeout",
    metavar="DURATION",
    envvar="SQLPLAN_STATEMENT_TIMEOUT",
    callback=lambda ctx, param, value: _duration(param, value),
    help="The longest each statement may run, as --lock-timeout. [env: SQLPLAN_STATEMENT_TIMEOUT]",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="After a plan fails, run the plans after it anyway (the exit code is the first failure's).",
)
@click.option(
    "--allow-changed",
    is_flag=True,
    help="Skip a `once` plan changed since it was applied, instead of failing (exit 8).",
)
@click.option(
    "--take-over",
    is_flag=True,
    help="Run a `once` plan whose last run never finished (it died); never while another run may be applying it.",
)
@var_option
@vars_option
@fleet_options
@teach(
    [
        "sqlplan run plans/create_table.yaml",
        "sqlplan run migrations/ --var region=eu --format github --junit junit.xml",
        "sqlplan run --dry-run plans/update_data.yaml",
        "sqlplan run migrations/ --targets tenants.txt --only region=eu --parallel 8 --canary 2",
    ],
    [
        (0, "every plan ran, or was skipped as applied (a fleet: on every target)"),
        (1, "a step failed; what it opened was rolled back (a fleet: a target failed)"),
        (2, "usage error"),
        (3, "a plan or a var's value is invalid; nothing was sent"),
        (4, "configuration error (a malformed URL, an unknown parameter)"),
        (5, "cannot connect"),
        (6, "in doubt: the connection broke before a commit's answer (a fleet: first of all)"),
        (7, "an expectation did not hold"),
        (8, "a once plan's history refuses it (changed, or claimed)"),
        (9, "a backfill stopped at its max_duration; run again to resume"),
        (70, "a bug in sqlplan"),
        (130, "Ctrl-C"),
        (143, "SIGTERM"),
    ],
)
def run(
    *,
    paths: tuple[str, ...],
    database_url: str | None,
    data_dir: str | None,
    connect_retries: int,
    connect_timeout: float | None,
    dry_run: bool,
    no_pipeline: bool,
    keep_going: bool,
    allow_changed: bool,
    take_over: bool,
    lock_timeout: str | None,
    statement_timeout: str | None,
    report_format: str,
    junit_file: str | None,
    summary_file: str | None,
    var: tuple[str, ...],
    vars_files: tuple[str, ...],
    **fleet: Any,
) -> None:
    """Validate every PLAN, then run them in order on one connection, each step in order.

    A PLAN is a file, or a directory whose *.yaml and *.yml files run in name order. The run
    stops at the first plan that fails, unless --keep-going. Standard output carries only the
    plans' own messages; diagnostics go to standard error. Nothing is sent to the database
    (but a TLS handshake, begun while sqlplan starts) unless every plan is valid.

    With --targets, --target or --targets-from, the plans run on every database of a fleet,
    each on a connection of its own (docs/fleets.md).
    """
    from .. import api
    from ..report import RunResult

    files = plan_files(paths)
    settings = {"lock_timeout": lock_timeout, "statement_timeout": statement_timeout}
    if wanted(fleet):
        _run_fleet(
            tuple(files),
            {
                "report_format": report_format, "no_pipeline": no_pipeline,
                "allow_changed": allow_changed, "take_over": take_over,
                "settings": {k: v for k, v in settings.items() if v},
                "connect_retries": connect_retries, "connect_timeout": connect_timeout,
                "keep_going": keep_going, "dry_run": dry_run, "var": var,
                "vars_files": vars_files, "database_url": database_url, "data_dir": data_dir,
                "junit_file": junit_file, "summary_file": summary_file,
            },
            fleet,
        )  # fmt: skip
    refuse_strays(fleet)
    reports = _Reports(report_format, junit_file, summary_file)
    result = RunResult()
    try:
        try:
            loaded = api.load_plans(files, vars=var, vars_files=vars_files)
        except SqlPlanError as e:
            result.fail(e)
        else:
            if dry_run:
                _show(loaded)
            api.run_loaded(
                loaded, result, database_url=database_url, data_dir=data_dir,
                pipeline=not no_pipeline, keep_going=keep_going, allow_changed=allow_changed,
                take_over=take_over, settings={k: v for k, v in settings.items() if v},
                connect_retries=connect_retries, connect_timeout=connect_timeout,
                events=_Terminal(quiet=report_format == "json"), handle_signals=True,
                keep_output=report_format == "json",
            )  # fmt: skip
    except BaseException as stopped:  # a second Ctrl-C, or a bug: the reports say so too
        from ..run.interrupts import Abandoned

        if isinstance(stopped, (Abandoned, KeyboardInterrupt)):
            result.exit_code = signal_code(getattr(stopped, "signum", signal.SIGINT))
        elif not isinstance(stopped, SystemExit):
            result.exit_code = ExitCode.INTERNAL
        if not isinstance(stopped, SystemExit):
            reports.write(result)
        raise
    reports.write(result)
    if result.error is not None:
        click.echo(failure_text(result.error), err=True)
    exit_with(result.exit_code)


def _show(loaded: list[Any]) -> None:
    """--dry-run: what would run, as `sqlplan show` shows it; then exit."""
    from ..review.show import render

    for plan, _ in loaded:
        click.echo(render(plan, "text"), nl=False)
    exit_with(ExitCode.OK)


class _Terminal(Events):
    """How a run shows on a terminal: the plans' own lines on standard output (or kept for the
    JSON report), a progress bar for long loads, everything else on standard error."""

    PROGRESS_AFTER = 0.5  # seconds: a load shorter than this shows no bar
    PLAIN_EVERY = 10.0  # seconds between two plain progress lines, off a terminal

    def __init__(self, quiet: bool) -> None:
        self._bar: Any = None
        self._started: float | None = None
        self._plain: float | None = None  # when the last plain progress line was due
        self._quiet = quiet  # --format json: the lines are in the report, not on stdout
        self._many = False

    def notice(self, text: str) -> None:
        notify(text)

    def loaded(self, run: RunResult) -> None:
        self._many = len(run.plans) > 1
        if len(run.plans) == 1:
            _announce(run.plans[0])

    def plan_started(self, result: PlanResult, index: int, count: int) -> None:
        if self._many:
            _announce(result)

    def line(self, text: str) -> None:
        if self._quiet:
            return
        try:
            sys.stdout.write(text + "\n")
        except BrokenPipeError:
            _reader_left()

    def progress(self, label: str, done: int, total: int) -> None:
        """click's progress bar on a terminal, for work that takes a moment; elsewhere (CI), a
        plain line every PLAIN_EVERY seconds of it."""
        now = time.monotonic()
        if not sys.stderr.isatty():
            if self._plain is None:
                self._plain = now
            elif now - self._plain >= self.PLAIN_EVERY:
                share = f" ({100 * done // total}%)" if total else ""
                notify(f"{label}: {done:,} of {total:,}{share}")
                self._plain = now
            if done >= total:
                self._plain = None
            return
        if self._started is None:
            self._started = now
        if self._bar is None and done < total and now - self._started >= self.PROGRESS_AFTER:
            self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            self._bar.render_progress()
        if self._bar is not None:
            self._bar.update(min(done, total) - self._bar.pos)
            if done >= total:
                self._bar.render_finish()
                self._bar = None
        if done >= total:
            self._started = None

    def warning(self, position: Position, message: str, code: str) -> None:
        self._finish()
        sys.stdout.flush()
        click.echo(f"{position}: warning: {message} [{code}]", err=True)

    def plan_finished(self, result: PlanResult, index: int, count: int) -> None:
        from ..report import plan_line

        self._finish()  # whatever ended the plan, the terminal is as it was
        if result.failure is not None:
            click.echo(failure_text(result.failure), err=True)
        if self._many or result.skipped:
            notify(plan_line(result))

    def plan_not_run(self, result: PlanResult) -> None:
        from ..report import plan_line

        notify(plan_line(result))

    def _finish(self) -> None:
        """A bar still drawn (a load that failed or was interrupted) ends its line and gives
        the terminal its cursor back, before anything else is written."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            with contextlib.suppress(Exception):
                bar.render_finish()
        self._started = None


def _announce(result: PlanResult) -> None:
    plan = result.plan
    click.echo(f"sqlplan: plan {plan.name}, fingerprint {plan.short_fingerprint}", err=True)


def _reader_left() -> None:
    """Standard output's reader went away (`sqlplan run plan.yaml | head -1`). The plan goes
    on, as psql's script does: stopping between steps would leave a deployment half done for
    want of someone reading its messages. Its later lines are dropped."""
    stdout_to_devnull()
    notify("standard output was closed by its reader; the plan's later lines are dropped")


class _Reports:
    """--format json and github, --junit and --summary: written once the run is over, however
    it ended."""

    def __init__(self, format: str, junit: str | None, summary: str | None) -> None:
        self.format, self.junit, self.summary = format, junit, summary
        self.written = False

    def write(self, run: RunResult) -> None:
        from .. import report

        if self.written:
            return
        self.written = True
        sys.stdout.flush()
        text = report.stdout_report(self.format, run)
        if text is not None:
            click.echo(text)
        for problem in report.write_files(self.junit, self.summary, run):
            notify(f"warning: could not write a report: {problem}")


def _duration(param: click.Parameter, value: str | None) -> str | None:
    """A PostgreSQL duration as the plan format takes it (5s, 500ms, 1min; digits: ms)."""
    import re

    if value is None:
        return None
    text = value.strip()
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?(us|ms|s|min|h|d)?", text):
        raise click.BadParameter(
            f"{value!r} is not a duration: write a number and a unit (us, ms, s, min, h, d), "
            "such as 5s, 500ms or 1min",
            param=param,
        )
    from ..plan.settings import duration_problem

    text = text if not text.isdigit() else f"{text}ms"
    problem = duration_problem(text)
    if problem is not None:
        raise click.BadParameter(problem, param=param)
    return text
