"""Runs a validated plan's steps in order on one connection; emits output lines, never prints."""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from . import wire
from .errors import Position, ServerError, StepFailed
from .plan import (
    BULK_CHUNK_ROWS,
    AnyStep,
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    Message,
    Plan,
    QueryStep,
)
from .templates import param_values


class Output(Protocol):
    def line(self, text: str) -> None:
        """One line of the plan's own output."""

    def warning(self, position: Position, message: str, code: str) -> None:
        """A warning the server raised while a step ran."""


def run_plan(plan: Plan, con: Any, out: Output) -> None:
    """Run every step; the first failure raises StepFailed after rolling back what it opened."""
    if plan.on_connect:
        out.line(_render(plan.on_connect, {}))
    opened_by: AnyStep | None = None  # the step that left a transaction block open
    for step in plan.steps:
        try:
            _run_step(plan, step, con, out)
        finally:
            _report_warnings(step, con, out)
        in_block = wire.transaction_status(con) != b"I"
        opened_by = (opened_by or step) if in_block else None
    if opened_by is not None:
        # Closing the connection would roll it back silently: the plan's work would vanish.
        _roll_back(con)
        raise _step_failed(
            opened_by,
            f"{opened_by.label} opened a transaction that no later step committed; "
            "it was rolled back (end the plan with a COMMIT)",
        )


# Server messages below WARNING (NOTICE such as "table does not exist, skipping", INFO, LOG)
# are expected chatter; a WARNING ("there is no transaction in progress") deserves a look.
_WARNING_SEVERITIES = (b"WARNING",)


def _report_warnings(step: AnyStep, con: Any, out: Output) -> None:
    notices = con.notices
    while notices:
        notice = notices.popleft()
        severity = notice.get(b"V") or notice.get(b"S")
        if severity in _WARNING_SEVERITIES:
            message = notice.get(b"M", b"").decode("utf-8", "replace")
            code = notice.get(b"C", b"01000").decode("ascii", "replace")
            out.warning(step.position, f"{step.label}: the server warns: {message}", code)


def _run_step(plan: Plan, step: AnyStep, con: Any, out: Output) -> None:
    from pg8000.exceptions import InterfaceError

    chunk_start = 0
    try:
        if isinstance(step, BatchStep):
            _print(out, step.before, {})
            wire.simple(con, step.sql.text)
            _print(out, step.after, {})
        elif isinstance(step, ExecuteStep):
            fields = param_values(step.params, plan.null_text)
            _print(out, step.before, fields)
            outcome = wire.extended(con, step.sql.text, [step.params])
            _print_count(out, step.after, step.after_no_rows, outcome.row_count, fields)
        elif isinstance(step, BulkInsertStep):
            fields = {"rows": str(len(step.rows))}
            _print(out, step.before, fields)
            count = 0
            for chunk_start, chunk, explicit in _chunks(con, step.rows):
                if explicit and chunk_start == 0:
                    wire.simple(con, "BEGIN")
                count += max(wire.extended(con, step.sql.text, chunk).row_count, 0)
            if explicit:
                wire.simple(con, "COMMIT")
            _print_count(out, step.after, step.after_no_rows, count, fields)
        else:
            _run_query(plan, step, con, out)
    except wire.ServerFailure as failure:
        rolled_back = _roll_back(con)
        raise _failed(step, failure, chunk_start, rolled_back) from None
    except (InterfaceError, OSError) as e:
        raise _step_failed(
            step, f"{step.label} failed: the connection to the server was lost ({e})"
        ) from None


def _chunks(con: Any, rows: Sequence[Sequence[object]]) -> Any:
    """(offset, rows, needs an explicit transaction) for each flight of a bulk insert."""
    explicit = len(rows) > BULK_CHUNK_ROWS and wire.transaction_status(con) == b"I"
    for start in range(0, len(rows), BULK_CHUNK_ROWS):
        yield start, rows[start : start + BULK_CHUNK_ROWS], explicit


def _run_query(plan: Plan, step: QueryStep, con: Any, out: Output) -> None:
    outcome = wire.extended(con, step.sql.text, [step.params], text_rows=True)
    params = param_values(step.params, plan.null_text)
    if step.row is not None:
        _check_columns(step, step.row, outcome.columns)
    summary = {**params, "count": str(len(outcome.rows))}
    _print(out, step.header, summary)
    if step.row is not None:
        for row in outcome.rows:
            values = {
                name: plan.null_text if v is None else str(v)
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
    with contextlib.suppress(wire.ServerFailure, OSError):
        wire.simple(con, "ROLLBACK")
    return True


def _failed(
    step: AnyStep, failure: wire.ServerFailure, chunk_start: int, rolled_back: bool
) -> StepFailed:
    server = ServerError.from_fields(failure.fields)
    sql_position: Position | None = None
    if server.position is not None:
        sql_position = step.sql.locate(server.position - 1)
    row_number = row_position = None
    note = "the open transaction was rolled back" if rolled_back else None
    if isinstance(step, BulkInsertStep):
        index = chunk_start + failure.completed
        # An error with a position is about the statement itself, not about one row's values.
        if server.position is None and index < len(step.rows):
            row_number, row_position = index + 1, step.row_positions[index]
        note = f"the transaction was rolled back: none of the {len(step.rows)} rows were inserted"
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
    return StepFailed(message, position=position or step.position, sql=step.sql.text, **details)
