"""What sqlplan.history says of `once` plans, as `sqlplan status` reads it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..errors import PlanInvalid, SqlPlanError
from .loading import plan_files

if TYPE_CHECKING:
    from ..plan.model import Plan


def valid_plans(paths: Sequence[str | os.PathLike[str]]) -> list[Plan]:
    """The plans the paths name, without their vars bound; PlanInvalid with every problem of
    every file."""
    from ..plan.cache import load_plan

    problems = []
    plans = []
    for file in plan_files(paths):
        try:
            plans.append(load_plan(file))
        except PlanInvalid as e:
            problems.extend(e.diagnostics)
    if problems:
        raise PlanInvalid(problems)
    return plans


def history_status(
    paths: Sequence[str | os.PathLike[str]] = ("plans",),
    *,
    database_url: str | None = None,
    data_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    connect_retries: int = 3,
    connect_timeout: float | None = None,
    notify: Callable[[str], None] | None = None,
) -> list[dict[str, object]]:
    """Each plan's entry as schemas/status.schema.json describes it: applied, pending, changed
    since it was applied, running, or not a `once` plan. Reads sqlplan.history and changes
    nothing. PlanInvalid for invalid plans (nothing is sent); SqlPlanError if the history
    cannot be read (exit 1), or the errors of connecting."""
    from ..connect.connection import RetryPolicy, close, connect
    from ..connect.where import open_target
    from ..run import history, wire

    plans = valid_plans(paths)
    target = open_target(database_url, data_dir, environ, notify)
    con = connect(target, RetryPolicy(connect_retries, connect_timeout), notify)
    try:
        found = history.read(con, [p.name for p in plans if p.once])
    except (wire.ServerFailure, wire.ConnectionLost) as e:
        raise SqlPlanError(f"reading sqlplan.history failed: {wire.reason(e)}") from None
    finally:
        close(con)
    return history.status(plans, found)
