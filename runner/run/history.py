"""`once` plans: sqlplan.history records each run of one, and a plan recorded as succeeded is
not run again.

A run claims a plan before its first step: under a transaction-level advisory lock (which a
transaction-mode pooler keeps, since it pins the server connection for the transaction), it
reads the plan's history and inserts a row `running`. The row becomes `succeeded` in the same
transaction as the plan's last step where the engine can put it there (see engine.py), else
just after it; `failed` when a step fails. A row left `running` is a run that is still going
or that died without a word: the next run refuses it unless told to take over, and takes it
over only if that run is provably gone.

A claim names its run: the backend that made it (pid and start time) and a session-level
advisory lock that backend holds until the run's connection ends (CLAIM_CLASS, the row's id).
A run is gone when that backend no longer exists, or when nobody holds the lock. Through a
transaction pooler neither can be known (a session lock stays with a pooled server connection,
and the client's next transaction may run on another one), so no lock is taken and a take-over
is refused there. Claims and take-overs are serialized by a transaction-level advisory lock:
of concurrent take-overs, the first claims, and the others find its claim alive."""

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
# The first key of the session-level lock a run holds on its claim ('sqlp'); the second is the
# claim's id (as int4).
CLAIM_CLASS = 0x73716C70
_CLAIM_LOCK = "($2::bigint % 2147483647)::int"

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
    db_user text NOT NULL DEFAULT current_user,
    pid int,
    backend_start timestamptz
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
# Once the last step's commit is confirmed: the time it ended, not when the record was made.
_FINISHED = (
    "UPDATE sqlplan.history SET finished_at = clock_timestamp(), "
    "duration = clock_timestamp() - started_at WHERE id = $1 AND outcome = 'succeeded'"
)
# Whether the run that made a claim is provably gone: its backend no longer exists.
_BACKEND_GONE = (
    "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 "
    "AND backend_start IS NOT DISTINCT FROM $2::timestamptz)"
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


# sqlplan.history, or its schema, does not exist (yet)
_MISSING = ("42P01", "3F000")
# A plan's entries that decide whether it runs.
_MINE = "plan = $1 AND outcome IN ('succeeded', 'running')"
_INSERT = (
    "INSERT INTO sqlplan.history (plan, path, fingerprint, outcome, sqlplan_version, pid, "
    "backend_start) SELECT $1, $2, $3, 'running', $4, pid, backend_start "
    "FROM pg_stat_activity WHERE pid = pg_backend_pid() RETURNING id"
)


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a plan: run it (`id` is its history row), or skip it."""

    id: int | None
    skip: str | None = None  # why it is skipped: when it was applied


def decide(
    plan: Plan,
    path: str,
    entries: Sequence[Entry],
    *,
    allow_changed: bool,
    take_over: bool,
    pooler: bool = False,
) -> Claim | None:
    """What the plan's succeeded and running entries say: skip it (a Claim whose `skip` says
    why), refuse it (HistoryRefused), or None: it may be claimed (a take-over of a running
    entry still has to find that run gone)."""
    applied = [e for e in entries if e.outcome == "succeeded"]
    running = [e for e in entries if e.outcome == "running"]
    where = Position(plan.path, 1, 1)
    if applied:
        last = applied[-1]
        when = f"applied {last.finished or last.started} by {last.user}"
        if last.fingerprint == plan.fingerprint:
            return Claim(None, skip=when)
        # another file (by its name: the same file may be run from another directory)
        if _file_name(last.path) != _file_name(path) and not allow_changed:
            raise HistoryRefused(
                f"plan {plan.name!r} was {when} from {last.path}, and {path} has the same "
                "name: the history knows a plan by its name, so this file would be taken "
                "for that plan, changed. Give this plan a name of its own (--allow-changed "
                "would skip it, never run it)",
                position=where,
            )
        if not allow_changed:
            raise HistoryRefused(
                f"plan {plan.name!r} changed since it was {when}: its fingerprint was "
                f"{last.fingerprint[:16]}, it is {plan.short_fingerprint} now. A plan that "
                "ran once is not edited; write a new plan for the change (or, if the edit "
                "changes nothing in the database, run with --allow-changed to skip it)",
                position=where,
            )
        return Claim(None, skip=f"{when}, changed since (skipped: --allow-changed)")
    if running and not take_over:
        other = running[-1]
        raise HistoryRefused(
            f"plan {plan.name!r} was started at {other.started} by {other.user} and has not "
            "finished: another run is applying it, or that run died before it could say. "
            "If no other run is going on, run again with --take-over (sqlplan status "
            "shows it)",
            position=where,
            unfinished=True,
        )
    if running and pooler:
        raise HistoryRefused(
            f"plan {plan.name!r} was started at {running[-1].started} and has not "
            "finished, and through a transaction pooler sqlplan cannot tell whether "
            "that run is gone (its session is not one server connection): take it "
            "over through the database's direct host",
            position=where,
            unfinished=True,
        )
    return None


def claim(
    con: wire.Session,
    plan: Plan,
    path: str,
    version: str,
    *,
    allow_changed: bool,
    take_over: bool,
    pooler: bool = False,
) -> Claim:
    """Decide, under the advisory lock, whether `plan` runs; if it does, record it running,
    naming this backend, and (not through a pooler) hold the claim's session lock. This is
    the whole path, a round trip per statement: the table made or brought up to date, a
    take-over. A claim that needs none of it travels with the plan's first steps (Flight)."""
    wire.simple(con, "BEGIN")
    try:
        wire.extended(con, "SELECT pg_advisory_xact_lock($1)", [[LOCK_KEY]])
        if not _exists(con):
            wire.simple(con, _CREATE)
        elif not _names_backends(con):  # a table made before claims named their backend
            wire.simple(
                con,
                "ALTER TABLE sqlplan.history ADD COLUMN IF NOT EXISTS pid int, "
                "ADD COLUMN IF NOT EXISTS backend_start timestamptz",
            )
        entries = _entries(con, _MINE, [plan.name])
        decided = decide(
            plan, path, entries, allow_changed=allow_changed, take_over=take_over, pooler=pooler
        )
        if decided is not None:
            wire.simple(con, "COMMIT")
            return decided
        running = [e for e in entries if e.outcome == "running"]
        for entry in running:  # a take-over: of a run that is gone, and of no other
            alive = _alive(con, entry)
            if alive is not None:
                raise HistoryRefused(
                    f"plan {plan.name!r} is being applied by another run, started at "
                    f"{entry.started} by {entry.user}: {alive}. --take-over takes over only "
                    "a run that is gone",
                    position=Position(plan.path, 1, 1),
                )
        if running:
            wire.extended(
                con,
                "UPDATE sqlplan.history SET outcome = 'abandoned', finished_at = clock_timestamp()"
                " WHERE id = $1",
                [[e.id] for e in running],
            )
        outcome = wire.extended(
            con, _INSERT, [[plan.name, path, plan.fingerprint, version]], text_rows=True
        )
        claimed = int(outcome.rows[0][0])
        if not pooler:
            # held until this connection ends: while it is held, the run is alive
            wire.extended(
                con, f"SELECT pg_advisory_lock($1, {_CLAIM_LOCK})", [[CLAIM_CLASS, claimed]]
            )
        wire.simple(con, "COMMIT")
        return Claim(claimed)
    except BaseException:
        if wire.transaction_status(con) != b"I":
            wire.simple(con, "ROLLBACK")
        raise


# The claim's row on the backend that made it, where its id is not known yet: in the flight
# that claims it (one flight is one server connection, even through a transaction pooler).
_THIS_CLAIM = "currval(pg_get_serial_sequence('sqlplan.history', 'id'))"
_GUARD = 2  # the piece of Flight.lead that fails the flight unless the plan may be claimed


@dataclass
class Flight:
    """A claim that travels in the round trip of the plan's first steps, ahead of them.

    Under the advisory lock, the plan's entries are read, and a guard fails unless there are
    none: the server then skips everything after it up to the Sync, the steps included, and
    the implicit transaction it ran in ends there, rolled back. Otherwise BEGIN makes that
    transaction a block, the claim is inserted (and its session lock taken), and COMMIT ends
    it before the first step runs: the same claim, committed first, as claim() makes.

    The guard also fails where sqlplan.history is missing or older (the statements after
    it cannot be planned); the caller then takes the whole path (claim()). Where the plan
    was applied or is running, what the entries say is decided (decide()) without another
    round trip. The record goes into the last step's transaction as claim()'s does, and the
    end is stamped after its commit (finish_pieces)."""

    plan: Plan
    path: str
    version: str
    pooler: bool
    id: int | None = None  # the claim's, once the flight is answered
    entries: list[Entry] | None = None  # the plan's, as the flight read them
    finished: bool = False  # its end stamped in the flight of the last step

    def lead(self) -> list[wire.Piece]:
        name = (self.plan.name,)
        insert = _INSERT
        values: tuple[object, ...] = (
            self.plan.name,
            self.path,
            self.plan.fingerprint,
            self.version,
        )
        if not self.pooler:
            # held until this connection ends: while it is held, the run is alive
            insert = (
                f"WITH claimed AS ({_INSERT}) "
                "SELECT id, pg_advisory_lock($5, (id % 2147483647)::int) FROM claimed"
            )
            values += (CLAIM_CLASS,)
        return [
            wire.Piece("SELECT pg_advisory_xact_lock($1)", ((LOCK_KEY,),), quiet=True),
            wire.Piece(
                f"SELECT {_COLUMNS} FROM sqlplan.history WHERE {_MINE} ORDER BY id",
                (name,),
                rows=True,
                quiet=True,
            ),
            wire.Piece(
                f"SELECT 1 / (SELECT (count(*) = 0)::int FROM sqlplan.history WHERE {_MINE})",
                (name,),
                quiet=True,
            ),
            wire.Piece("BEGIN", quiet=True),
            wire.Piece(insert, (values,), rows=True, quiet=True),
            wire.Piece("COMMIT", quiet=True, commits=True),
        ]

    def answered(self, outcomes: Sequence[wire.Outcome]) -> None:
        """Take what the flight's answers say of the history: the entries, the claim's id."""
        if len(outcomes) > 1:
            self.entries = [Entry.from_row(row) for row in outcomes[1].rows]
        if len(outcomes) > 4 and outcomes[4].rows:
            self.id = int(outcomes[4].rows[0][0])

    @staticmethod
    def refused_by_guard(index: int) -> bool:
        """Whether a failure of the lead's piece `index` is its guard's (the entries were read)."""
        return index == _GUARD

    def record(self) -> tuple[str, tuple[object, ...], str]:
        """The statement that records the plan succeeded, its parameters, and a query that
        tells whether it was recorded (for a report in doubt)."""
        if self.id is not None:
            look = f"SELECT outcome FROM sqlplan.history WHERE id = {self.id}"
            return SUCCEEDED, (self.id,), look
        quoted = self.plan.name.replace("'", "''")
        look = (
            f"SELECT outcome FROM sqlplan.history WHERE plan = '{quoted}' ORDER BY id DESC LIMIT 1"
        )
        return SUCCEEDED.replace("$1", _THIS_CLAIM), (), look

    def finish_pieces(self) -> list[wire.Piece]:
        """After the last step's commit, in its flight: the end stamped, the lock let go."""
        if self.id is not None:  # a flight of its own after the claim's: by its id
            finished = wire.Piece(_FINISHED, ((self.id,),), quiet=True)
            unlock = wire.Piece(
                f"SELECT pg_advisory_unlock($1, {_CLAIM_LOCK})",
                ((CLAIM_CLASS, self.id),),
                quiet=True,
            )
        else:
            finished = wire.Piece(_FINISHED.replace("$1", _THIS_CLAIM), quiet=True)
            unlock = wire.Piece(
                f"SELECT pg_advisory_unlock($1, ({_THIS_CLAIM} % 2147483647)::int)",
                ((CLAIM_CLASS,),),
                quiet=True,
            )
        pieces = [finished] if self.pooler else [finished, unlock]
        self.finished = True
        return pieces


def _file_name(path: str) -> str:
    return path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


def _alive(con: wire.Session, entry: Entry) -> str | None:
    """Why the run that made a claim may still be going, or None when it is provably gone:
    its backend no longer exists, or nobody holds the claim's lock."""
    pid, started = _backend(con, entry.id)
    if pid is not None:
        gone = wire.extended(con, _BACKEND_GONE, [[pid, started]], text_rows=True)
        if gone.rows[0][0] in ("t", "true", True):
            return None
    free = wire.extended(
        con, f"SELECT pg_try_advisory_lock($1, {_CLAIM_LOCK})", [[CLAIM_CLASS, entry.id]],
        text_rows=True,
    )  # fmt: skip
    if free.rows[0][0] in ("t", "true", True):
        wire.extended(
            con, f"SELECT pg_advisory_unlock($1, {_CLAIM_LOCK})", [[CLAIM_CLASS, entry.id]]
        )
        return None
    return f"its backend (pid {pid}) is alive and holds the claim"


def _backend(con: wire.Session, claim_id: int) -> tuple[int | None, str | None]:
    outcome = wire.extended(
        con, "SELECT pid, backend_start FROM sqlplan.history WHERE id = $1", [[claim_id]],
        text_rows=True,
    )  # fmt: skip
    pid, started = outcome.rows[0]
    return (None if pid is None else int(pid)), started


def _names_backends(con: wire.Session) -> bool:
    outcome = wire.extended(
        con,
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'sqlplan.history'::regclass "
        "AND attname = 'backend_start' AND NOT attisdropped",
        [[]],
        text_rows=True,
    )
    return bool(outcome.rows and int(outcome.rows[0][0]) > 0)


def finished(con: wire.Session, claim_id: int, *, pooler: bool = False) -> None:
    """Stamp a succeeded run's end and duration once its last commit is confirmed, and let go
    of its claim (best effort: the caller goes on if the connection is gone)."""
    wire.extended(con, _FINISHED, [[claim_id]])
    if not pooler:
        release(con, claim_id)


def release(con: wire.Session, claim_id: int) -> None:
    """The run's outcome is recorded: its claim's session lock is no longer needed."""
    wire.extended(con, f"SELECT pg_advisory_unlock($1, {_CLAIM_LOCK})", [[CLAIM_CLASS, claim_id]])


def failed(con: wire.Session, claim_id: int, error: str) -> None:
    """Mark a claimed run failed, in a transaction of its own (best effort: the caller goes on
    if the connection is gone, and the row stays `running`)."""
    wire.extended(con, _FAILED, [[claim_id, error]])


def _exists(con: wire.Session) -> bool:
    outcome = wire.extended(
        con, "SELECT to_regclass('sqlplan.history') IS NOT NULL", [[]], text_rows=True
    )
    return bool(outcome.rows and outcome.rows[0][0] in ("t", "true", True))


def _entries(con: wire.Session, where: str, params: Sequence[object]) -> list[Entry]:
    outcome = wire.extended(
        con,
        f"SELECT {_COLUMNS} FROM sqlplan.history WHERE {where} ORDER BY id",
        [list(params)],
        text_rows=True,
    )
    return [Entry.from_row(row) for row in outcome.rows]


def read(
    con: wire.Session, names: Sequence[str], outcomes: Sequence[str] = ("succeeded", "running")
) -> dict[str, list[Entry]]:
    """The entries of the plans named with those `outcomes`, oldest first, in one round trip
    however many plans; nothing when the table does not exist yet (no plan ever ran once)."""
    found: dict[str, list[Entry]] = {name: [] for name in names}
    if not names:
        return found
    try:
        entries = _entries(
            con,
            "plan = ANY($1::text[]) AND outcome = ANY($2::text[])",
            [list(names), list(outcomes)],
        )
    except wire.ServerFailure as failure:
        if failure.fields.get("C") in _MISSING:
            return {}
        raise
    for entry in entries:
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
