"""Running plans: the run, its events and its result, as `sqlplan run` does it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import SqlPlanError
from ..events import Events
from ..report import PlanResult, RunResult
from .loading import LoadedPlan, Vars, load_plans

if TYPE_CHECKING:
    from ..connect.target import Target
    from ..run.wire import Session


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
    from ..plan.settings import duration_problem

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
    from ..run import interrupts

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
        from ..connect.connection import cancel
        from ..run.plans import run_all  # imported while connecting

        # Connected: a first Ctrl-C or SIGTERM cancels the running statement, and the plan
        # stops where the server's answer says what committed; a second one stops at once.
        interrupts.arm(lambda: cancel(target, con))
        with _closing(con):
            run_all(
                run, [values for _, values in loaded], con, events, __version__,
                pipeline=pipeline, keep_going=keep_going, allow_changed=allow_changed,
                take_over=take_over, settings=dict(settings or {}), pooler=target.pooler,
                keep_output=keep_output,
            )  # fmt: skip
    return run


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
    from ..connect import early
    from ..connect.connection import RetryPolicy, connect
    from ..connect.where import open_target

    target = open_target(database_url, data_dir, environ, events.notice)
    if target.pooler:
        _pooler_warnings(target, loaded, events)
    # The plans are valid: a connection opened while sqlplan started logs in now, in the
    # background, while what running needs is imported (the driver with it).
    early.go(target)
    from ..run import engine, history, plans, wire  # noqa: F401

    return connect(target, RetryPolicy(retries, timeout), events.notice), target


@contextmanager
def _closing(con: Session) -> Iterator[None]:
    from ..connect.connection import close

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
    from ..review.pooler import POOLER_CODES
    from ..review.warnings import warnings

    for plan, _ in loaded:
        for diagnostic in warnings(plan, pooler=True):
            if diagnostic.code in POOLER_CODES:
                events.warning(diagnostic.position, diagnostic.message, diagnostic.code)
