"""Runs a validated plan's steps in order on one connection; emits output lines, never prints."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import secrets
from ..errors import (
    ExitCode,
    ExpectationFailed,
    Position,
    RunInterrupted,
    ServerError,
    StepFailed,
)
from ..plan.files import SourceError
from ..plan.model import (
    BULK_CHUNK_ROWS,
    AnyStep,
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    Message,
    Plan,
    QueryStep,
)
from ..plan.settings import in_force
from ..plan.sqlparse import block_open_after, closes_block, runs_in_a_block
from ..plan.templates import param_values
from ..plan.vars import bind_step
from . import captures, expectations, interrupts, turns, wire
from .ledger import Fate, Ledger
from .sources import BulkRows, batched, with_last


class Output(Protocol):
    def line(self, text: str) -> None:
        """One line of the plan's own output."""

    def progress(self, label: str, done: int, total: int) -> None:
        """How far a bulk insert is; done == total once it is over."""

    def warning(self, position: Position, message: str, code: str) -> None:
        """A warning the server raised while a step ran."""


@dataclass
class _Vars:
    """The values of the plan's vars, and what its steps captured so far."""

    values: dict[str, object]
    captured: dict[str, object] = field(default_factory=dict)
    undone: set[int] = field(default_factory=set)  # steps whose expected error rolled them back
    rows: dict[int, int] = field(default_factory=dict)  # per step: rows affected or returned
    local: set[str] = field(default_factory=set)  # settings SET LOCAL in the plan's open block
    record_after: bool = False  # the last step could not take the record: it goes after it

    def ready(self, plan: Plan, step: AnyStep) -> AnyStep:
        """The step with what it refers to written in, just before it is sent."""
        if not step.uses and not self.captured:
            return step
        return bind_step(step, {**self.values, **self.captured}, plan.null_text)


def run_plan(
    plan: Plan,
    con: Any,
    out: Output,
    *,
    pipeline: bool = True,
    values: Mapping[str, object] | None = None,
    record: Record | None = None,
    settings: Mapping[str, str] | None = None,
) -> Ledger:
    """Run every step; return the ledger of what the server confirmed. The first failure raises
    StepFailed (RunInterrupted for Ctrl-C or SIGTERM) after rolling back what it opened; its
    `ledger` says what committed, what did not, and what is in doubt.

    With `pipeline`, consecutive steps that need nothing from each other go in one round trip;
    the output and the outcome are the same either way.

    With `record`, its statement runs in the same transaction as the last step where it can
    (a `once` plan's history entry: see Record). `settings` (--lock-timeout, ...) win over
    the plan's and yield to a step's own."""
    plan = in_force(plan, settings or {})
    ledger = Ledger(plan)
    state = _Vars(dict(values or {}), captured=ledger.captured, rows=ledger.rows)
    try:
        _run_all(
            plan,
            con,
            out,
            ledger,
            pipeline=pipeline,
            state=state,
            record=record,
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
    if status == b"T" and any(closes_block(s) for s in step.statements):
        return "inside"
    if status == b"I" and runs_in_a_block(step.statements):
        return "wrapped"
    return "after"


def _set_local(settings: Sequence[tuple[str, str]]) -> tuple[str, tuple[object, ...]]:
    """SET LOCAL of the settings, with the names and values as bind parameters."""
    sql = "SELECT " + ", ".join(
        f"set_config(${2 * i + 1}, ${2 * i + 2}, true)" for i in range(len(settings))
    )
    return sql, tuple(v for pair in settings for v in pair)


def _reset_local(names: Iterable[str]) -> str:
    """Undo earlier steps' SET LOCAL inside the plan's block, for a step without settings."""
    return "; ".join(f"SET LOCAL {name} TO DEFAULT" for name in sorted(names))


def _units(plan: Plan, pipeline: bool, last_alone: bool) -> list[tuple[AnyStep, ...]]:
    units: list[tuple[AnyStep, ...]] = (
        list(turns.groups(plan.steps)) if pipeline else [(s,) for s in plan.steps]
    )
    if last_alone and units and len(units[-1]) > 1:
        units[-1:] = [units[-1][:-1], units[-1][-1:]]
    return units


def _run_all(
    plan: Plan,
    con: Any,
    out: Output,
    ledger: Ledger,
    *,
    pipeline: bool,
    state: _Vars,
    record: Record | None = None,
) -> None:
    if plan.on_connect:
        out.line(_render(plan.on_connect, {}))
    opened_by: AnyStep | None = None  # the step that left a transaction block open
    for group in _units(plan, pipeline, last_alone=record is not None):
        group = tuple(state.ready(plan, step) for step in group)  # noqa: PLW2901
        _stop_if_asked(group[0], ledger)
        last = record if record is not None and group[-1].number == plan.steps[-1].number else None
        attempt = 1
        while True:
            try:
                after = _run_unit(plan, group, con, out, ledger, state=state, record=last)
                break
            except StepFailed as failure:
                if not _again(con, group, failure, attempt, out):
                    raise
                attempt += 1
                ledger.attempts[group[0].number] = attempt
                # its `before` line said what it was about to do: once is enough
                group = (dataclasses.replace(group[0], before=None),)  # noqa: PLW2901
        if after == b"I":
            state.local.clear()
        opened_by = (opened_by or group[-1]) if after != b"I" else None
    ledger.running = None
    if state.record_after and opened_by is None:
        assert record is not None
        _record_after(con, plan.steps[-1], record)
    if opened_by is None:
        _stop_if_asked(None, ledger)  # the last step ran despite a stop asked for during it
    if opened_by is not None:
        # Closing the connection would roll it back silently: the plan's work would vanish.
        _roll_back(con)
        ledger.settle_open(Fate.ROLLED_BACK)
        raise _step_failed(
            opened_by,
            f"{opened_by.label} opened a transaction that no later step committed; "
            "it was rolled back (end the plan with a COMMIT)",
        )


def _timed(ledger: Ledger, group: Sequence[AnyStep], started: float) -> None:
    for step in group:
        ledger.seconds[step.number] = time.perf_counter() - started
        if len(group) > 1:
            ledger.shared.add(step.number)


def _run_unit(
    plan: Plan,
    group: tuple[AnyStep, ...],
    con: Any,
    out: Output,
    ledger: Ledger,
    *,
    state: _Vars,
    record: Record | None,
) -> bytes:
    """One step, or steps that travel together, with what sqlplan adds around them: the
    settings in force (SET LOCAL), the record of a `once` plan with its last step, and a
    transaction of sqlplan's own to hold them. Returns the transaction status after it."""
    status = wire.transaction_status(con)
    first = group[0]
    wire.track(con, first.number)  # what the server answers from here on belongs to this unit
    mode = _record_mode(first, status) if record is not None else None
    state.record_after = mode == "after"
    ours = (
        len(group) == 1
        and status == b"I"
        and runs_in_a_block(first.statements)
        and (bool(first.settings) or mode == "wrapped")
    )
    if len(group) == 1:
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
            running = _settle_lost(ledger, group, status, wire.current(con))
            raise _interrupted(
                running, ledger, again.signum, waited=False, silent=again.waited
            ) from None
    before = wire.transaction_status(con)
    started = time.perf_counter()
    ledger.running = first.number
    try:
        if len(group) == 1:
            try:
                _run_step(plan, first, con, out, state)
            finally:
                _report_warnings(first, _take(con.notices), out)
        else:
            _run_group(plan, group, con, out, ledger, state=state)
    except wire.ConnectionLost as lost:
        running = _settle_lost(ledger, group, before, lost.progress)
        ledger.running = running.number
        raise _lost(running, lost, ledger.fates[running.number]) from None
    except interrupts.Abandoned as again:
        # a second Ctrl-C, or no answer to the cancel: no more waiting for the server; the
        # closing connection rolls back what is not committed
        running = _settle_lost(ledger, group, before, wire.current(con))
        raise _interrupted(
            running, ledger, again.signum, waited=False, silent=again.waited
        ) from None
    except StepFailed as failure:
        failed = plan.steps[failure.step - 1] if failure.step else first
        _timed(ledger, [failed], started)
        if ours and failure.rolled_back == _OPEN_ROLLED_BACK:
            failure.rolled_back = _OURS_ROLLED_BACK
        # sqlplan rolled back what the failure left open; the failed step left nothing
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.set([failed], Fate.ROLLED_BACK)
        ledger.running = failed.number
        if interrupts.requested() is not None:  # the cancel we asked for, or what it caused
            raise _interrupted(failed, ledger) from None
        raise
    _timed(ledger, group, started)
    if ours:
        _commit_ours(con, first, ledger)
    after = wire.transaction_status(con)
    _settle(ledger, group, after, con)
    ledger.set([s for s in group if s.number in state.undone], Fate.ROLLED_BACK)
    return after


_OPEN_ROLLED_BACK = "the open transaction was rolled back"
_OURS_ROLLED_BACK = "its transaction was rolled back: nothing it did was kept"
# Failures that roll back the whole transaction and may not happen again: a retry's cases.
RETRYABLE = {
    "55P03": "lock_timeout",
    "40P01": "a deadlock",
    "40001": "a serialization failure",
}


def _again(
    con: Any, group: Sequence[AnyStep], failure: StepFailed, attempt: int, out: Output
) -> bool:
    """Whether to run the failed step again (its `retry`), after saying so and waiting."""
    step = group[0]
    retry = step.retry
    code = failure.server.sqlstate if failure.server is not None else None
    if (
        retry is None
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
    con: Any,
    step: AnyStep,
    ledger: Ledger,
    state: _Vars,
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
            sql, params = _set_local(step.settings)
            before = "BEGIN" if begin else (_reset_local(stale) if stale else None)
            wire.extended(con, sql, [params], before=before, commits=False)
            if status == b"T":
                state.local.clear()
                state.local.update(names)
        elif begin:
            wire.simple(con, "BEGIN")
        elif status == b"T" and state.local:
            wire.simple(con, _reset_local(state.local))
            state.local.clear()
        if record is not None:
            wire.extended(con, record.sql, [record.params], commits=False)
            ledger.look[step.number] = record.look  # whether it committed: whether it is recorded
    except wire.ServerFailure as failure:
        _roll_back(con)
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        what = "recording the plan in sqlplan.history" if record is not None else "SET LOCAL"
        raise _step_failed(
            step,
            f"{step.label} was not sent: {what} failed: "
            f"{failure.fields.get('M', '')} [{failure.fields.get('C', '')}]",
            rolled_back=_OPEN_ROLLED_BACK if status != b"I" else None,
        ) from None
    except wire.ConnectionLost as lost:
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        raise _lost(step, lost, Fate.NOT_RUN) from None


def _commit_ours(con: Any, step: AnyStep, ledger: Ledger) -> None:
    """COMMIT the transaction sqlplan opened for the step (with its record, if any)."""
    try:
        wire.simple(con, "COMMIT", commits=True)
    except wire.ServerFailure as failure:  # a deferred constraint, checked at COMMIT
        _roll_back(con)
        ledger.set([step], Fate.ROLLED_BACK)
        ledger.settle_open(Fate.ROLLED_BACK)
        ledger.running = step.number
        failed = _failed(step, failure, False)
        failed.message = f"{step.label}: its COMMIT failed: {failure.fields.get('M', '')}"
        failed.sql_position = None
        failed.rolled_back = (
            "its transaction was rolled back: nothing it did was kept (what it printed above "
            "came before the COMMIT)"
        )
        raise failed from None
    except wire.ConnectionLost as lost:
        fate = _fate(step, lost.progress.verdict(step.number))
        ledger.set([step], fate)
        ledger.settle_open(fate)
        ledger.running = step.number
        raise _lost(step, lost, fate) from None
    except interrupts.Abandoned as again:
        fate = _fate(step, wire.current(con).verdict(step.number))
        ledger.set([step], fate)
        ledger.settle_open(fate)
        ledger.running = step.number
        raise _interrupted(step, ledger, again.signum, waited=False, silent=again.waited) from None


def _record_after(con: Any, step: AnyStep, record: Record) -> None:
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
        raise _step_failed(
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
    name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
    return RunInterrupted(
        f"interrupted ({name}) {what}",
        signum=signum,
        position=step.position,
        sql=step.sql.text,
        step=step.number,
    )


def _settle(ledger: Ledger, group: Sequence[AnyStep], after: bytes, con: Any) -> None:
    """A unit that succeeded: idle after it means committed (or rolled back, if it ended its
    block with ROLLBACK); inside a block means done but open."""
    if after != b"I":
        ledger.set(group, Fate.OPEN)
        return
    tags = getattr(con, "sqlplan_progress", wire.Progress()).tags
    ended = Fate.ROLLED_BACK if tags and tags[-1] == "ROLLBACK" else Fate.COMMITTED
    ledger.settle_open(ended)
    ledger.set(group, Fate.COMMITTED)


def _settle_lost(
    ledger: Ledger, group: Sequence[AnyStep], before: bytes, progress: wire.Progress
) -> AnyStep:
    """The connection broke during the unit: each of its steps' fate from what the server said
    of its own requests (wire.Progress attributes every answer to the request that caused it).
    Returns the step whose answer was awaited."""
    inside = before != b"I"
    running: AnyStep | None = None
    for step in group:
        fate = _fate(step, progress.verdict(step.number))
        if inside and not any(closes_block(s) for s in step.statements):
            # its work belongs to the open block, which dies with the connection
            fate = Fate.ROLLED_BACK if fate is not Fate.NOT_RUN else fate
        elif fate is Fate.COMMITTED and block_open_after(step.statements, inside):
            fate = Fate.ROLLED_BACK  # it opened a block that dies with the connection
        elif any(closes_block(s) for s in step.statements):
            ledger.settle_open(fate)  # the block it ends shares its fate
        ledger.set([step], fate)
        if running is None and fate is not Fate.COMMITTED:
            running = step
    ledger.settle_open(Fate.ROLLED_BACK)  # a block still open dies with the connection
    return running or group[-1]


def _fate(step: AnyStep, verdict: wire.Verdict) -> Fate:
    """A step's fate from what the server said of its own requests."""
    if verdict in (wire.Verdict.NOT_SENT, wire.Verdict.SKIPPED):
        return Fate.NOT_RUN
    if verdict is wire.Verdict.COMMITTED:
        return Fate.COMMITTED
    if verdict is not wire.Verdict.UNANSWERED:
        return Fate.ROLLED_BACK  # an error, a ROLLBACK, or no commit sent: nothing kept
    if isinstance(step, QueryStep) and _reads_only(step):
        return Fate.ROLLED_BACK  # a read: nothing to commit
    return Fate.IN_DOUBT


def _reads_only(step: AnyStep) -> bool:
    """A plain SELECT: nothing it does can be committed (a data-modifying WITH can)."""
    statement = step.statements[0]
    if statement.kind != "SelectStmt" or statement.node.get("intoClause"):
        return False
    return not re.search(r"\b(insert|update|delete|merge)\b", statement.text, re.IGNORECASE)


def _lost(step: AnyStep, lost: wire.ConnectionLost, fate: Fate) -> StepFailed:
    said = lost.server_said
    if said is not None:
        reason = (
            f"{said.get('V') or said.get('S', 'ERROR')}: {said.get('M', '')} [{said.get('C', '')}]"
        )
    else:
        reason = str(lost) or "network error"
    when = {
        Fate.COMMITTED: "once it had committed",
        Fate.IN_DOUBT: "after its commit was sent, before the answer came",
    }.get(fate, "before it committed")
    failed = _step_failed(
        step, f"{step.label}: the connection to the server was lost {when} ({reason})"
    )
    failed.connection_lost = True
    return failed


# Server messages below WARNING (NOTICE such as "table does not exist, skipping", INFO, LOG)
# are expected chatter; a WARNING ("there is no transaction in progress") deserves a look.
_WARNING_SEVERITIES = (b"WARNING",)


def _take(notices: Any) -> Iterator[dict[bytes, bytes]]:
    while notices:
        yield notices.popleft()


def _report_warnings(step: AnyStep, notices: Iterable[dict[bytes, bytes]], out: Output) -> None:
    for notice in notices:
        severity = notice.get(b"V") or notice.get(b"S")
        if severity in _WARNING_SEVERITIES:
            message = secrets.mask(notice.get(b"M", b"").decode("utf-8", "replace"))
            code = notice.get(b"C", b"01000").decode("ascii", "replace")
            out.warning(step.position, f"{step.label}: the server warns: {message}", code)


def _run_step(plan: Plan, step: AnyStep, con: Any, out: Output, state: _Vars) -> None:
    if isinstance(step, (ExecuteStep, QueryStep)) and (step.captures or step.expect):
        _run_checked(plan, step, con, out, state)  # checked before it commits
        return
    commits = _commits_itself(step, wire.transaction_status(con))
    try:
        _RUN_ALONE[step.kind](plan, step, con, out, state, commits=commits)
    except wire.ServerFailure as failure:
        rolled_back = _roll_back(con)
        raise _failed(step, failure, rolled_back) from None


def _batch_alone(
    plan: Plan, step: BatchStep, con: Any, out: Output, state: _Vars, *, commits: bool
) -> None:
    _print(out, step.before, {})
    wire.simple(con, step.sql.text, commits=commits, statements=len(step.statements))
    _print(out, step.after, {})


def _execute_alone(
    plan: Plan, step: ExecuteStep, con: Any, out: Output, state: _Vars, *, commits: bool
) -> None:
    fields = _before_fields(plan, step)
    _print(out, step.before, fields)
    outcome = wire.extended(con, step.sql.text, [step.params], commits=commits)
    state.rows[step.number] = max(outcome.row_count, 0)
    _print_count(out, step.after, step.after_no_rows, outcome.row_count, fields)


def _bulk_insert_alone(
    plan: Plan, step: BulkInsertStep, con: Any, out: Output, state: _Vars, *, commits: bool
) -> None:
    _run_bulk_insert(plan, step, con, out, state)


def _query_alone(
    plan: Plan, step: QueryStep, con: Any, out: Output, state: _Vars, *, commits: bool
) -> None:
    outcome = wire.extended(con, step.sql.text, [step.params], text_rows=True, commits=commits)
    state.rows[step.number] = len(outcome.rows)
    _show_query(plan, step, outcome, out)


# How each kind of step runs in a round trip of its own (the step, after its messages).
_RUN_ALONE: dict[str, Callable[..., None]] = {
    "batch": _batch_alone,
    "execute": _execute_alone,
    "bulk_insert": _bulk_insert_alone,
    "query": _query_alone,
}


def _commits_itself(step: AnyStep, status: bytes) -> bool:
    """Whether the step's own statements end the transaction its work is in: it runs outside
    any block (in an implicit transaction of its own) or ends the block it is in, and leaves
    none open."""
    inside = status != b"I"
    if block_open_after(step.statements, inside):
        return False
    return not inside or any(closes_block(s) for s in step.statements)


_SAVEPOINT = "sqlplan_expect"


def _run_checked(
    plan: Plan, step: ExecuteStep | QueryStep, con: Any, out: Output, state: _Vars
) -> None:
    """A step whose result is checked before it commits (its captures, its `expect`): outside
    a transaction block it runs in one of its own, BEGIN with the statement and COMMIT once the
    checks passed, so that a failed check keeps nothing of it. A negative test (`expect.error`)
    inside a block the plan opened runs under a savepoint, which its expected error rolls back
    while the block goes on."""
    ours, savepoint = _check_scope(con, step)
    expect = step.expect
    negative = expect is not None and expect.error is not None
    before = "BEGIN" if ours else (f"SAVEPOINT {_SAVEPOINT}" if savepoint else None)
    if isinstance(step, ExecuteStep):
        _print(out, step.before, _before_fields(plan, step))
    try:
        try:
            outcome = wire.extended(
                con, step.sql.text, [step.params], text_rows=True, before=before
            )
        except wire.ServerFailure as failure:
            if expect is not None and failure.fields.get("C") == expect.error:
                _undo(con, ours=ours, savepoint=savepoint)
                state.undone.add(step.number)
                if isinstance(step, ExecuteStep):
                    _print_count(out, step.after, step.after_no_rows, 0, _before_fields(plan, step))
                return
            raise
        count = len(outcome.rows) if isinstance(step, QueryStep) else max(outcome.row_count, 0)
        state.rows[step.number] = count
        expectations.check(step, count, outcome.columns, outcome.rows, plan.null_text)
        taken = captures.take(step, outcome.columns, outcome.rows)
        if ours:
            wire.simple(con, "COMMIT", commits=True)
    except wire.ServerFailure as failure:
        rolled_back = _roll_back(con)
        failed = _failed(step, failure, rolled_back and not ours)
        if negative:
            failed.message += f" (the plan expected {expect.error})"  # type: ignore[union-attr]
        raise failed from None
    except (captures.CaptureFailed, expectations.Unmet) as check:
        if savepoint:
            _undo(con, ours=False, savepoint=True)
        else:
            _roll_back(con)
        kept = (
            "its transaction was rolled back: nothing it did was kept"
            if ours or savepoint
            else "the open transaction was rolled back"
        )
        if isinstance(check, expectations.Unmet):
            raise ExpectationFailed(
                check.message,
                position=check.position,
                sql=step.sql.text,
                step=step.number,
                rolled_back=kept,
                difference=check.difference,
            ) from None
        raise _step_failed(step, check.message, position=check.position, rolled_back=kept) from None
    state.captured.update(taken)
    done = state.ready(plan, step)  # its own messages may use what it captured
    if isinstance(done, QueryStep):
        _show_query(plan, done, outcome, out)
    elif isinstance(done, ExecuteStep):
        _print_count(
            out, done.after, done.after_no_rows, outcome.row_count, _before_fields(plan, done)
        )


def _check_scope(con: Any, step: AnyStep) -> tuple[bool, bool]:
    """Where a step whose result is checked before it commits (expect, captures) runs: in a
    transaction of its own outside any block (`ours`), or, a negative test inside one, under
    a savepoint that its expected error rolls back while the block goes on. One rule for
    every kind that takes them."""
    ours = wire.transaction_status(con) == b"I"
    negative = step.expect is not None and step.expect.error is not None
    return ours, negative and not ours


def _undo(con: Any, *, ours: bool, savepoint: bool) -> None:
    """Roll back what a checked step did: its own transaction, or its savepoint."""
    if ours:
        wire.simple(con, "ROLLBACK")
    elif savepoint:
        wire.simple(con, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}; RELEASE SAVEPOINT {_SAVEPOINT}")


def _run_group(
    plan: Plan, group: Sequence[AnyStep], con: Any, out: Output, ledger: Ledger, *, state: _Vars
) -> None:
    """Steps that need nothing from each other's results, in one round trip (see turns.py)."""
    commit_each = wire.transaction_status(con) == b"I"
    pieces: list[wire.Piece] = []
    owners: list[tuple[int, int]] = []  # per piece: its step's index in the group, SQL offset
    separate = False
    for index, step in enumerate(group):
        # Alone, each step would commit at its own Sync; here the next step follows at once,
        # so each but the last is its own transaction block. An explicit BEGIN makes its
        # COMMIT one the server expects: no "there is no transaction in progress" warning.
        # A step with settings is one too: SET LOCAL holds until its COMMIT.
        separate = commit_each and (index < len(group) - 1 or bool(step.settings))
        number = step.number
        if separate:
            pieces.append(wire.Piece("BEGIN", quiet=True, owner=number))
            owners.append((index, 0))
        if not commit_each:
            for name in sorted(state.local - {n for n, _ in step.settings}):
                # one statement per piece: the extended protocol
                pieces.append(wire.Piece(_reset_local([name]), quiet=True, owner=number))
                owners.append((index, 0))
            state.local.clear()
        if step.settings:
            sql, params = _set_local(step.settings)
            pieces.append(wire.Piece(sql, (params,), quiet=True, owner=number))
            owners.append((index, 0))
            if not commit_each:
                state.local.update(name for name, _ in step.settings)
        for piece, offset in _pieces(step, con):
            pieces.append(dataclasses.replace(piece, owner=number))
            owners.append((index, offset))
        if separate:
            pieces.append(wire.Piece("COMMIT", quiet=True, owner=number, commits=True))
            owners.append((index, 0))
    failure: wire.PipelineFailure | None = None
    try:
        outcomes = wire.pipeline(con, pieces, commits=commit_each and not separate)
    except wire.PipelineFailure as e:
        failure, outcomes = e, e.outcomes
    if failure is None:  # the server did it all: each step committed, or is inside the block
        ledger.set(group, Fate.COMMITTED if commit_each else Fate.OPEN)
    failed_step, offset = owners[failure.index] if failure is not None else (len(group), 0)
    results: list[list[wire.Outcome]] = [[] for _ in group]
    for (index, _), piece, outcome in zip(owners, pieces, outcomes, strict=False):
        if not piece.quiet or index == failed_step:
            results[index].append(outcome)
    for index, step in enumerate(group[: failed_step + 1]):
        step_outcomes = results[index]
        _report_warnings(step, (n for o in step_outcomes for n in o.notices), out)
        if index == failed_step:
            assert failure is not None
            # each ended with its own COMMIT, or ran inside the block the failure rolls back
            ledger.set(group[:index], Fate.COMMITTED if commit_each else Fate.ROLLED_BACK)
            _print(out, step.before, _before_fields(plan, step))
            rolled_back = _roll_back(con)
            # Reported as the step alone would be: in its implicit transaction (nothing to
            # say), in one of sqlplan's own for its settings, or in the plan's open block.
            implicit = commit_each and not step.settings
            failed = _group_failure(step, failure, offset, rolled_back and not implicit)
            if commit_each and failed.rolled_back == _OPEN_ROLLED_BACK:
                failed.rolled_back = _OURS_ROLLED_BACK
            raise failed
        if not isinstance(step, BatchStep):
            state.rows[step.number] = (
                len(step_outcomes[0].rows)
                if isinstance(step, QueryStep)
                else max(step_outcomes[0].row_count, 0)
            )
        _print_outcome(plan, step, step_outcomes, out)


def _pieces(step: AnyStep, con: Any) -> Iterator[tuple[wire.Piece, int]]:
    """What a step sends inside a pipeline, each with its first character in the step's SQL."""
    return _PIECES[step.kind](step, con)


def _batch_pieces(step: BatchStep, con: Any) -> Iterator[tuple[wire.Piece, int]]:
    for statement in step.statements:
        yield wire.Piece(statement.text), statement.offset


def _execute_pieces(step: ExecuteStep, con: Any) -> Iterator[tuple[wire.Piece, int]]:
    yield wire.Piece(step.sql.text, (step.params,)), 0


def _bulk_insert_pieces(step: BulkInsertStep, con: Any) -> Iterator[tuple[wire.Piece, int]]:
    if step.copy_sql is not None:
        yield wire.Piece(step.copy_sql, copy=wire.copy_text(con, step.rows)), 0
    else:
        yield wire.Piece(step.sql.text, step.rows), 0


def _query_pieces(step: QueryStep, con: Any) -> Iterator[tuple[wire.Piece, int]]:
    yield wire.Piece(step.sql.text, (step.params,), rows=True), 0


# What each kind of step sends inside a pipeline.
_PIECES: dict[str, Callable[..., Iterator[tuple[wire.Piece, int]]]] = {
    "batch": _batch_pieces,
    "execute": _execute_pieces,
    "bulk_insert": _bulk_insert_pieces,
    "query": _query_pieces,
}


def _before_fields(plan: Plan, step: AnyStep) -> dict[str, str]:
    if isinstance(step, (ExecuteStep, QueryStep)):
        return param_values(step.params, plan.null_text)
    if isinstance(step, BulkInsertStep) and step.source is None:
        return {"rows": str(len(step.rows))}
    return {}


def _print_outcome(
    plan: Plan, step: AnyStep, outcomes: Sequence[wire.Outcome], out: Output
) -> None:
    """A step's messages, from what the server answered to its statements."""
    fields = _before_fields(plan, step)
    if isinstance(step, QueryStep):
        _show_query(plan, step, outcomes[0], out)
        return
    _print(out, step.before, fields)
    if isinstance(step, BatchStep):
        _print(out, step.after, fields)
    else:
        _print_count(out, step.after, step.after_no_rows, outcomes[0].row_count, fields)


def _group_failure(
    step: AnyStep, failure: wire.PipelineFailure, offset: int, rolled_back: bool
) -> StepFailed:
    fields = dict(failure.fields)
    position = fields.get("P", "")
    if offset and position.isdigit():
        fields["P"] = str(int(position) + offset)  # the statement's place in the step's SQL
    located = wire.ServerFailure(fields, failure.completed)
    row = None
    if isinstance(step, BulkInsertStep):
        row = _failed_row(located, BulkRows(step), 0, step.copy_sql is not None, False)
    return _failed(step, located, rolled_back, row)


def _run_bulk_insert(
    plan: Plan, step: BulkInsertStep, con: Any, out: Output, state: _Vars | None = None
) -> None:
    _print(out, step.before, _before_fields(plan, step))
    expect = step.expect
    # With an `expect`, the load is checked before it commits: in a transaction of its own, or
    # (a negative test inside the plan's block) under a savepoint.
    ours = savepoint = False
    if expect is not None:
        ours, savepoint = _check_scope(con, step)
        if ours or savepoint:
            wire.simple(con, "BEGIN" if ours else f"SAVEPOINT {_SAVEPOINT}")
    rows = BulkRows(step, end_marker=wire.csv_end_marker(con))
    label = step.label + (f" from {step.source.display}" if step.source else "")

    def report(_: int = 0) -> None:
        out.progress(label, *rows.progress())

    first_row = 0  # of the flight that failed
    whole_file = False
    alone = wire.transaction_status(con) == b"I"  # its own implicit transaction commits it
    try:
        if (
            step.copy_sql is not None
            and step.source is not None
            and step.source.is_whole_csv(step.width)
        ):
            # The file is PostgreSQL's CSV as it is: let the server parse it, as psql's \copy does.
            whole_file = True
            sql = f"{step.copy_sql} WITH {step.source.copy_options()}"
            outcome = wire.copy_in(
                con, sql, step.source.raw_chunks(rows.read_bytes), report, commits=alone
            )
            count = rows.count = outcome.row_count
        elif step.copy_sql is not None:
            text = wire.copy_text(con, rows)
            count = wire.copy_in(con, step.copy_sql, text, report, commits=alone).row_count
        else:
            count = 0
            flights = batched(rows, BULK_CHUNK_ROWS)
            first = next(flights, [])
            second = next(flights, None)
            # One flight is one implicit transaction; several need BEGIN and COMMIT around them.
            explicit = second is not None and wire.transaction_status(con) == b"I"
            # BEGIN rides with the first flight and COMMIT with the last: no turn of their own.
            chunks = with_last(itertools.chain([first], [second] if second else [], flights))
            for index, (chunk, last) in enumerate(chunks):
                begin = "BEGIN" if explicit and index == 0 else None
                commit = "COMMIT" if explicit and last else None
                interrupts.check()
                outcome = wire.extended(con, step.sql.text, chunk, before=begin, after=commit)
                count += max(outcome.row_count, 0)
                first_row += len(chunk)
                report()
        report()
    except wire.ServerFailure as failure:
        if expect is not None and failure.fields.get("C") == expect.error:
            _undo(con, ours=ours, savepoint=savepoint)
            if state is not None:
                state.undone.add(step.number)
            _print_count(out, step.after, step.after_no_rows, 0, {"rows": str(rows.count)})
            return
        _roll_back(con)
        copy = step.copy_sql is not None
        raise _failed(
            step, failure, True, _failed_row(failure, rows, first_row, copy, whole_file)
        ) from None
    except interrupts.Interrupted:
        _roll_back(con)
        raise _step_failed(step, f"{step.label} was interrupted") from None
    except SourceError as e:
        _roll_back(con)
        where = Position(
            step.source.display if step.source else step.sql.position.path, e.line, e.column
        )
        raise _step_failed(
            step,
            f"{step.label} failed: {e}",
            position=where,
            rolled_back="the transaction was rolled back: none of its rows were inserted",
        ) from None
    if expect is not None:
        try:
            expectations.check(step, count)
        except expectations.Unmet as unmet:
            if savepoint:
                _undo(con, ours=False, savepoint=True)
            else:
                _roll_back(con)
            raise ExpectationFailed(
                unmet.message,
                position=unmet.position,
                sql=step.sql.text,
                step=step.number,
                rolled_back="the transaction was rolled back: none of its rows were inserted",
                difference=unmet.difference,
            ) from None
        if ours:
            try:
                wire.simple(con, "COMMIT", commits=True)
            except wire.ServerFailure as failure:
                _roll_back(con)
                raise _failed(step, failure, True) from None
    if state is not None:
        state.rows[step.number] = count
    _print_count(out, step.after, step.after_no_rows, count, {"rows": str(rows.count)})


def _failed_row(
    failure: wire.ServerFailure, rows: BulkRows, first_row: int, copy: bool, whole_file: bool
) -> tuple[int, Position] | None:
    """(0-based index, where it is written) of the row the server failed on, if the error is
    about one row."""
    if "P" in failure.fields:
        return None  # an error with a position is about the statement, not one row's values
    if copy:
        match = re.search(r"COPY [^,]+, line (\d+)", failure.fields.get("W", ""))
        return rows.at_copy_line(int(match.group(1)), whole_file) if match else None
    index = first_row + failure.completed
    position = rows.position(index)
    return (index, position) if position is not None else None


def _show_query(plan: Plan, step: QueryStep, outcome: wire.Outcome, out: Output) -> None:
    params = param_values(step.params, plan.null_text)
    if step.row is not None:
        _check_columns(step, step.row, outcome.columns)
    summary = {**params, "count": str(len(outcome.rows))}
    _print(out, step.header, summary)
    if step.row is not None:
        for row in outcome.rows:
            values = {  # a row is the server's text: masked (secrets.py)
                name: plan.null_text if v is None else secrets.mask(str(v))
                for name, v in zip(outcome.columns, row, strict=True)
            }
            out.line(step.row.template.render({**params, **values}))
    if not outcome.rows:
        _print(out, step.empty, summary)
    _print(out, step.footer, summary)


def _check_columns(step: QueryStep, row: Message, columns: Sequence[str]) -> None:
    for f in row.template.fields:
        if f.name.startswith("$") or f.name in columns:
            continue
        import difflib  # for a message about a wrong name only

        match = difflib.get_close_matches(f.name, list(columns), n=1, cutoff=0.6)
        hint = f"; did you mean {{{match[0]}}}?" if match else ""
        listed = ", ".join(columns) if columns else "none"
        raise _step_failed(
            step,
            f"{step.label}: the row template uses {{{f.name}}}, but the query returned no "
            f"such column (its columns: {listed}){hint}",
            position=row.source.locate(f.offset),
        )


def _print(out: Output, message: Message | None, fields: Mapping[str, str]) -> None:
    if message is not None:
        out.line(_render(message, fields))


def _print_count(
    out: Output,
    after: Message | None,
    after_no_rows: Message | None,
    row_count: int,
    fields: Mapping[str, str],
) -> None:
    count = max(row_count, 0)  # commands without a row count (DDL) report 0
    chosen = after_no_rows if count == 0 and after_no_rows is not None else after
    _print(out, chosen, {**fields, "count": str(count)})


def _render(message: Message, fields: Mapping[str, str]) -> str:
    return message.template.render(fields)


def _roll_back(con: Any) -> bool:
    """Roll back a transaction block the failure left open; report whether there was one."""
    if wire.transaction_status(con) == b"I":
        return False
    # A connection lost now rolls the block back as surely: the server aborts it.
    with contextlib.suppress(wire.ServerFailure, wire.ConnectionLost, OSError):
        wire.simple(con, "ROLLBACK")
    return True


def _failed(
    step: AnyStep,
    failure: wire.ServerFailure,
    rolled_back: bool,
    row: tuple[int, Position] | None = None,
) -> StepFailed:
    server = ServerError.from_fields(failure.fields)
    sql_position: Position | None = None
    if server.position is not None:
        sql_position = step.sql.locate(server.position - 1)
    row_number = row_position = None
    note = "the open transaction was rolled back" if rolled_back else None
    if isinstance(step, BulkInsertStep):
        if row is not None:
            row_number, row_position = row[0] + 1, row[1]
        counted = f"the {len(step.rows)}" if step.source is None else "its"
        note = f"the transaction was rolled back: none of {counted} rows were inserted"
    return _step_failed(
        step,
        f"{step.label} failed: {server.message}",
        sql_position=sql_position,
        server=server,
        row_number=row_number,
        row_position=row_position,
        rolled_back=note,
    )


def _step_failed(
    step: AnyStep, message: str, *, position: Position | None = None, **details: Any
) -> StepFailed:
    return StepFailed(
        message, position=position or step.position, sql=step.sql.text, step=step.number, **details
    )
