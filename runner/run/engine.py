"""Runs a validated plan's steps in order on one connection; emits output lines, never prints."""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import (
    ExitCode,
    RunInterrupted,
    StepFailed,
)
from ..plan.model import (
    AnyStep,
    Plan,
)
from ..plan.settings import in_force
from ..plan.sqlparse import closes_block, runs_in_a_block, transaction_kind
from . import interrupts, turns, wire
from .failures import (
    OPEN_ROLLED_BACK,
    OURS_ROLLED_BACK,
    RETRYABLE,
    lost_failure,
    roll_back,
    server_failure,
    step_failed,
)
from .fates import fate_of, settle, settle_lost
from .group import Around, LeadFailed, run_group
from .history import Flight
from .kinds import Vars, run_step
from .ledger import Fate, Ledger
from .messages import Output, render, report_warnings, take_notices
from .settings import reset_local, set_local


def run_plan(
    plan: Plan,
    con: wire.Session,
    out: Output,
    *,
    pipeline: bool = True,
    values: Mapping[str, object] | None = None,
    record: Record | None = None,
    flight: Flight | None = None,
    settings: Mapping[str, str] | None = None,
) -> Ledger:
    """Run every step; return the ledger of what the server confirmed. The first failure raises
    StepFailed (RunInterrupted for Ctrl-C or SIGTERM) after rolling back what it opened; its
    `ledger` says what committed, what did not, and what is in doubt.

    With `pipeline`, consecutive steps that need nothing from each other go in one round trip;
    the output and the outcome are the same either way.

    With `record`, its statement runs in the same transaction as the last step where it can
    (a `once` plan's history entry: see Record). With `flight`, a `once` plan's claim travels
    in the round trip of the first steps, and its record and end in that of the last ones
    (history.Flight); LeadFailed says that the claim was not made, and nothing ran.
    `settings` (--lock-timeout, ...) win over the plan's and yield to a step's own."""
    plan = in_force(plan, settings or {})
    ledger = Ledger(plan)
    state = Vars(
        dict(values or {}), captured=ledger.captured, rows=ledger.rows, backfills=ledger.backfills
    )
    try:
        _run_all(
            plan,
            con,
            out,
            ledger,
            pipeline=pipeline,
            state=state,
            record=record,
            flight=flight,
        )
    except StepFailed as failure:
        failure.ledger = ledger
        failure.ledger_lines = ledger.lines()
        failure.in_doubt = ledger.in_doubt
        if failure.in_doubt and not isinstance(failure, RunInterrupted):
            failure.exit_code = ExitCode.IN_DOUBT
        raise
    return ledger


@dataclass(frozen=True)
class Record:
    """A statement that records the plan's success: run in the same transaction as its last
    step where that transaction is one sqlplan can join ("inside": the plan's own block, which
    the last step commits; "wrapped": a last step of plain statements, put between BEGIN and
    COMMIT with it), else in a transaction of its own just after it ("after")."""

    sql: str
    params: tuple[object, ...]
    look: str  # a query that tells whether it was recorded, for a report in doubt


def _record_mode(step: AnyStep, status: bytes) -> str:
    if step.OWN_TRANSACTIONS:
        return "after"
    if status == b"T" and any(closes_block(s) for s in step.statements):
        return "after" if _undone(step) else "inside"
    if status == b"I" and runs_in_a_block(step.statements):
        return "wrapped"
    return "after"


def _undone(step: AnyStep) -> bool:
    """The step ends its transaction block without committing it (ROLLBACK, PREPARE
    TRANSACTION): a record sent inside the block would be undone with it."""
    closing = [s for s in step.statements if closes_block(s)]
    return bool(closing) and transaction_kind(closing[-1]) != "TRANS_STMT_COMMIT"


def _units(plan: Plan, pipeline: bool, last_alone: bool) -> list[tuple[AnyStep, ...]]:
    units: list[tuple[AnyStep, ...]] = (
        list(turns.groups(plan.steps)) if pipeline else [(s,) for s in plan.steps]
    )
    if last_alone and units and len(units[-1]) > 1:
        units[-1:] = [units[-1][:-1], units[-1][-1:]]
    return units


def _run_all(
    plan: Plan,
    con: wire.Session,
    out: Output,
    ledger: Ledger,
    *,
    pipeline: bool,
    state: Vars,
    record: Record | None = None,
    flight: Flight | None = None,
) -> None:
    if plan.on_connect:
        out.line(render(plan.on_connect, {}))
    opened_by: AnyStep | None = None  # the step that left a transaction block open
    lead = flight.lead() if flight is not None else []
    # A record goes with the last step alone, unless a flight's can go in its transaction.
    last_alone = record is not None or (
        flight is not None and not runs_in_a_block(plan.steps[-1].statements)
    )
    for group in _units(plan, pipeline, last_alone=last_alone):
        group = tuple(state.ready(plan, step) for step in group)  # noqa: PLW2901
        _stop_if_asked(group[0], ledger)
        ends = group[-1].number == plan.steps[-1].number
        last = record if record is not None and ends else None
        around = None
        if flight is not None:
            carries = pipeline and all(turns.travels_with_others(s) for s in group)
            if lead and not carries:
                _claim_alone(con, lead, flight)
                lead = []
            if ends and carries:  # the record in the last step's transaction, the end after it
                sql, params, look = flight.record()
                around = Around(lead, (sql, params), flight.finish_pieces())
                ledger.look[group[-1].number] = look
            elif ends:
                last = Record(*flight.record())  # as without a flight; the end after the run
            elif lead:
                around = Around(lead)
            lead = []
        attempt = 1
        while True:
            try:
                after = _run_unit(
                    plan, group, con, out, ledger, state=state, record=last, around=around
                )
                break
            except StepFailed as failure:
                if not _again(con, group, failure, attempt, out):
                    raise
                attempt += 1
                ledger.attempts[group[0].number] = attempt
                # its `before` line said what it was about to do: once is enough
                group = (dataclasses.replace(group[0], before=None),)  # noqa: PLW2901
            finally:
                if flight is not None and around is not None and around.lead:
                    flight.answered(around.answers)  # the claim's id, whatever came after
        if after == b"I":
            state.local.clear()
        opened_by = (opened_by or group[-1]) if after != b"I" else None
    ledger.running = None
    if state.record_after and opened_by is None:
        assert last is not None  # the last unit's record, which could not go with it
        _record_after(con, plan.steps[-1], last)
    if opened_by is None:
        _stop_if_asked(None, ledger)  # the last step ran despite a stop asked for during it
    if opened_by is not None:
        # Closing the connection would roll it back silently: the plan's work would vanish.
        roll_back(con)
        ledger.settle_open(Fate.ROLLED_BACK)
        raise step_failed(
            opened_by,
            f"{opened_by.label} opened a transaction that no later step committed; "
            "it was rolled back (end the plan with a COMMIT)",
        )


def _claim_alone(con: wire.Session, lead: list[wire.Piece], flight: Flight) -> None:
    """The claim in a round trip of its own: the first steps cannot carry it."""
    wire.track(con)
    try:
        answers = wire.pipeline(con, lead)
    except wire.PipelineFailure as failure:
        flight.answered(failure.outcomes)
        roll_back(con)
        raise LeadFailed(failure) from None
    flight.answered(answers)


def _timed(ledger: Ledger, group: Sequence[AnyStep], started: float) -> None:
    for step in group:
        ledger.seconds[step.number] = time.perf_counter() - started
        if len(group) > 1:
            ledger.shared.add(step.number)


def _run_unit(
    plan: Plan,
    group: tuple[AnyStep, ...],
    con: wire.Session,
    out: Output,
    ledger: Ledger,
    *,
    state: Vars,
    record: Record | None,
    around: Around | None = None,
) -> bytes:
    """One step, or steps that travel together, with what sqlplan adds around them: the
    settings in force (SET LOCAL), the record of a `once` plan with its last step, and a
    transaction of sqlplan's own to hold them; `around`: the claim, the record and the end
    sent with the steps in their round trip. Returns the transaction status after it."""
    status = wire.transaction_status(con)
    first = group[0]
    wire.track(con, first.number)  # what the server answers from here on belongs to this unit
    mode = _record_mode(first, status) if record is not None else None
    state.record_after = mode == "after"
    ours = (
        len(group) == 1
        and around is None
        and status == b"I"
        and runs_in_a_block(first.statements)
        and (bool(first.settings) or mode == "wrapped")
        and not first.OWN_TRANSACTIONS
    )
    alone = len(group) == 1 and around is None
    if alone and not first.OWN_TRANSACTIONS:
        try:
            _prelude(
                con,
                first,
                ledger,
                state,
                status,
                begin=ours,
                record=record if mode in ("inside", "wrapped") else None,
            )
        except interrupts.Abandoned as again:
            running = settle_lost(ledger, group, status, wire.current(con))
            raise _interrupted(
                running, ledger, again.signum, waited=False, silent=again.waited
            ) from None
    before = wire.transaction_status(con)
    started = time.perf_counter()
    ledger.running = first.number
    try:
        if alone:
            try:
                run_step(plan, first, con, out, state)
            finally:
                report_warnings(first, take_notices(con.notices), out)
        else:
            run_group(plan, group, con, out, ledger, state=state, around=around)
    except wire.ConnectionLost as lost:
        running = settle_lost(ledger, group, before, lost.progress)
        ledger.stopped(running)
        ledger.running = running.number
        raise lost_failure(running, lost, ledger.fates[running.number]) from None
    except interrupts.Abandoned as again:
        # a second Ctrl-C, or no answer to the cancel: no more waiting for the server; the
        # closing connection rolls back what is not committed
        running = settle_lost(ledger, group, before, wire.current(con))
        ledger.stopped(running)
        raise _interrupted(
            running, ledger, again.signum, waited=False, silent=again.waited
        ) from None
    except StepFailed as failure:
        failed = plan.steps[failure.step - 1] if failure.step else first
        _timed(ledger, [failed], started)
        if ours and failure.rolled_back == OPEN_ROLLED_BACK:
            failure.rolled_back = OURS_ROLLED_BACK
        # sqlplan rolled back what the failure left open; the failed step left nothing
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.set([failed], Fate.ROLLED_BACK)
        ledger.stopped(failed)
        ledger.running = failed.number
        if interrupts.requested() is not None:  # the cancel we asked for, or what it caused
            raise _interrupted(failed, ledger) from None
        raise
    _timed(ledger, group, started)
    if ours:
        _commit_ours(con, first, ledger)
    after = wire.transaction_status(con)
    settle(ledger, group, after, con)
    ledger.set([s for s in group if s.number in state.undone], Fate.ROLLED_BACK)
    return after


def _again(
    con: wire.Session, group: Sequence[AnyStep], failure: StepFailed, attempt: int, out: Output
) -> bool:
    """Whether to run the failed step again (its `retry`), after saying so and waiting."""
    step = group[0]
    retry = step.retry
    code = failure.server.sqlstate if failure.server is not None else None
    if (
        retry is None
        or step.OWN_TRANSACTIONS  # its batches retry themselves
        or len(group) != 1
        or attempt >= retry.attempts
        or code not in RETRYABLE
        or failure.connection_lost
        or isinstance(failure, RunInterrupted)
        or wire.transaction_status(con) != b"I"
    ):
        return False
    wait = retry.backoff * 2 ** (attempt - 1)
    out.warning(
        retry.position,
        f"{step.label} failed on {RETRYABLE[code]} [{code}] (attempt {attempt} of "
        f"{retry.attempts}), and was rolled back; running it again in {wait:g}s",
        "retry",
    )
    deadline = time.monotonic() + wait
    while (left := deadline - time.monotonic()) > 0:
        if interrupts.requested() is not None:
            return False  # stop asked for: the failure stands, and the run stops on it
        time.sleep(min(left, 0.05))
    return interrupts.requested() is None


def _prelude(
    con: wire.Session,
    step: AnyStep,
    ledger: Ledger,
    state: Vars,
    status: bytes,
    *,
    begin: bool,
    record: Record | None,
) -> None:
    """What goes before a step, in the transaction it runs in: BEGIN (a transaction of
    sqlplan's own), its settings as SET LOCAL, and a `once` plan's record."""
    if not (begin or step.settings or record or (status == b"T" and state.local)):
        return
    try:
        if step.settings:
            # Inside the plan's block, what an earlier step set and this one does not goes
            # back to its default first: each step sees its own settings and nothing else.
            names = {name for name, _ in step.settings}
            stale = state.local - names if status == b"T" else set()
            sql, params = set_local(step.settings)
            before = "BEGIN" if begin else (reset_local(stale) if stale else None)
            wire.extended(con, sql, [params], before=before, commits=False)
            if status == b"T":
                state.local.clear()
                state.local.update(names)
        elif begin:
            wire.simple(con, "BEGIN")
        elif status == b"T" and state.local:
            wire.simple(con, reset_local(state.local))
            state.local.clear()
        if record is not None:
            wire.extended(con, record.sql, [record.params], commits=False)
            ledger.look[step.number] = record.look  # whether it committed: whether it is recorded
    except wire.ServerFailure as failure:
        roll_back(con)
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        what = "recording the plan in sqlplan.history" if record is not None else "SET LOCAL"
        raise step_failed(
            step,
            f"{step.label} was not sent: {what} failed: "
            f"{failure.fields.get('M', '')} [{failure.fields.get('C', '')}]",
            rolled_back=OPEN_ROLLED_BACK if status != b"I" else None,
        ) from None
    except wire.ConnectionLost as lost:
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        raise lost_failure(step, lost, Fate.NOT_RUN) from None


def _commit_ours(con: wire.Session, step: AnyStep, ledger: Ledger) -> None:
    """COMMIT the transaction sqlplan opened for the step (with its record, if any)."""
    try:
        wire.simple(con, "COMMIT", commits=True)
    except wire.ServerFailure as failure:  # a deferred constraint, checked at COMMIT
        roll_back(con)
        ledger.set([step], Fate.ROLLED_BACK)
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        failed = server_failure(step, failure, False)
        failed.message = f"{step.label}: its COMMIT failed: {failure.fields.get('M', '')}"
        failed.sql_position = None
        failed.rolled_back = (
            "its transaction was rolled back: nothing it did was kept (what it printed above "
            "came before the COMMIT)"
        )
        raise failed from None
    except wire.ConnectionLost as lost:
        fate = fate_of(step, lost.progress.verdict(step.number))
        ledger.set([step], fate)
        ledger.settle_open(fate)
        ledger.running = step.number
        raise lost_failure(step, lost, fate) from None
    except interrupts.Abandoned as again:
        fate = fate_of(step, wire.current(con).verdict(step.number))
        ledger.set([step], fate)
        ledger.settle_open(fate)
        ledger.running = step.number
        raise _interrupted(step, ledger, again.signum, waited=False, silent=again.waited) from None


def _record_after(con: wire.Session, step: AnyStep, record: Record) -> None:
    """The record in a transaction of its own, once every step committed (the last step
    could not share one: it ends a block it did not open, or it cannot run in a block)."""
    wire.track(con)
    try:
        wire.extended(con, record.sql, [record.params])
    except (wire.ServerFailure, wire.ConnectionLost) as failure:
        reason = (
            f"{failure.fields.get('M', '')} [{failure.fields.get('C', '')}]"
            if isinstance(failure, wire.ServerFailure)
            else f"the connection was lost ({failure}); whether it was recorded is unknown: "
            f"look with {record.look}"
        )
        raise step_failed(
            step,
            "every step committed, but recording the plan in sqlplan.history failed: "
            f"{reason}. Until it is recorded, the next run runs the plan again; record it "
            f"with {record.sql.replace('$1', str(record.params[0]))}",
        ) from None


def _stop_if_asked(step: AnyStep | None, ledger: Ledger) -> None:
    """Between steps (`step`: the next one; None: the plan is done): a Ctrl-C or SIGTERM asked
    for a stop while nothing was running, so nothing needed cancelling."""
    signum = interrupts.requested()
    if signum is None:
        return
    if step is None:
        raise _stop(ledger.plan.steps[-1], ledger, signum, "once every step had run")
    raise _stop(step, ledger, signum, f"before {step.label}, which was not sent")


def _interrupted(
    step: AnyStep,
    ledger: Ledger,
    signum: int | None = None,
    *,
    waited: bool = True,
    silent: float | None = None,
) -> RunInterrupted:
    if waited:
        how = "the running statement was cancelled and what it had not committed rolled back"
    elif silent is not None:
        how = f"no answer came within {silent:g} s of the cancel request; stopped without it"
    else:
        how = "stopped at once, without the server's answer"
    signum = signum or interrupts.requested() or signal.SIGINT
    return _stop(step, ledger, signum, f"at {step.label}: {how}")


def _stop(step: AnyStep, ledger: Ledger, signum: int, what: str) -> RunInterrupted:
    interrupts.settled()
    ledger.settle_open(Fate.ROLLED_BACK)  # the connection closes: an open block rolls back
    return RunInterrupted(
        f"interrupted ({interrupts.name(signum)}) {what}",
        signum=signum,
        position=step.position,
        sql=step.sql.text,
        step=step.number,
    )
