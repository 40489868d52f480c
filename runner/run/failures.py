"""A step's failure as the report gives it: where in the plan, what the server said, the
failing row of a bulk load, and what was rolled back."""

from __future__ import annotations

import contextlib
import re
from typing import Any

from ..errors import (
    Position,
    ServerError,
    StepFailed,
)
from ..plan.model import (
    AnyStep,
    BulkInsertStep,
)
from . import wire
from .ledger import Fate
from .sources import BulkRows

OPEN_ROLLED_BACK = "the open transaction was rolled back"

# Failures that roll back the whole transaction and may not happen again: a retry's cases.
RETRYABLE = {
    "55P03": "lock_timeout",
    "40P01": "a deadlock",
    "40001": "a serialization failure",
}


OURS_ROLLED_BACK = "its transaction was rolled back: nothing it did was kept"


def roll_back(con: wire.Session) -> bool:
    """Roll back a transaction block the failure left open; report whether there was one."""
    if wire.transaction_status(con) == b"I":
        return False
    # A connection lost now rolls the block back as surely: the server aborts it.
    with contextlib.suppress(wire.ServerFailure, wire.ConnectionLost, OSError):
        wire.simple(con, "ROLLBACK")
    return True


def server_failure(
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
    return step_failed(
        step,
        f"{step.label} failed: {server.message}",
        sql_position=sql_position,
        server=server,
        row_number=row_number,
        row_position=row_position,
        rolled_back=note,
    )


def step_failed(
    step: AnyStep, message: str, *, position: Position | None = None, **details: Any
) -> StepFailed:
    return StepFailed(
        message, position=position or step.position, sql=step.sql.text, step=step.number, **details
    )


def lost_failure(step: AnyStep, lost: wire.ConnectionLost, fate: Fate) -> StepFailed:
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
    failed = step_failed(
        step, f"{step.label}: the connection to the server was lost {when} ({reason})"
    )
    failed.connection_lost = True
    return failed


def failed_row(
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


def group_failure(
    step: AnyStep, failure: wire.PipelineFailure, offset: int, rolled_back: bool
) -> StepFailed:
    fields = dict(failure.fields)
    position = fields.get("P", "")
    if offset and position.isdigit():
        fields["P"] = str(int(position) + offset)  # the statement's place in the step's SQL
    located = wire.ServerFailure(fields, failure.completed)
    row = None
    if isinstance(step, BulkInsertStep):
        row = failed_row(located, BulkRows(step), 0, step.copy_sql is not None, False)
    return server_failure(step, located, rolled_back, row)
