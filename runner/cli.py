"""The `sqlplan` command: options in, one core call, rendered result out, an exit code."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import __version__, secrets
from .errors import ExitCode, RunInterrupted, SqlPlanError
from .output import CHECK_FORMATS, SHOW_FORMATS

if TYPE_CHECKING:
    from .connect.target import Target
    from .errors import Position

F = TypeVar("F", bound=Callable[..., Any])

_data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the embedded PostgreSQL keeps its state [default: $SQLPLAN_DATA_DIR, else ./.sqlplan].",
)
_pg_version_option = click.option(
    "--pg-version",
    type=click.IntRange(12, 18),
    help="The PostgreSQL major version the lock and rewrite rules assume [default: the plan's postgres:, else 18].",
)
_database_url_option = click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL; overrides DATABASE_URL and .env; without any, the embedded server. [env: DATABASE_URL]",
)


_var_option = click.option(
    "--var",
    "var",
    metavar="NAME=VALUE",
    multiple=True,
    help="A value for one of the plan's vars (repeatable); it travels as a bind parameter, never in the SQL.",
)
_vars_option = click.option(
    "--vars",
    "vars_files",
    metavar="FILE",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A YAML file of var values (repeatable); --var wins over it, and it over the environment.",
)


def _teach(examples: list[str], codes: list[tuple[int, str]]) -> Callable[[F], F]:
    """End a command's help with examples and the exit codes it can return (click keeps a
    paragraph that starts with \\b as written)."""

    def add(function: F) -> F:
        lines = ["", "Examples:", "", "\b", *(f"  {e}" for e in examples), "", "Exit codes:", ""]
        lines += ["\b", *(f"  {code:<3} {meaning}" for code, meaning in codes)]
        doc = _cleandoc(function.__doc__ or "")
        function.__doc__ = doc + "\n" + "\n".join(lines)
        return function

    return add


def _cleandoc(text: str) -> str:
    """inspect.cleandoc, without importing inspect (6 ms at every start)."""
    lines = text.expandtabs().splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    margin = min(indents, default=0)
    return "\n".join(
        [lines[0].strip() if lines else "", *(line[margin:] for line in lines[1:])]
    ).strip("\n")


class _StdoutLines:
    """The plan's output on stdout; warnings and progress on stderr."""

    PROGRESS_AFTER = 0.5  # seconds: a load shorter than this shows no bar

    def __init__(self, keep: list[str] | None = None) -> None:
        self._bar: Any = None
        self._started: float | None = None
        self._keep = keep  # --format json: the lines go into the report, not to stdout

    def line(self, text: str) -> None:
        if self._keep is not None:
            self._keep.append(text)
            return
        try:
            sys.stdout.write(text + "\n")
        except BrokenPipeError:
            _reader_left()

    def progress(self, label: str, done: int, total: int) -> None:
        """click's progress bar, only on a terminal and only for loads that take a moment."""
        if not sys.stderr.isatty():
            return
        now = time.monotonic()
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
        self.finish()
        sys.stdout.flush()
        click.echo(f"{position}: warning: {message} [{code}]", err=True)

    def finish(self) -> None:
        """A bar still drawn (a load that failed or was interrupted) ends its line and gives
        the terminal its cursor back, before anything else is written."""
        if self._bar is not None:
            bar, self._bar = self._bar, None
            with contextlib.suppress(Exception):
                bar.render_finish()
        self._started = None


def _reader_left() -> None:
    """Standard output's reader went away (`sqlplan run plan.yaml | head -1`). The plan goes
    on, as psql's script does: stopping between steps would leave a deployment half done for
    want of someone reading its messages. Its later lines are dropped."""
    _stdout_to_devnull()
    _notify("standard output was closed by its reader; the plan's later lines are dropped")


def _stdout_to_devnull() -> None:
    """Standard output's reader is gone: what is still written goes nowhere, without errors."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _notify(text: str) -> None:
    click.echo(f"sqlplan: {text}", err=True)


def _exit(code: ExitCode) -> NoReturn:
    sys.stdout.flush()
    sys.exit(int(code))


def _failure_text(error: SqlPlanError) -> str:
    from .errors import HistoryRefused, PlanInvalid, StepFailed
    from .output import diagnostics_text, error_text, step_failure_text

    sys.stdout.flush()
    if isinstance(error, PlanInvalid):
        return diagnostics_text(error.diagnostics)
    if isinstance(error, StepFailed):
        return step_failure_text(error)
    if isinstance(error, HistoryRefused):
        return f"{error.position}: error: {error.message}"
    return error_text(error)


def _fail(error: SqlPlanError, code: ExitCode | None = None) -> NoReturn:
    click.echo(_failure_text(error), err=True)
    _exit(code if code is not None else error.exit_code)


def _state_dir(data_dir: str | None) -> Path:
    from .connect.embedded import default_state_dir

    return Path(data_dir) if data_dir else default_state_dir(Path.cwd(), os.environ)


def _target(database_url: str | None, data_dir: str | None) -> Target:
    """The URL from the flag, the environment or .env; else the embedded server, started."""
    from .connect.target import resolve_target

    target = resolve_target(database_url, os.environ, Path.cwd())
    if target is None:
        from .connect.embedded import EmbeddedServer

        return EmbeddedServer(_state_dir(data_dir)).ensure_running(_notify)
    for note in target.notes:  # a password file ignored, as libpq warns of it
        _notify(f"warning: {note}")
    return target


class _Commands(click.Group):
    """The command group; an exception no command expected is reported as a bug in sqlplan,
    with exit code 70, rather than as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from .connect import early
        from .run import interrupts

        secrets.use(())  # no secret until the command's vars are bound
        try:
            # Ctrl-C and SIGTERM: before `run` connects (initdb, connecting), they stop at once;
            # either way sqlplan says so and exits 130 or 143, never click's "Aborted!".
            with interrupts.install():
                try:
                    return super().invoke(ctx)
                finally:
                    early.discard()  # a connection opened early that nobody took
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `sqlplan show plan.yaml | head`: the reader has what it wanted. As a shell reports
            # a command SIGPIPE stopped, and without a word (`run` goes on instead: see
            # _reader_left).
            _stdout_to_devnull()
            _exit(ExitCode.READER_LEFT)
        except (interrupts.Abandoned, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            sys.stdout.flush()
            click.echo(
                f"sqlplan: interrupted ({_signal_name(signum)}); no step had started", err=True
            )
            _exit(ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED)
        except Exception as e:
            sys.stdout.flush()
            click.echo(f"sqlplan: {internal_error(e)}", err=True)
            _exit(ExitCode.INTERNAL)


def _signal_name(signum: int) -> str:
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def internal_error(error: BaseException) -> str:
    detail = str(error)
    detail = detail if len(detail) <= 300 else detail[:299] + "…"
    return (
        f"internal error: {type(error).__name__}: {detail} "
        "(a bug in sqlplan; please report it with the plan that caused it)"
    )


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sqlplan")
def main() -> None:
    """Run declarative SQL plans (YAML) against PostgreSQL.

    With no DATABASE_URL (environment, ./.env or --database-url) plans run on an embedded
    PostgreSQL kept in ./.sqlplan. Exit codes: 0 ok, 1 a step failed, 2 usage error,
    3 invalid plan, 4 configuration error, 5 cannot connect, 6 in doubt, 7 an expectation
    failed, 8 refused by the history, 70 internal error, 130 interrupted, 143 terminated.
    """


def entry() -> NoReturn:
    """The `sqlplan` console script: the command, then an exit that skips the interpreter's
    teardown (about 20 ms of freeing what the process is about to drop anyway). It is safe
    because by then everything sqlplan writes is written: the connection closed, files closed
    by their `with` blocks, the cache entry renamed into place; only the standard streams are
    left, and they are flushed here. The exit code is the command's."""
    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # as Python does for a message given to sys.exit
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`) before the last of the output
        code = code or int(ExitCode.READER_LEFT)
    except ValueError:  # a closed stream
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(int(code or 0))


_connect_retries_option = click.option(
    "--connect-retries",
    envvar="SQLPLAN_CONNECT_RETRIES",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Retries of a connection that fails transiently (refused, reset, timed out, server starting). [env: SQLPLAN_CONNECT_RETRIES]",
)
_connect_timeout_option = click.option(
    "--connect-timeout",
    envvar="SQLPLAN_CONNECT_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds each connection attempt may take [default: the URL's connect_timeout, else 15]. [env: SQLPLAN_CONNECT_TIMEOUT]",
)


@main.command()
@click.argument("paths", metavar="PLAN...", nargs=-1, required=True, type=click.Path(exists=True))
@_database_url_option
@_data_dir_option
@_connect_retries_option
@_connect_timeout_option
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
@_var_option
@_vars_option
@_teach(
    [
        "sqlplan run plans/create_table.yaml",
        "sqlplan run migrations/ --var region=eu --format github --junit junit.xml",
        "sqlplan run --dry-run plans/update_data.yaml",
    ],
    [
        (0, "every plan ran, or was skipped as applied"),
        (1, "a step failed; what it opened was rolled back"),
        (2, "usage error"),
        (3, "a plan or a var's value is invalid; nothing was sent"),
        (4, "configuration error (a malformed URL, an unknown parameter)"),
        (5, "cannot connect"),
        (6, "in doubt: the connection broke before a commit's answer"),
        (7, "an expectation did not hold"),
        (8, "a once plan's history refuses it (changed, or claimed)"),
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
) -> None:
    """Validate every PLAN, then run them in order on one connection, each step in order.

    A PLAN is a file, or a directory whose *.yaml and *.yml files run in name order. The run
    stops at the first plan that fails, unless --keep-going. Standard output carries only the
    plans' own messages; diagnostics go to standard error. Nothing is sent to the database
    (but a TLS handshake, begun while sqlplan starts) unless every plan is valid.
    """
    from .connect import early
    from .connect.connection import RetryPolicy, cancel, connect
    from .plan.loading import load_all
    from .report import PlanResult
    from .run import interrupts

    settings = {
        name: value
        for name, value in (
            ("lock_timeout", lock_timeout),
            ("statement_timeout", statement_timeout),
        )
        if value is not None
    }
    results: list[PlanResult] = []
    reports = _Reports(report_format, junit_file, summary_file, results)
    files = _run_files(paths)
    try:
        plans = load_all(files, var, vars_files)
        if dry_run:
            from .review.show import render

            for plan, _ in plans:
                click.echo(render(plan, "text"), nl=False)
            _exit(ExitCode.OK)
        results += [PlanResult(plan) for plan, _ in plans]
        if len(plans) == 1:
            _announce(plans[0][0])
        target = _target(database_url, data_dir)
        _pooler_warnings(target, plans)
        # The plans are valid: a connection opened while sqlplan started logs in now, in the
        # background, while what running needs is imported (the driver with it).
        early.go(target)
        _import_running()
        con = connect(target, RetryPolicy(connect_retries, connect_timeout), _notify)
    except SqlPlanError as e:
        reports.write(e.exit_code, e)
        _fail(e)
    # Connected: a first Ctrl-C or SIGTERM cancels the running statement, and the plan stops
    # where the server's answer says what committed; a second one stops at once.
    interrupts.arm(lambda: cancel(target, con))
    from .run.plans import run_one  # imported with the engine by _import_running()

    code = ExitCode.OK
    try:
        for index, (plan, values) in enumerate(plans):
            result = results[index]
            if len(plans) > 1:
                _announce(plan)
            started = time.monotonic()
            out = _StdoutLines(result.output if report_format == "json" else None)
            try:
                run_one(
                    result, values, con, out, __version__, pipeline=not no_pipeline,
                    allow_changed=allow_changed, take_over=take_over, settings=settings,
                    pooler=target.pooler,
                )  # fmt: skip
            finally:
                out.finish()  # whatever ended the run, the terminal is as it was
            failure = result.failure
            if result.status in ("ok", "failed"):
                result.seconds = time.monotonic() - started
            if failure is not None:
                click.echo(_failure_text(failure), err=True)
                code = code or failure.exit_code
            if len(plans) > 1 or result.skipped:
                said = {
                    "ok": f"ok in {(result.seconds or 0) * 1000:.0f} ms",
                    "failed": f"failed (exit {int(failure.exit_code) if failure else 1})",
                    "refused": "refused by its history",
                    "skipped": f"skipped, {result.skipped}",
                }[result.status]
                _notify(f"plan {plan.name} ({plan.path}): {said}")
            if failure is not None and (
                not keep_going
                or getattr(failure, "connection_lost", False)
                or isinstance(failure, RunInterrupted)
            ):
                for rest, _ in plans[index + 1 :]:
                    _notify(f"plan {rest.name} ({rest.path}): not run")
                break
    finally:
        _close_quietly(con)
        reports.write(code)
    _exit(code)


def _import_running() -> None:
    """The engine, the history and the wire protocol (pg8000 with it): imported while the
    connection is still on its way, not after it arrives."""
    from .run import engine, history, plans, wire  # noqa: F401


class _Reports:
    """--format json and github, --junit and --summary: written once the run is over, however
    it ended."""

    def __init__(
        self, format: str, junit: str | None, summary: str | None, results: list[Any]
    ) -> None:
        self.format, self.junit, self.summary, self.results = format, junit, summary, results
        self.written = False

    def write(self, code: ExitCode, error: SqlPlanError | None = None) -> None:
        from . import report

        if self.written:
            return
        self.written = True
        sys.stdout.flush()
        text = report.stdout_report(self.format, self.results, code, error)
        if text is not None:
            click.echo(text)
        for problem in report.write_files(self.junit, self.summary, self.results, code, error):
            _notify(f"warning: could not write a report: {problem}")


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
    from .plan.settings import duration_problem

    text = text if not text.isdigit() else f"{text}ms"
    problem = duration_problem(text)
    if problem is not None:
        raise click.BadParameter(problem, param=param)
    return text


def _announce(plan: Any) -> None:
    click.echo(f"sqlplan: plan {plan.name}, fingerprint {plan.short_fingerprint}", err=True)


def _run_files(paths: tuple[str, ...]) -> list[str]:
    """The plans to run (connect/early.py's plan_files); a usage error when there are none."""
    from .connect.early import plan_files

    files = plan_files(paths, os.getcwd())
    if not files:
        _fail(SqlPlanError(f"no plan files (*.yaml, *.yml) in {', '.join(paths)}"), ExitCode.USAGE)
    return files


def _configured_pooler() -> bool:
    """Whether the URL `run` would use (flag aside) names a transaction pooler; read, never
    connected to. A URL that does not parse is `run`'s business, not `check`'s."""
    from .connect.target import resolve_target

    try:
        target = resolve_target(None, os.environ, Path.cwd())
    except SqlPlanError:
        return False
    return target is not None and target.pooler


def _pooler_warnings(target: Any, plans: list[tuple[Any, dict[str, object]]]) -> None:
    """Before a run through a transaction pooler: what in the plans it breaks, at its line."""
    if not target.pooler:
        return
    if target.options:
        _notify(
            "warning: options= goes to the server as a startup parameter, which a transaction "
            "pooler refuses (Neon's) or ignores: give the plan lock_timeout and "
            "statement_timeout instead, set with SET LOCAL in each step's transaction"
        )
    from .review.pooler import POOLER_CODES
    from .review.warnings import warnings

    for plan, _ in plans:
        for diagnostic in warnings(plan, pooler=True):
            if diagnostic.code in POOLER_CODES:
                click.echo(str(diagnostic), err=True)


def _close_quietly(con: Any) -> None:
    # The server may already be gone; closing must not mask the real result.
    from .connect.connection import close

    close(con)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option(
    "--format",
    "report_format",
    type=click.Choice(CHECK_FORMATS),
    default="text",
    show_default=True,
    help="text: file:line:col: severity: message [code]; json: one document; github: workflow commands that annotate a pull request.",
)
@click.option("--strict", is_flag=True, help="Warnings fail the check too.")
@click.option(
    "--pooler/--no-pooler",
    default=None,
    help="Also flag what a transaction-mode pooler breaks (session SET, session advisory locks, LISTEN, temporary tables across transactions, PREPARE) [default: when DATABASE_URL names one: Neon's -pooler host, or pgbouncer=true].",
)
@_pg_version_option
@_teach(
    [
        "sqlplan check",
        "sqlplan check plans/ migrations/add_index.yaml --strict --format github",
    ],
    [
        (0, "no problems"),
        (1, "problems found (errors; with --strict, warnings too)"),
        (2, "usage error"),
    ],
)
def check(
    paths: tuple[str, ...],
    report_format: str,
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
    from .errors import Diagnostic, PlanInvalid, Position
    from .output import check_report
    from .plan.cache import load_plan
    from .plan.validate import once_name_clashes
    from .review.warnings import warnings

    files = _run_files(paths or ("plans",))  # what `run` would run, no more, no less
    if pooler is None:
        pooler = _configured_pooler()
    found: list[Diagnostic] = []
    valid = []
    for file in files:
        try:
            plan = load_plan(file)
            valid.append(plan)
            found.extend(warnings(plan, pg_version, pooler=pooler))
        except PlanInvalid as e:
            found.extend(e.diagnostics)
            if e.partial is not None:  # the steps that are valid still get their warnings
                found.extend(warnings(e.partial, pg_version, pooler=pooler))
        except Exception as e:  # a bug: this file says so, the others keep their reports
            found.append(Diagnostic(Position(file, 1, 1), internal_error(e), "internal"))
    found.extend(once_name_clashes(valid))  # as `run` would refuse them, given these plans
    click.echo(check_report(report_format, files, found), nl=False)
    errors = sum(d.severity == "error" for d in found)
    count = len(found) - errors
    noun = "plan" if len(files) == 1 else "plans"
    summary = f"{len(files)} {noun} checked: {errors} error{'s' * (errors != 1)}, {count} warning{'s' * (count != 1)}"
    click.echo(summary, err=True)
    _exit(ExitCode.STEP_FAILED if errors or (strict and count) else ExitCode.OK)


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
@_pg_version_option
@_var_option
@_vars_option
@_teach(
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
    from .plan.cache import load_plan
    from .review.show import render

    try:
        from .plan.loading import bind_vars

        plan, _ = bind_vars(load_plan(plan_file), var, vars_files, required=False)
    except SqlPlanError as e:
        _fail(e)
    click.echo(render(plan, show_format, pg_version), nl=False)


@main.command()
@click.argument("plan_file", metavar="PLAN", type=click.Path(exists=True, dir_okay=False))
@_database_url_option
@_data_dir_option
@click.option(
    "--format",
    "report_format",
    type=click.Choice(("text", "markdown", "json")),
    default="text",
    show_default=True,
    help="markdown is ready for a pull-request comment; json follows schemas/rehearsal.schema.json.",
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
@_connect_retries_option
@_connect_timeout_option
@_pg_version_option
@_var_option
@_vars_option
@_teach(
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
    from .connect.connection import RetryPolicy, cancel, connect
    from .plan.cache import load_plan
    from .plan.sqlparse import non_transactional
    from .review.catalog import snapshot
    from .review.rehearsal import compare, render
    from .run import interrupts
    from .run.rehearse import rehearse as rehearse_plan

    try:
        from .plan.loading import bind_vars

        plan, values = bind_vars(load_plan(plan_file), var, vars_files)
    except SqlPlanError as e:
        _fail(e)
    refused = [
        (step, name)
        for step in plan.steps
        for statement in step.statements
        if (name := non_transactional(statement)) is not None
    ]
    if refused and not skip_non_transactional:
        listed = "\n".join(f"  {step.position}: {step.label}: {name}" for step, name in refused)
        click.echo(
            "sqlplan: error: these statements cannot run in a transaction block, so they cannot be "
            f"rehearsed:\n{listed}\nrehearse the rest with --skip-non-transactional",
            err=True,
        )
        _exit(ExitCode.STEP_FAILED)
    try:
        target = _target(database_url, data_dir)
        con = connect(target, RetryPolicy(connect_retries, connect_timeout), _notify)
    except SqlPlanError as e:
        _fail(e)
    # Connected: a first Ctrl-C or SIGTERM cancels the running statement and the report is
    # printed as far as it got; a second one stops at once. Either way nothing commits.
    interrupts.arm(lambda: cancel(target, con))
    try:
        result = rehearse_plan(
            plan,
            con,
            lock_timeout=lock_timeout,
            statement_timeout=statement_timeout,
            values=values,
            # what only the database knows (partitions, indexes, foreign keys, views), for
            # what the analysis says a statement "may" lock
            look=snapshot,
        )
    except SqlPlanError as e:
        _fail(e)
    except interrupts.Abandoned as e:
        sys.stdout.flush()
        click.echo(
            f"sqlplan: interrupted ({_signal_name(e.signum)}); the rehearsal was never committed: "
            "the server rolls it back as the connection closes",
            err=True,
        )
        _exit(ExitCode.TERMINATED if e.signum == signal.SIGTERM else ExitCode.INTERRUPTED)
    finally:
        _close_quietly(con)
    click.echo(render(result, report_format, pg_version), nl=False)
    if result.interrupted is not None:
        sys.stdout.flush()
        click.echo(
            f"sqlplan: interrupted ({_signal_name(result.interrupted)}); the rehearsal was rolled "
            "back, nothing was committed",
            err=True,
        )
        _exit(ExitCode.TERMINATED if result.interrupted == signal.SIGTERM else ExitCode.INTERRUPTED)
    findings = sum(len(row.differences) for row in compare(result, pg_version))
    _exit(ExitCode.OK if result.ok and not (strict and findings) else ExitCode.STEP_FAILED)


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
@_database_url_option
@_data_dir_option
@_connect_retries_option
@_connect_timeout_option
@_teach(
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

    from .connect.connection import RetryPolicy, connect
    from .errors import PlanInvalid
    from .plan.cache import load_plan
    from .run import history, wire

    files = _run_files(paths or ("plans",))
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
        target = _target(database_url, data_dir)
        con = connect(target, RetryPolicy(connect_retries, connect_timeout), _notify)
    except SqlPlanError as e:
        _fail(e)
    try:
        found = history.read(con, [p.name for p in plans if p.once])
    except (wire.ServerFailure, wire.ConnectionLost) as e:
        reason = (
            f"{e.fields.get('M', '')} [{e.fields.get('C', '')}]"
            if isinstance(e, wire.ServerFailure)
            else f"the connection was lost ({e})"
        )
        _fail(SqlPlanError(f"reading sqlplan.history failed: {reason}"))
    finally:
        _close_quietly(con)
    report = history.status(plans, found)
    if report_format == "json":
        click.echo(json.dumps({"version": 1, "plans": report}, indent=2))
    else:
        click.echo(history.status_text(report), nl=False)
    _exit(ExitCode.OK)


@main.command()
@_teach(
    [
        "sqlplan schema > plan.schema.json",
    ],
    [
        (0, "printed"),
    ],
)
def schema() -> None:
    """Print the plan format's JSON Schema (the file editors and CI can validate plans with)."""
    from .plan.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default="plans",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the plan.",
)
@click.option(
    "--once",
    is_flag=True,
    help="A plan that runs once per database (once: true), its file named with the time (YYYYMMDDHHMMSS_NAME.yaml) so that a directory runs in the order plans were made.",
)
@_teach(
    [
        "sqlplan new load-customers",
        "sqlplan new add-email-index --once --dir migrations",
    ],
    [
        (0, "written; its path is printed"),
        (2, "NAME is not a name, or the file exists"),
    ],
)
def new(name: str, directory: str, once: bool) -> None:
    """Write a commented plan skeleton to DIR/NAME.yaml, ready to edit, check and run.

    Its first line points editors at the plan format's JSON Schema: schemas/plan.schema.json
    when the project has one above DIR, else DIR/plan.schema.json, written once (sqlplan
    schema prints it again after an upgrade).
    """
    from .plan.skeleton import write_skeleton

    try:
        written = write_skeleton(name, Path(directory), once=once)
    except SqlPlanError as e:
        _fail(e, ExitCode.USAGE)
    if written.schema is not None:
        _notify(f"wrote {written.schema}, for editors")
    click.echo(str(written.path))


@main.group()
def db() -> None:
    """See and control the embedded PostgreSQL (used when no DATABASE_URL is set)."""


@db.command()
@_data_dir_option
@_teach(
    [
        "sqlplan db status",
        "sqlplan db status --data-dir /tmp/project/.sqlplan",
    ],
    [
        (0, "the server runs"),
        (3, "it is stopped (as pg_ctl status says)"),
        (4, "it was never created: no data directory (as pg_ctl status says)"),
    ],
)
def status(data_dir: str | None) -> None:
    """Show whether the embedded server runs, and where its data and socket are."""
    from .connect.embedded import EmbeddedServer

    info = EmbeddedServer(_state_dir(data_dir)).status()
    if info.running:
        click.echo(f"running (pid {info.pid})")
    else:
        click.echo(
            "stopped" if info.initialised else "not initialised (it is created on first use)"
        )
    click.echo(f"data:   {info.data_dir}")
    if info.socket_dir:
        click.echo(f"socket: {info.socket_dir}")
    click.echo(f"log:    {info.log}")
    _note_configured_url()
    # pg_ctl status's codes: 0 running, 3 not running, 4 no data directory
    _exit(
        ExitCode.OK
        if info.running
        else ExitCode.INVALID_PLAN
        if info.initialised
        else ExitCode.CONFIG
    )


@db.command()
@_data_dir_option
@_teach(
    [
        "sqlplan db start",
        'psql "$(sqlplan db start)"',
    ],
    [
        (0, "it runs; its URL is printed"),
        (5, "it could not start (the error says why)"),
    ],
)
def start(data_dir: str | None) -> None:
    """Start the embedded server (initialising it on first use) and print its URL."""
    from .connect.embedded import EmbeddedServer

    try:
        target = EmbeddedServer(_state_dir(data_dir)).ensure_running(_notify)
    except SqlPlanError as e:
        _fail(e)
    click.echo(target.url())


@db.command()
@_data_dir_option
@_teach(
    [
        "sqlplan db stop",
    ],
    [
        (0, "stopped, or was not running"),
        (5, "it could not be stopped"),
    ],
)
def stop(data_dir: str | None) -> None:
    """Stop the embedded server; its data stays for the next run."""
    from .connect.embedded import EmbeddedServer

    try:
        stopped = EmbeddedServer(_state_dir(data_dir)).stop()
    except SqlPlanError as e:
        _fail(e)
    click.echo("stopped" if stopped else "not running")


@db.command()
@_data_dir_option
@_database_url_option
@_teach(
    [
        "sqlplan db url",
        'psql "$(sqlplan db url)"',
    ],
    [
        (0, "printed"),
        (4, "configuration error (a malformed URL)"),
        (5, "the embedded server could not start"),
    ],
)
def url(data_dir: str | None, database_url: str | None) -> None:
    """Print the URL `sqlplan run` connects to, password masked.

    That is --database-url, DATABASE_URL or .env's DATABASE_URL when one is set; otherwise the
    embedded server's, which is started if it is not running (psql "$(sqlplan db url)" works).
    """
    try:
        target = _target(database_url, data_dir)
    except SqlPlanError as e:
        _fail(e)
    click.echo(target.url())


@db.command()
@_data_dir_option
@click.confirmation_option(prompt="Delete the embedded database and all its data?")
@_teach(
    [
        "sqlplan db destroy",
        "sqlplan db destroy --yes",
    ],
    [
        (0, "deleted, or there was nothing"),
        (1, "not confirmed"),
        (5, "it could not be stopped or deleted"),
    ],
)
def destroy(data_dir: str | None) -> None:
    """Stop the embedded server and delete its data."""
    from .connect.embedded import EmbeddedServer

    try:
        existed = EmbeddedServer(_state_dir(data_dir)).destroy()
    except SqlPlanError as e:
        _fail(e)
    click.echo("deleted" if existed else "nothing to delete")


def _note_configured_url() -> None:
    from .connect.target import resolve_target

    try:
        target = resolve_target(None, os.environ, Path.cwd())
    except SqlPlanError:
        return
    if target is not None:
        click.echo(
            f"note: {target.source} is set, so `sqlplan run` uses {target.url()}, not this server"
        )
