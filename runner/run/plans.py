"""One plan from start to end on an open connection, as `run` runs each of its plans: the
history's claim for a `once` plan, the plan itself, the record of how it ended; what happened
goes on the plan's result, never raised."""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import HistoryRefused, SqlPlanError
from . import history, wire
from .engine import Record, run_plan
from .messages import Output


def run_one(
    result: Any,
    values: dict[str, object],
    con: wire.Session,
    out: Output,
    version: str,
    *,
    pipeline: bool,
    allow_changed: bool,
    take_over: bool,
    settings: dict[str, str],
    pooler: bool = False,
) -> None:
    """Run one plan on `con`, its messages to `out`: its `result` (report.PlanResult) says what
    happened. A `once` plan is claimed in sqlplan.history first (as sqlplan `version`) and
    recorded with its last step; a failure is recorded and the claim released."""
    plan = result.plan
    record = None
    claim = None
    try:
        if plan.once:
            claim = history.claim(
                con, plan, plan.path, version, allow_changed=allow_changed,
                take_over=take_over, pooler=pooler,
            )  # fmt: skip
            if claim.skip is not None:
                result.status, result.skipped = "skipped", claim.skip
                return
            assert claim.id is not None
            record = Record(
                history.SUCCEEDED,
                (claim.id,),
                look=f"SELECT outcome FROM sqlplan.history WHERE id = {claim.id}",
            )
        result.ledger = run_plan(
            plan, con, out, pipeline=pipeline, values=values, record=record, settings=settings
        )
        result.status = "ok"
        if claim is not None and claim.id is not None:
            # the end as it was: after the last step's commit (the record went with it)
            with contextlib.suppress(wire.ServerFailure, wire.ConnectionLost):
                history.finished(con, claim.id, pooler=pooler)
    except HistoryRefused as refused:
        result.status, result.failure = "refused", refused
    except SqlPlanError as e:
        result.status, result.failure = "failed", e
        result.ledger = getattr(e, "ledger", None)
        if claim is not None and claim.id is not None and not getattr(e, "connection_lost", False):
            with contextlib.suppress(Exception):
                history.failed(con, claim.id, e.message)
                if not pooler:
                    history.release(con, claim.id)
    except wire.ServerFailure as e:  # the history's own statements
        result.status = "failed"
        result.failure = SqlPlanError(
            f"plan {plan.name}: reading sqlplan.history failed: "
            f"{e.fields.get('M', '')} [{e.fields.get('C', '')}]"
        )
    except wire.ConnectionLost as e:
        result.status = "failed"
        result.failure = SqlPlanError(f"plan {plan.name}: the connection was lost ({e})")
        result.failure.connection_lost = True
