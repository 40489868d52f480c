"""`once` plans: sqlplan.history records each run of one, and a plan recorded as succeeded is
not run again.

A run claims a plan before its first step: under a transaction-level advisory lock (which a
transaction-mode pooler keeps, since it pins the server connection for the transaction), it
reads the plan's history and inserts a row `running`. The row becomes `succeeded` in the same
transaction as the plan's last step where the engine can put it there (see engine.py), else
just after it; `failed` when a step fails. A row left `running` is a run that is still going
or that died without a word: the next run refuses it unless told to take over."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import HistoryRefused, Position
from ..plan.model import Plan
from . import wire

TABLE = "sqlplan.history"
# The key of the transaction-level advisory lock that serializes claims: 'sqlplan' in ASCII.
LOCK_KEY = 0x73716C706C616E

_CREATE = """\
CREATE SCHEMA IF NOT EXISTS sqlplan;
CREATE TABLE IF NOT EXISTS sqlplan.history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    plan text NOT NULL,
    path text NOT NULL,
    fingerprint text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    duration interval,
    outcome text NOT NULL CHECK (outcome IN ('running', 'succeeded', 'failed', 'abandoned')),
    error text,
    sqlplan_version text NOT NULL,
    db_user text NOT NULL DEFAULT current_user
);
CREATE INDEX IF NOT EXISTS history_plan ON sqlplan.history (plan, id);
COMMENT ON TABLE sqlplan.history IS 'Runs of sqlplan plans marked once: true'"""

_UTC = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
_COLUMNS = (
    f"id, plan, path, fingerprint, {_UTC.format('started_at')}, {_UTC.format('finished_at')}, "
    "outcome, db_user, sqlplan_version, extract(epoch FROM duration) * 1000, error"
)

SUCCEEDED = (
    "UPDATE sqlplan.history SET outcome = 'succeeded', finished_at = clock_timestamp(), "
    "duration = clock_timestamp() - started_at WHERE id = $1"
)
_FAILED = (
    "UPDATE sqlplan.history SET outcome = 'failed', finished_at = clock_timestamp(), "
    "duration = clock_timestamp() - started_at, error = $2 WHERE id = $1"
)


@dataclass(frozen=True)
class Entry:
    """One row of sqlplan.history."""

    id: int
    plan: str
    path: str
    fingerprint: str
    started: str  # ISO 8601, UTC
    finished: str | None
    outcome: str
    user: str
    version: str
    duration_ms: float | None
    error: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Entry:
        return cls(
            id=int(row[0]),
            plan=row[1],
            path=row[2],
            fingerprint=row[3],
            started=row[4],
            finished=row[5],
            outcome=row[6],
            user=row[7],
            version=row[8],
            duration_ms=None if row[9] is None else round(float(row[9]), 1),
            error=row[10],
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "started": self.started,
            "finished": self.finished,
            "duration_ms": self.duration_ms,
            "fingerprint": self.fingerprint,
            "user": self.user,
            "sqlplan_version": self.version,
            "path": self.path,
        }


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a plan: run it (`id` is its history row), or skip it."""

    id: int | None
    skip: str | None = None  # why it is skipped: when it was applied


def claim(
    con: Any, plan: Plan, path: str, version: str, *, allow_changed: bool, take_over: bool
) -> Claim:
    """Decide, under the advisory lock, whether `plan` runs; if it does, record it running."""
    wire.simple(con, "BEGIN")
    try:
        wire.extended(con, "SELECT pg_advisory_xact_lock($1)", [[LOCK_KEY]])
        if not _exists(con):
            wire.simple(con, _CREATE)
        entries = _entries(con, "plan = $1 AND outcome IN ('succeeded', 'running')", [plan.name])
        applied = [e for e in entries if e.outcome == "succeeded"]
        running = [e for e in entries if e.outcome == "running"]
        where = Position(plan.path, 1, 1)
        if applied:
            last = applied[-1]
            when = f"applied {last.finished or last.started} by {last.user}"
            if last.fingerprint == plan.fingerprint:
                wire.simple(con, "COMMIT")
                return Claim(None, skip=when)
            if not allow_changed:
                raise HistoryRefused(
                    f"plan {plan.name!r} changed since it was {when}: its fingerprint was "
                    f"{last.fingerprint[:16]}, it is {plan.short_fingerprint} now. A plan that "
                    "ran once is not edited; write a new plan for the change (or, if the edit "
                    "changes nothing in the database, run with --allow-changed to skip it)",
                    position=where,
                )
            wire.simple(con, "COMMIT")
            return Claim(None, skip=f"{when}, changed since (skipped: --allow-changed)")
        if running and not take_over:
            other = running[-1]
            raise HistoryRefused(
                f"plan {plan.name!r} was started at {other.started} by {other.user} and has not "
                "finished: another run is applying it, or that run died before it could say. "
                "If no other run is going on, run again with --take-over (sqlplan status "
                "shows it)",
                position=where,
            )
        if running:
            wire.extended(
                con,
                "UPDATE sqlplan.history SET outcome = 'abandoned', finished_at = clock_timestamp()"
                " WHERE id = $1",
                [[e.id] for e in running],
            )
        outcome = wire.extended(
            con,
            "INSERT INTO sqlplan.history (plan, path, fingerprint, outcome, sqlplan_version) "
            "VALUES ($1, $2, $3, 'running', $4) RETURNING id",
            [[plan.name, path, plan.fingerprint, version]],
            text_rows=True,
        )
        wire.simple(con, "COMMIT")
        return Claim(int(outcome.rows[0][0]))
    except BaseException:
        if wire.transaction_status(con) != b"I":
            wire.simple(con, "ROLLBACK")
        raise


def failed(con: Any, claim_id: int, error: str) -> None:
    """Mark a claimed run failed, in a transaction of its own (best effort: the caller goes on
    if the connection is gone, and the row stays `running`)."""
    wire.extended(con, _FAILED, [[claim_id, error]])


def _exists(con: Any) -> bool:
    outcome = wire.extended(
        con, "SELECT to_regclass('sqlplan.history') IS NOT NULL", [[]], text_rows=True
    )
    return bool(outcome.rows and outcome.rows[0][0] in ("t", "true", True))


def _entries(con: Any, where: str, params: Sequence[object]) -> list[Entry]:
    outcome = wire.extended(
        con,
        f"SELECT {_COLUMNS} FROM sqlplan.history WHERE {where} ORDER BY id",
        [list(params)],
        text_rows=True,
    )
    return [Entry.from_row(row) for row in outcome.rows]


def read(con: Any, names: Sequence[str]) -> dict[str, list[Entry]]:
    """The succeeded and running entries of the plans named, oldest first; nothing when the
    table does not exist yet (no plan ever ran once)."""
    if not _exists(con):
        return {}
    found: dict[str, list[Entry]] = {name: [] for name in names}
    for entry in _entries(con, "outcome IN ('succeeded', 'running')", []):
        if entry.plan in found:
            found[entry.plan].append(entry)
    return found


def status(plans: Sequence[Plan], found: dict[str, list[Entry]]) -> list[dict[str, object]]:
    """Per plan: applied, pending, changed since applied, running, or not once."""
    report: list[dict[str, object]] = []
    for plan in plans:
        entries = found.get(plan.name, [])
        applied = [e for e in entries if e.outcome == "succeeded"]
        running = [e for e in entries if e.outcome == "running"]
        if not plan.once:
            state = "not once"
        elif applied:
            state = "applied" if applied[-1].fingerprint == plan.fingerprint else "changed"
        elif running:
            state = "running"
        else:
            state = "pending"
        report.append(
            {
                "path": plan.path,
                "name": plan.name,
                "once": plan.once,
                "status": state,
                "fingerprint": plan.fingerprint,
                "applied": applied[-1].to_dict() if applied and plan.once else None,
                "running": running[-1].to_dict() if running and plan.once else None,
            }
        )
    return report


def status_text(report: Sequence[dict[str, object]]) -> str:
    lines = []
    for item in report:
        applied: Any = item["applied"]
        running: Any = item["running"]
        state = item["status"]
        if state == "applied":
            what = f"{applied['finished']} by {applied['user']}, fingerprint {applied['fingerprint'][:16]}"
        elif state == "changed":
            what = (
                f"applied {applied['finished']} by {applied['user']}, fingerprint "
                f"{applied['fingerprint'][:16]}; it is {str(item['fingerprint'])[:16]} now"
            )
        elif state == "running":
            what = (
                f"started {running['started']} by {running['user']}, not finished (a run "
                "going on, or one that died: run --take-over once sure it is not)"
            )
        elif state == "pending":
            what = "not applied"
        else:
            what = "no `once: true`: runs every time, never recorded"
        lines.append(f"{state:<9} {item['path']} ({item['name']}): {what}")
    return "".join(line + "\n" for line in lines)
