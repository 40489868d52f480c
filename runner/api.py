"""sqlplan as a library: load plans, check them, run them, and read what happened.

    import sqlplan

    result = sqlplan.run_plans(["plans/create_table.yaml"], database_url=url)
    if not result.ok:
        print(result.exit_code, result.error or [p.failure for p in result.plans])

Every function takes what the `sqlplan` command's options say, as Python values, and the
command is a thin layer over them: the same validation, the same run, the same result, which
every report (text, json, github, junit, summary) renders. What happened is returned, never
raised: a failing step, invalid plans, a refused connection are on the result, with the exit
code the command would give. Only `load_plans` raises (PlanInvalid), as a loader does.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import __version__
from .errors import (
    Diagnostic,
    ExitCode,
    PlanInvalid,
    Position,
    RunInterrupted,
    SqlPlanError,
    UsageError,
    internal_error,
)
from .events import Events
from .report import PlanResult, RunResult

if TYPE_CHECKING:
    from .connect.target import Target
    from .plan.model import Plan

__all__ = [
    "CheckResult",
    "Events",
    "LoadedPlan",
    "PlanResult",
    "RunResult",
    "check",
    "load_plans",
    "plan_files",
    "run_loaded",
    "run_plans",
]


class LoadedPlan(NamedTuple):
    """A valid plan with its vars bound, and the vars' values (bind parameters at run time)."""

    plan: Plan
    values: dict[str, object]


@dataclass
class CheckResult:
    """What `check` found in `files`: every diagnostic, errors and warnings, sorted by file."""

    files: list[str]
    diagnostics: list[Diagnostic]
    strict: bool = False

    @property
    def errors(self) -> int:
        return sum(d.severity == "error" for d in self.diagnostics)

    @property
    def warnings(self) -> int:
        return len(self.diagnostics) - self.errors

    @property
    def exit_code(self) -> ExitCode:
        """1 when there are errors, or with `strict` warnings; else 0."""
        failed = self.errors or (self.strict and self.warnings)
        return ExitCode.STEP_FAILED if failed else ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.exit_code == ExitCode.OK


def plan_files(paths: Sequence[str | os.PathLike[str]], cwd: str | None = None) -> list[str]:
    """The plan files `paths` name: files as given, a directory's *.yaml and *.yml files in
    name order. UsageError (exit 2) when there are none."""
    from .connect.early import plan_files as files_of

    named = [os.fspath(p) for p in paths]
    files = files_of(named, cwd or os.getcwd())
    if not files:
        raise UsageError(f"no plan files (*.yaml, *.yml) in {', '.join(named)}")
    return files


Vars = Mapping[str, object] | Sequence[str]


def _assignments(vars: Vars | None) -> tuple[str, ...]:
    """{name: value} as the command's --var name=value (a name never holds '='); strings are
    taken as they are, the last one of a name winning."""
    if vars is None:
        return ()
    if not isinstance(vars, Mapping):
        if isinstance(vars, str):
            raise TypeError("vars: a mapping of names to values, or a list of 'name=value'")
        return tuple(vars)
    found = []
    for name, value in vars.items():
        if "=" in name:
            raise ValueError(f"a var's name cannot hold '=': {name!r}")
        found.append(f"{name}={value}")
    return tuple(found)


def load_plans(
    paths: Sequence[str | os.PathLike[str]],
    *,
    vars: Vars | None = None,
    vars_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> list[LoadedPlan]:
    """Every plan `paths` name, validated (schema, PostgreSQL's parser, the plan's own rules)
    and its vars bound: from `vars` ({name: value}, or "name=value" strings), else `vars_files` (the last that has it), else the
    environment variable the var names (`environ`, default os.environ), else its default.
    PlanInvalid with every problem of every plan; UsageError when `paths` hold no plan."""
    from .plan.loading import load_all

    files = plan_files(paths)
    loaded = load_all(files, _assignments(vars), tuple(vars_files), environ)
    return [LoadedPlan(plan, values) for plan, values in loaded]


def run_plans(
    paths: Sequence[str | os.PathLike[str]],
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    vars: Vars | None = None,
    vars_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    pipeline: bool = True,
    keep_going: bool = False,
    allow_changed: bool = False,
    take_over: bool = False,
    lock_timeout: str | None = None,
    statement_timeout: str | None = None,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
    events: Events | None = None,
    handle_signals: bool = False,
    keep_output: bool = True,
) -> RunResult:
    """Validate every plan, then run them in order on one connection, as `sqlplan run` does.

    The database: `database_url`, else DATABASE_URL (`environ`, then ./.env), else the
    embedded PostgreSQL kept in `data_dir` (default ./.sqlplan), started if need be. A run
    stops at the first plan that fails unless `keep_going`. `lock_timeout` and
    `statement_timeout` are PostgreSQL durations ("5s") set in each step's transaction.
    `events` sees the run as it goes (the plans' output lines among it); each plan's lines
    are kept on its result too, unless not `keep_output` (a query of millions of rows). With
    `handle_signals` (the main thread only), Ctrl-C and SIGTERM cancel the running statement
    and the result says what committed, as the command does; without, they raise
    KeyboardInterrupt as usual, and the server rolls back what was not committed.
    """
    run = RunResult()
    try:
        loaded = load_plans(paths, vars=vars, vars_files=vars_files, environ=environ)
    except SqlPlanError as e:
        run.fail(e)
        return run
    return run_loaded(
        loaded,
        run,
        database_url=database_url,
        data_dir=data_dir,
        environ=environ,
        pipeline=pipeline,
        keep_going=keep_going,
        allow_changed=allow_changed,
        take_over=take_over,
        settings=_settings(lock_timeout, statement_timeout),
        connect_retries=connect_retries,
        connect_timeout=connect_timeout,
        events=events or Events(),
        handle_signals=handle_signals,
        keep_output=keep_output,
    )


def _settings(lock_timeout: str | None, statement_timeout: str | None) -> dict[str, str]:
    """The timeouts every step gets, as durations the plan format takes; ValueError else."""
    from .plan.settings import duration_problem

    found = {}
    for name, value in (("lock_timeout", lock_timeout), ("statement_timeout", statement_timeout)):
        if value is None:
            continue
        problem = duration_problem(value)
        if problem is not None:
            raise ValueError(f"{name}: {problem}")
        found[name] = value
    return found


def run_loaded(
    loaded: Sequence[LoadedPlan],
    run: RunResult | None = None,
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    pipeline: bool = True,
    keep_going: bool = False,
    allow_changed: bool = False,
    take_over: bool = False,
    settings: Mapping[str, str] | None = None,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
    events: Events | None = None,
    handle_signals: bool = False,
    keep_output: bool = True,
) -> RunResult:
    """run_plans for plans load_plans returned; `run` is the result to fill in."""
    from .run import interrupts

    events = events or Events()
    run = run if run is not None else RunResult()
    run.plans = [PlanResult(plan) for plan, _ in loaded]
    events.loaded(run)
    with interrupts.install() if handle_signals else nullcontext():
        try:
            con, target = _connected(
                loaded, database_url, data_dir, environ, connect_retries, connect_timeout, events
            )
        except SqlPlanError as e:
            run.fail(e)
            return run
        from .connect.connection import cancel
        from .run.plans import run_one  # imported while connecting

        # Connected: a first Ctrl-C or SIGTERM cancels the running statement, and the plan
        # stops where the server's answer says what committed; a second one stops at once.
        interrupts.arm(lambda: cancel(target, con))
        with _closing(con):
            for index, (_, values) in enumerate(loaded):
                result = run.plans[index]
                events.plan_started(result, index, len(loaded))
                started = time.monotonic()
                out = _Output(events, result.output if keep_output else None)
                run_one(
                    result, values, con, out, __version__, pipeline=pipeline,
                    allow_changed=allow_changed, take_over=take_over,
                    settings=dict(settings or {}), pooler=target.pooler,
                )  # fmt: skip
                failure = result.failure
                if result.status in ("ok", "failed"):
                    result.seconds = time.monotonic() - started
                if failure is not None and run.exit_code == ExitCode.OK:
                    run.exit_code = failure.exit_code
                events.plan_finished(result, index, len(loaded))
                if failure is not None and (
                    not keep_going
                    or getattr(failure, "connection_lost", False)
                    or isinstance(failure, RunInterrupted)
                ):
                    for rest in run.plans[index + 1 :]:
                        events.plan_not_run(rest)
                    break
    return run


class _Output:
    """A running plan's output: its lines kept on its result (`keep`), and told to `events`."""

    def __init__(self, events: Events, keep: list[str] | None) -> None:
        self.events, self.keep = events, keep
        self.progress, self.warning = events.progress, events.warning

    def line(self, text: str) -> None:
        if self.keep is not None:
            self.keep.append(text)
        self.events.line(text)


def _connected(  # noqa: PLR0917  (the run's options, passed on)
    loaded: Sequence[LoadedPlan],
    database_url: str | None,
    data_dir: str | None,
    environ: Mapping[str, str] | None,
    retries: int,
    timeout: float | None,
    events: Events,
) -> tuple[Any, Target]:
    """The run's connection, and where it goes; the pooler's warnings said first."""
    from .connect import early
    from .connect.connection import RetryPolicy, connect

    target = open_target(database_url, data_dir, environ, events.notice)
    if target.pooler:
        _pooler_warnings(target, loaded, events)
    # The plans are valid: a connection opened while sqlplan started logs in now, in the
    # background, while what running needs is imported (the driver with it).
    early.go(target)
    from .run import engine, history, plans, wire  # noqa: F401

    return connect(target, RetryPolicy(retries, timeout), events.notice), target


@contextmanager
def _closing(con: Any) -> Iterator[None]:
    from .connect.connection import close

    try:
        yield
    finally:
        close(con)  # the server may be gone: closing never masks the run's real result


def _pooler_warnings(target: Target, loaded: Sequence[LoadedPlan], events: Events) -> None:
    """Before a run through a transaction pooler: what in the plans it breaks, at its line."""
    if target.options:
        events.notice(
            "warning: options= goes to the server as a startup parameter, which a transaction "
            "pooler refuses (Neon's) or ignores: give the plan lock_timeout and "
            "statement_timeout instead, set with SET LOCAL in each step's transaction"
        )
    from .review.pooler import POOLER_CODES
    from .review.warnings import warnings

    for plan, _ in loaded:
        for diagnostic in warnings(plan, pooler=True):
            if diagnostic.code in POOLER_CODES:
                events.warning(diagnostic.position, diagnostic.message, diagnostic.code)


def state_dir(data_dir: str | None, environ: Mapping[str, str] | None = None) -> Path:
    """Where the embedded PostgreSQL keeps its state: `data_dir`, else $SQLPLAN_DATA_DIR,
    else ./.sqlplan."""
    from .connect.embedded import default_state_dir

    environ = os.environ if environ is None else environ
    return Path(data_dir) if data_dir else default_state_dir(Path.cwd(), environ)


def open_target(
    database_url: str | None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> Target:
    """Where to connect: `database_url`, else DATABASE_URL from `environ` or ./.env; else the
    embedded server, started if it is not running. ConfigError for a URL that cannot work."""
    from .connect.target import resolve_target

    environ = os.environ if environ is None else environ
    notify = notify or (lambda _: None)
    target = resolve_target(database_url, environ, Path.cwd())
    if target is None:
        from .connect.embedded import EmbeddedServer

        return EmbeddedServer(state_dir(data_dir, environ)).ensure_running(notify)
    for note in target.notes:  # a password file ignored, as libpq warns of it
        notify(f"warning: {note}")
    return target


def configured_pooler(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the URL a run would use (DATABASE_URL, ./.env) names a transaction pooler;
    read, never connected to. A URL that does not parse is the run's business."""
    from .connect.target import resolve_target

    try:
        target = resolve_target(None, os.environ if environ is None else environ, Path.cwd())
    except SqlPlanError:
        return False
    return target is not None and target.pooler


def check(
    paths: Sequence[str | os.PathLike[str]] = ("plans",),
    *,
    strict: bool = False,
    pooler: bool | None = None,
    pg_version: int | None = None,
) -> CheckResult:
    """Check plans without connecting, as `sqlplan check` does: everything a run validates,
    and the review's warnings (data loss, locks and rewrites, what a pooler breaks when
    `pooler`, by default when DATABASE_URL names one). A file with errors still gets the
    warnings of its valid steps. UsageError when `paths` hold no plan."""
    from .plan.cache import load_plan
    from .plan.validate import once_name_clashes
    from .review.warnings import warnings

    files = plan_files(paths)  # what a run would run, no more, no less
    if pooler is None:
        pooler = configured_pooler()
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
    found.extend(once_name_clashes(valid))  # as a run would refuse them, given these plans
    return CheckResult(files, found, strict)
