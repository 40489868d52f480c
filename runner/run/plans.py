"""One plan from start to end on an open connection, as `run` runs each of its plans: the
history's claim for a `once` plan, the plan itself, the record of how it ended; what happened
goes on the plan's result, never raised."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from ..errors import ExitCode, HistoryRefused, RunInterrupted, SqlPlanError
from . import history, wire
from .engine import Record, run_plan
from .group import LeadFailed
from .messages import Output


def run_all(
    run: Any,
    values: Sequence[dict[str, object]],
    con: wire.Session,
    events: Any,
    version: str,
    *,
    pipeline: bool,
    keep_going: bool,
    allow_changed: bool,
    take_over: bool,
    settings: dict[str, str],
    pooler: bool,
    keep_output: bool,
) -> None:
    """Run's plans in order on `con` (`run`: a report.RunResult whose plans are listed, with
    each plan's `values`), told to `events` (events.Events) as they go; the first failure
    stops the rest unless `keep_going` (never a lost connection or a stop asked for)."""
    known = read_many(con, [result.plan for result in run.plans])
    for index, result in enumerate(run.plans):
        events.plan_started(result, index, len(run.plans))
        started = time.monotonic()
        out = _Output(events, result.output if keep_output else None)
        run_one(
            result, values[index], con, out, version, pipeline=pipeline,
            allow_changed=allow_changed, take_over=take_over, settings=dict(settings),
            pooler=pooler, entries=known.get(result.plan.name),
        )  # fmt: skip
        failure = result.failure
        if result.status in ("ok", "failed"):
            result.seconds = time.monotonic() - started
        if failure is not None and run.exit_code == ExitCode.OK:
            run.exit_code = failure.exit_code
        events.plan_finished(result, index, len(run.plans))
        if failure is not None and (
            not keep_going
            or getattr(failure, "connection_lost", False)
            or isinstance(failure, RunInterrupted)
        ):
            for rest in run.plans[index + 1 :]:
                events.plan_not_run(rest)
            break


class _Output:
    """A running plan's output: its lines kept on its result (`keep`), and told to `events`."""

    def __init__(self, events: Any, keep: list[str] | None) -> None:
        self.events, self.keep = events, keep
        self.progress, self.warning = events.progress, events.warning

    def line(self, text: str) -> None:
        if self.keep is not None:
            self.keep.append(text)
        self.events.line(text)


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
    entries: list[history.Entry] | None = None,
) -> None:
    """Run one plan on `con`, its messages to `out`: its `result` (report.PlanResult) says what
    happened. A `once` plan is claimed in sqlplan.history first (as sqlplan `version`) and
    recorded with its last step; a failure is recorded and the claim released. `entries`: the
    plan's history, where it was read with other plans' (read_many): a plan it shows applied
    is skipped without a word to the server."""
    plan = result.plan
    flight: history.Flight | None = None
    claim_id: int | None = None
    try:
        if plan.once and entries:
            known = history.decide(
                plan, plan.path, entries, allow_changed=allow_changed, take_over=take_over,
                pooler=pooler,
            )  # fmt: skip
            if known is not None:
                result.status, result.skipped = "skipped", known.skip
                return
        if plan.once:
            flight = history.Flight(plan, plan.path, version, pooler)
            try:
                result.ledger = run_plan(
                    plan, con, out, pipeline=pipeline, values=values, flight=flight,
                    settings=settings,
                )  # fmt: skip
            except LeadFailed as lead:
                # nothing of the plan ran: the history decides what happens
                claim = _decided(lead, flight, allow_changed=allow_changed, take_over=take_over)
                if claim is None:  # the whole path: the table made or updated, a take-over
                    claim = history.claim(
                        con, plan, plan.path, version, allow_changed=allow_changed,
                        take_over=take_over, pooler=pooler,
                    )  # fmt: skip
                if claim.skip is not None:
                    result.status, result.skipped = "skipped", claim.skip
                    return
                assert claim.id is not None
                claim_id, flight = claim.id, None
                record = Record(
                    history.SUCCEEDED,
                    (claim.id,),
                    look=f"SELECT outcome FROM sqlplan.history WHERE id = {claim.id}",
                )
                result.ledger = run_plan(
                    plan, con, out, pipeline=pipeline, values=values, record=record,
                    settings=settings,
                )  # fmt: skip
        else:
            result.ledger = run_plan(
                plan, con, out, pipeline=pipeline, values=values, settings=settings
            )
        result.status = "ok"
        claim_id = flight.id if flight is not None else claim_id
        if claim_id is not None and not (flight is not None and flight.finished):
            # the end as it was: after the last step's commit (the record went with it)
            with contextlib.suppress(wire.ServerFailure, wire.ConnectionLost):
                history.finished(con, claim_id, pooler=pooler)
    except HistoryRefused as refused:
        result.status, result.failure = "refused", refused
    except SqlPlanError as e:
        result.status, result.failure = "failed", e
        result.ledger = getattr(e, "ledger", None)
        claim_id = flight.id if flight is not None else claim_id
        if claim_id is not None and not getattr(e, "connection_lost", False):
            with contextlib.suppress(Exception):
                history.failed(con, claim_id, e.message)
                if not pooler:
                    history.release(con, claim_id)
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


# What a claim's failure in the flight means: the guard's (the plan applied, running or
# changed: its entries decide), or a history table missing or from an older sqlplan.
_OLD_OR_MISSING = {"42P01", "42703", "3F000"}


def _decided(
    lead: LeadFailed, flight: history.Flight, *, allow_changed: bool, take_over: bool
) -> history.Claim | None:
    """The claim the flight's answers decide (a skip; HistoryRefused is raised), or None when
    it takes the whole path; any other failure of the history's statements is raised."""
    failure = lead.failure
    if flight.refused_by_guard(failure.index) and flight.entries is not None:
        return history.decide(
            flight.plan, flight.path, flight.entries, allow_changed=allow_changed,
            take_over=take_over, pooler=flight.pooler,
        )  # fmt: skip
    if failure.fields.get("C") in _OLD_OR_MISSING:
        return None
    raise failure


def read_many(con: wire.Session, plans: Sequence[Any]) -> dict[str, list[history.Entry]]:
    """The history of a run's `once` plans in one round trip, where there are several: those
    applied are skipped without another. One plan's is read in the flight that applies it."""
    names = [plan.name for plan in plans if plan.once]
    if len(names) < 2:
        return {}
    # on a failure, each plan's own flight reads it again (and reports what went wrong)
    with contextlib.suppress(wire.ServerFailure, wire.ConnectionLost):
        return history.read(con, names)
    return {}
