"""One target of a rollout, on a thread of its own: connect, run the plans as `sqlplan run`
does on one database (run/plans.run_all: the history, the ledger, what committed), close. Or,
for the pre-flight, rehearse every plan it has not applied in one transaction that is rolled
back, each plan seeing what the ones before it did."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from ..errors import ExitCode, HistoryRefused, Position, RunInterrupted, SqlPlanError
from ..events import Events
from ..run import interrupts

if TYPE_CHECKING:
    from .results import TargetResult

# Seconds a target's connection waits, once closed, for the server to close its end: the slot
# is free for the next target only once the server no longer counts the connection, so that
# --parallel N holds on the server's side too (pg_stat_activity), not only on ours.
LINGER = 2.0


class _Told(Events):
    """A target's warnings and notices, kept on its result: the rollout shows them once the
    target is over, so that two targets' lines never mix."""

    def __init__(self, target: TargetResult) -> None:
        self.target = target

    def notice(self, text: str) -> None:
        self.target.notices.append(text)

    def warning(self, position: Position, message: str, code: str) -> None:
        self.target.warnings.append((position, message, code))


def _connect(slot: Any, pool: Any) -> tuple[Any, Any]:
    """The target's connection (and its connect.target.Target), or (None, None) with its
    result saying why."""
    from ..connect.connection import RetryPolicy, close, connect
    from ..connect.target import parse_target

    target, options = slot.target, pool.options
    try:
        pg = parse_target(
            target.target.url, source=f"target {target.target.name}", environ=os.environ
        )
        for note in pg.notes:
            target.notices.append(f"warning: {note}")
        con = connect(
            pg, RetryPolicy(options.connect_retries, options.connect_timeout), target.notices.append
        )
    except SqlPlanError as e:
        target.run.fail(e)
        return None, None
    if not pool.opened(slot, con, pg) or interrupts.requested() is not None:
        pool.closing(slot)
        close(con)
        _stopped_before(target)
        return None, None
    return con, pg


def _stopped_before(target: TargetResult) -> None:
    """Asked to stop while it connected: nothing was sent."""
    signum = interrupts.requested() or interrupts.DEADLINE
    if signum == interrupts.DEADLINE:
        target.run.fail(SqlPlanError("its deadline passed while it connected; nothing was sent"))
    else:
        target.status = "stopped"
        target.why = f"stopped ({interrupts.name(signum)}) while it connected; nothing was sent"


def run_target(slot: Any, pool: Any) -> None:
    from ..connect.connection import close
    from ..run.plans import run_all

    con, pg = _connect(slot, pool)
    if con is None:
        return
    options, target = pool.options, slot.target
    try:
        run_all(
            target.run, [values for _, values in pool.loaded], con, _Told(target), pool.version,
            pipeline=options.pipeline, keep_going=False, allow_changed=options.allow_changed,
            take_over=options.take_over, settings=options.settings, pooler=pg.pooler,
            keep_output=options.keep_output,
        )  # fmt: skip
    finally:
        close(con, LINGER)
        pool.closing(slot)


def rehearse_target(slot: Any, pool: Any) -> None:
    """Every plan the target has not applied, rehearsed in one transaction, rolled back:
    `rehearsal` says "ok", or which plan and step would fail, and why."""
    from ..connect.connection import close
    from ..run import history, wire
    from ..run.rehearse import RehearsalError, rehearse

    con, pg = _connect(slot, pool)
    target, options = slot.target, pool.options
    if con is None:
        failure = target.run.error
        target.rehearsal = f"not rehearsed: {failure.message if failure else target.why}"
        return
    settings = options.settings
    try:
        names = [plan.name for plan, _ in pool.loaded if plan.once]
        entries = history.read(con, names) if names else {}
        wire.simple(con, "BEGIN")
        for plan, values in pool.loaded:
            if plan.once and entries.get(plan.name):
                try:
                    claim = history.decide(
                        plan, plan.path, entries[plan.name], allow_changed=options.allow_changed,
                        take_over=options.take_over, pooler=pg.pooler,
                    )  # fmt: skip
                except HistoryRefused as refused:
                    target.rehearsal = (
                        f"plan {plan.name}: refused by its history: {refused.message}"
                    )
                    return
                if claim is not None and claim.skip is not None:
                    continue  # applied: the run skips it
            done = rehearse(
                plan, con, values=values, within=True,
                lock_timeout=settings.get("lock_timeout", "2s"),
                statement_timeout=settings.get("statement_timeout", "60s"),
            )  # fmt: skip
            if done.interrupted is not None:
                target.rehearsal = f"interrupted ({interrupts.name(done.interrupted)})"
                return
            if not done.ok:
                bad = next(s for s in done.statements if s.status not in ("ran", "not rehearsed"))
                step = plan.steps[bad.step - 1]
                target.rehearsal = (
                    f"{step.position}: plan {plan.name}, {step.label}: {bad.status}: {bad.detail}"
                )
                return
        target.rehearsal = "ok"
    except (RehearsalError, wire.ServerFailure, wire.ConnectionLost) as e:
        said = getattr(e, "fields", {}).get("M") or getattr(e, "message", None) or str(e)
        target.rehearsal = f"the rehearsal failed: {said}"
    finally:
        with contextlib.suppress(Exception):
            if wire.transaction_status(con) != b"I":
                wire.simple(con, "ROLLBACK")
        close(con, LINGER)
        pool.closing(slot)


def settle(target: TargetResult) -> None:
    """A target's status, from what its run says (once its thread is over)."""
    if target.status != "not run":
        return  # said already: stopped before it began, or unknown
    run = target.run
    failures = [r.failure for r in run.plans if r.failure is not None]
    if run.error is not None:
        failures.insert(0, run.error)
    if not failures:
        if any(r.status == "ok" for r in run.plans):
            target.status = "applied"
        elif run.plans and all(r.status == "skipped" for r in run.plans):
            target.status, target.why = "skipped", "every plan was applied before"
        return
    first = failures[0]
    if isinstance(first, RunInterrupted) and first.signum != interrupts.DEADLINE:
        target.status = "stopped"
    elif first.exit_code == ExitCode.IN_DOUBT or getattr(first, "in_doubt", False):
        target.status = "in doubt"
    elif isinstance(first, HistoryRefused) and first.unfinished:
        target.status = "in doubt"
        target.why = "a run before this one never said how it ended: --take-over runs it again"
    elif first.exit_code == ExitCode.UNFINISHED:
        target.status = "unfinished"
    else:
        target.status = "failed"
    if target.timed_out and target.why is None:
        target.why = "its deadline passed: it was stopped"
    if target.why is None:
        target.why = first.message.splitlines()[0] if first.message else None
