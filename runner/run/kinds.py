"""Each kind of step on the wire, in one place: how it runs in a round trip of its own
(RUN_ALONE), what it sends inside a pipeline (PIECES), what it prints from the answers
(print_outcome); the checked run of a step that captures or expects, and the bulk load."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ..errors import (
    Position,
)
from ..plan.files import SourceError
from ..plan.model import (
    BULK_CHUNK_ROWS,
    AnyStep,
    BackfillStep,
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    Plan,
    QueryStep,
)
from ..plan.sqlparse import block_open_after, closes_block
from ..plan.vars import bind_step
from . import captures, expectations, interrupts, repair, wire
from .backfill import run_backfill
from .backfill_sql import identity, look
from .checked import Checked
from .failures import failed_row, roll_back, server_failure, step_failed
from .ledger import Batches
from .messages import Output, before_fields, say, say_count, show_query
from .sources import BulkRows, batched, with_last


@dataclass
class Vars:
    """The values of the plan's vars, and what its steps captured so far."""

    values: dict[str, object]
    captured: dict[str, object] = field(default_factory=dict)
    undone: set[int] = field(default_factory=set)  # steps whose expected error rolled them back
    rows: dict[int, int] = field(default_factory=dict)  # per step: rows affected or returned
    local: set[str] = field(default_factory=set)  # settings SET LOCAL in the plan's open block
    record_after: bool = False  # the last step could not take the record: it goes after it
    backfills: dict[int, Batches] = field(default_factory=dict)  # what each backfill's batches did

    def ready(self, plan: Plan, step: AnyStep) -> AnyStep:
        """The step with what it refers to written in, just before it is sent."""
        if not step.uses and not self.captured:
            return step
        return bind_step(step, {**self.values, **self.captured}, plan.null_text)


def run_step(plan: Plan, step: AnyStep, con: wire.Session, out: Output, state: Vars) -> int | None:
    """Run a step in a round trip of its own; the rows its statement affected or returned
    (None where the server gives no count)."""
    if isinstance(step, (ExecuteStep, QueryStep)) and (step.captures or step.expect):
        return run_checked(plan, step, con, out, state)  # checked before it commits
    build = repair.target(step)
    if build is not None and build.ahead:  # a rebuild's leftovers do not get in its way: look
        _repaired(step, out, build, con, "an earlier build left")
    for attempt in (1, 2):
        commits = commits_itself(step, wire.transaction_status(con))
        try:
            rows = RUN_ALONE[step.kind](plan, step, con, out, state, commits=commits)
        except wire.ServerFailure as failure:
            rolled_back = roll_back(con)
            if (
                build is not None
                and attempt == 1
                and failure.fields.get("C") == "42P07"  # the name is taken: by a half-built one?
                and _repaired(step, out, build, con, "an earlier build left")
            ):
                continue
            error = server_failure(step, failure, rolled_back)
            if build is not None:
                left = _repaired(step, out, build, con, "this failure left")
                if left:
                    error.rolled_back = (
                        f"the INVALID {'index' if len(left) == 1 else 'indexes'} it left "
                        f"({', '.join(left)}) dropped: nothing half-built stays"
                    )
            raise error from None
        if (
            build is not None
            and attempt == 1
            and repair.skipped(con)  # IF NOT EXISTS skipped it: a half-built one?
            and _repaired(step, out, build, con, "an earlier build left")
        ):
            continue
        return rows
    raise AssertionError("unreachable")


def _repaired(
    step: AnyStep, out: Output, build: repair.Target, con: wire.Session, who: str
) -> list[str]:
    """Drop what a concurrent build left INVALID, and say so; the names dropped."""
    try:
        dropped = repair.repair(con, build)
    except wire.ServerFailure as failure:  # a long transaction elsewhere, no right to drop it
        roll_back(con)
        out.warning(
            step.position,
            f"{step.label}: could not drop an INVALID index {who}: "
            f"{failure.fields.get('M', '')} [{failure.fields.get('C', '')}]; it stays INVALID, "
            "and the next run drops it and builds it again",
            "repair",
        )
        return []
    for name in dropped:
        out.warning(
            step.position,
            f"{step.label}: dropped the INVALID index {name} {who} (pg_index.indisvalid "
            f"false: never used by reads, still kept up by writes)"
            + ("; building it again" if who.startswith("an earlier") else ""),
            "repair",
        )
    return dropped


def _batch_alone(
    plan: Plan, step: BatchStep, con: wire.Session, out: Output, state: Vars, *, commits: bool
) -> int | None:
    say(out, step.before, {})
    outcome = wire.simple(con, step.sql.text, commits=commits, statements=len(step.statements))
    say(out, step.after, {})
    return outcome.row_count if outcome.row_count >= 0 else None


def _execute_alone(
    plan: Plan, step: ExecuteStep, con: wire.Session, out: Output, state: Vars, *, commits: bool
) -> int | None:
    fields = before_fields(plan, step)
    say(out, step.before, fields)
    outcome = wire.extended(con, step.sql.text, [step.params], commits=commits)
    state.rows[step.number] = max(outcome.row_count, 0)
    say_count(out, step.after, step.after_no_rows, outcome.row_count, fields)
    return outcome.row_count if outcome.row_count >= 0 else None


def _bulk_insert_alone(
    plan: Plan, step: BulkInsertStep, con: wire.Session, out: Output, state: Vars, *, commits: bool
) -> int | None:
    return run_bulk_insert(plan, step, con, out, state)


def _query_alone(
    plan: Plan, step: QueryStep, con: wire.Session, out: Output, state: Vars, *, commits: bool
) -> int | None:
    outcome = wire.extended(con, step.sql.text, [step.params], text_rows=True, commits=commits)
    state.rows[step.number] = len(outcome.rows)
    show_query(plan, step, outcome, out)
    return len(outcome.rows)


def _backfill_alone(
    plan: Plan, step: BackfillStep, con: wire.Session, out: Output, state: Vars, *, commits: bool
) -> int | None:
    ident = identity(plan, step)
    figures = state.backfills[step.number] = Batches(ident, step.key, look(ident))
    rows = run_backfill(plan, step, con, out, figures)
    state.rows[step.number] = rows
    return rows


# How each kind of step runs in a round trip of its own (the step, after its messages).
RUN_ALONE: dict[str, Callable[..., int | None]] = {
    "batch": _batch_alone,
    "execute": _execute_alone,
    "bulk_insert": _bulk_insert_alone,
    "query": _query_alone,
    "backfill": _backfill_alone,
}


def commits_itself(step: AnyStep, status: bytes) -> bool:
    """Whether the step's own statements end the transaction its work is in: it runs outside
    any block (in an implicit transaction of its own) or ends the block it is in, and leaves
    none open."""
    inside = status != b"I"
    if block_open_after(step.statements, inside):
        return False
    return not inside or any(closes_block(s) for s in step.statements)


def run_checked(
    plan: Plan, step: ExecuteStep | QueryStep, con: wire.Session, out: Output, state: Vars
) -> int:
    """A step whose result is checked before it commits (its captures, its `expect`): outside
    a transaction block it runs in one of its own, BEGIN with the statement and COMMIT once the
    checks passed, so that a failed check keeps nothing of it. A negative test (`expect.error`)
    inside a block the plan opened runs under a savepoint, which its expected error rolls back
    while the block goes on."""
    checked = Checked.scope(con, step)
    expect = step.expect
    negative = expect is not None and expect.error is not None
    if isinstance(step, ExecuteStep):
        say(out, step.before, before_fields(plan, step))
    try:
        try:
            outcome = wire.extended(
                con, step.sql.text, [step.params], text_rows=True, before=checked.opening
            )
        except wire.ServerFailure as failure:
            if checked.expected(failure):
                state.undone.add(step.number)
                if isinstance(step, ExecuteStep):
                    say_count(out, step.after, step.after_no_rows, 0, before_fields(plan, step))
                return 0
            raise
        count = outcome.count(step.COUNTS_RETURNED)
        state.rows[step.number] = count
        expectations.check(step, count, outcome.columns, outcome.rows, plan.null_text)
        taken = captures.take(step, outcome.columns, outcome.rows)
        checked.commit()
    except wire.ServerFailure as failure:
        rolled_back = roll_back(con)
        failed = server_failure(step, failure, rolled_back and not checked.ours)
        if negative:
            failed.message += f" (the plan expected {expect.error})"  # type: ignore[union-attr]
        raise failed from None
    except (captures.CaptureFailed, expectations.Unmet) as check:
        raise checked.refused(check) from None
    state.captured.update(taken)
    done = state.ready(plan, step)  # its own messages may use what it captured
    if isinstance(done, QueryStep):
        show_query(plan, done, outcome, out)
    elif isinstance(done, ExecuteStep):
        say_count(out, done.after, done.after_no_rows, outcome.row_count, before_fields(plan, done))
    return count


def pieces_of(step: AnyStep, con: wire.Session) -> Iterator[tuple[wire.Piece, int]]:
    """What a step sends inside a pipeline, each with its first character in the step's SQL."""
    return PIECES[step.kind](step, con)


def _batch_pieces(step: BatchStep, con: wire.Session) -> Iterator[tuple[wire.Piece, int]]:
    for statement in step.statements:
        yield wire.Piece(statement.text), statement.offset


def _execute_pieces(step: ExecuteStep, con: wire.Session) -> Iterator[tuple[wire.Piece, int]]:
    yield wire.Piece(step.sql.text, (step.params,)), 0


def _bulk_insert_pieces(
    step: BulkInsertStep, con: wire.Session
) -> Iterator[tuple[wire.Piece, int]]:
    if step.copy_sql is not None:
        yield wire.Piece(step.copy_sql, copy=wire.copy_text(con, [step.rows])), 0
    else:
        yield wire.Piece(step.sql.text, step.rows), 0


def _query_pieces(step: QueryStep, con: wire.Session) -> Iterator[tuple[wire.Piece, int]]:
    yield wire.Piece(step.sql.text, (step.params,), rows=True), 0


def _backfill_pieces(step: BackfillStep, con: wire.Session) -> Iterator[tuple[wire.Piece, int]]:
    """Never: a backfill runs its batches in round trips of its own (turns.py)."""
    raise AssertionError(f"{step.label} cannot travel in a pipeline")


# What each kind of step sends inside a pipeline.
PIECES: dict[str, Callable[..., Iterator[tuple[wire.Piece, int]]]] = {
    "batch": _batch_pieces,
    "execute": _execute_pieces,
    "bulk_insert": _bulk_insert_pieces,
    "query": _query_pieces,
    "backfill": _backfill_pieces,
}


def print_outcome(plan: Plan, step: AnyStep, outcomes: Sequence[wire.Outcome], out: Output) -> None:
    """A step's messages, from what the server answered to its statements."""
    fields = before_fields(plan, step)
    if isinstance(step, QueryStep):
        show_query(plan, step, outcomes[0], out)
        return
    say(out, step.before, fields)
    if isinstance(step, (BatchStep, BackfillStep)):  # (a backfill never travels with others)
        say(out, step.after, fields)
    else:
        say_count(out, step.after, step.after_no_rows, outcomes[0].row_count, fields)


def run_bulk_insert(
    plan: Plan, step: BulkInsertStep, con: wire.Session, out: Output, state: Vars | None = None
) -> int:
    """Load a bulk insert's rows, all or none; how many were inserted."""
    say(out, step.before, before_fields(plan, step))
    expect = step.expect
    # With an `expect`, the load is checked before it commits (checked.py): in a transaction
    # of its own, or (a negative test inside the plan's block) under a savepoint.
    checked = Checked.scope(con, step) if expect is not None else None
    if checked is not None and checked.opening is not None:
        wire.simple(con, checked.opening)
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
            text = wire.copy_text(con, rows.batches())
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
        if checked is not None and checked.expected(failure):
            if state is not None:
                state.undone.add(step.number)
            say_count(out, step.after, step.after_no_rows, 0, {"rows": str(rows.count)})
            return 0
        roll_back(con)
        copy = step.copy_sql is not None
        raise server_failure(
            step, failure, True, failed_row(failure, rows, first_row, copy, whole_file)
        ) from None
    except interrupts.Interrupted:
        roll_back(con)
        raise step_failed(step, f"{step.label} was interrupted") from None
    except SourceError as e:
        roll_back(con)
        where = Position(
            step.source.display if step.source else step.sql.position.path, e.line, e.column
        )
        raise step_failed(
            step,
            f"{step.label} failed: {e}",
            position=where,
            rolled_back="the transaction was rolled back: none of its rows were inserted",
        ) from None
    if checked is not None:
        try:
            expectations.check(step, count)
        except expectations.Unmet as unmet:
            kept = "the transaction was rolled back: none of its rows were inserted"
            raise checked.refused(unmet, kept) from None
        try:
            checked.commit()
        except wire.ServerFailure as failure:
            roll_back(con)
            raise server_failure(step, failure, True) from None
    if state is not None:
        state.rows[step.number] = count
    say_count(out, step.after, step.after_no_rows, count, {"rows": str(rows.count)})
    return count
