"""Rehearsing a plan: run in one transaction that is rolled back, as `sqlplan rehearse` does."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from ..errors import SqlPlanError
from .loading import Vars, _assignments

if TYPE_CHECKING:
    from ..run.rehearse import Rehearsal


class NotRehearsable(SqlPlanError):
    """The plan holds statements that cannot run in a transaction block (CREATE INDEX
    CONCURRENTLY, VACUUM, ...), and `skip_non_transactional` was not given."""


def rehearse(
    path: str | os.PathLike[str],
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    vars: Vars | None = None,
    vars_files: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    lock_timeout: str = "2s",
    statement_timeout: str = "60s",
    skip_non_transactional: bool = False,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
    notify: Callable[[str], None] | None = None,
    handle_signals: bool = False,
    review: Any = None,
) -> Rehearsal:
    """Run the plan in one transaction and roll it back: for each statement, the locks it
    took, the tables it rewrote, rows and time (`Rehearsal.statements`), and whether all ran
    (`.ok`). Nothing is committed, even if the process dies. A statement that would wait
    longer than `lock_timeout` for a lock is reported with who holds it. PlanInvalid,
    NotRehearsable, and the errors of connecting are raised; with `handle_signals`, Ctrl-C
    cancels the running statement and `.interrupted` says so."""
    from ..connect.connection import RetryPolicy, cancel, close, connect
    from ..connect.where import open_target
    from ..plan.cache import load_plan
    from ..plan.loading import bind_vars
    from ..plan.sqlparse import non_transactional
    from ..review.catalog import snapshot
    from ..run import interrupts
    from ..run.rehearse import rehearse as rehearse_plan

    plan, values = bind_vars(
        load_plan(os.fspath(path)), _assignments(vars), tuple(vars_files), environ=environ
    )
    refused = [
        f"  {step.position}: {step.label}: {name}"
        for step in plan.steps
        for statement in step.statements
        if (name := non_transactional(statement)) is not None
    ]
    if refused and not skip_non_transactional:
        listed = "\n".join(refused)
        raise NotRehearsable(
            "these statements cannot run in a transaction block, so they cannot be rehearsed:"
            f"\n{listed}\nrehearse the rest with --skip-non-transactional"
        )
    with interrupts.install() if handle_signals else nullcontext():
        target = open_target(database_url, data_dir, environ, notify)
        con = connect(target, RetryPolicy(connect_retries, connect_timeout), notify)
        # Connected: a first Ctrl-C or SIGTERM cancels the running statement and the report
        # goes as far as it got; a second one stops at once. Either way nothing commits.
        interrupts.arm(lambda: cancel(target, con))
        try:
            result = rehearse_plan(
                plan,
                con,
                lock_timeout=lock_timeout,
                statement_timeout=statement_timeout,
                values=values,
                # what only the database knows (partitions, indexes, foreign keys, views),
                # for what the analysis says a statement "may" lock; and its tables' sizes
                look=snapshot,
            )
            result.review = review  # the config file's thresholds, under the plan's own
            return result
        finally:
            close(con)
