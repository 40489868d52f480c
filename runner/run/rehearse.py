"""A rehearsal: the whole plan in one transaction that is rolled back, observing after each
statement the locks its backend holds (pg_locks), the tables it rewrote (pg_class.relfilenode),
the rows it affected and the time it took.

Nothing persists: the transaction is never committed (transaction control in the plan is not
run), and a killed sqlplan leaves the server to roll it back. Sequence values advanced by
nextval() are the exception PostgreSQL makes for every transaction. A short lock_timeout
keeps a rehearsal on a busy database from queueing behind traffic: a statement that would wait
is reported with who holds the lock.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode, Position, SqlPlanError, StepFailed
from ..plan.model import AnyStep, BackfillStep, BatchStep, Plan
from ..plan.sqlparse import Statement, nodes, non_transactional, transaction_kind
from . import interrupts, wire
from .backfill import rehearse_backfill
from .kinds import Vars, run_step

# Statements PostgreSQL refuses inside a transaction block: they cannot be rehearsed.
_PG_MODES = {
    "AccessShareLock": "ACCESS SHARE",
    "RowShareLock": "ROW SHARE",
    "RowExclusiveLock": "ROW EXCLUSIVE",
    "ShareUpdateExclusiveLock": "SHARE UPDATE EXCLUSIVE",
    "ShareLock": "SHARE",
    "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE",
    "ExclusiveLock": "EXCLUSIVE",
    "AccessExclusiveLock": "ACCESS EXCLUSIVE",
}
_ORDER = list(_PG_MODES.values())


class RehearsalError(SqlPlanError):
    """The rehearsal could not be made; nothing was committed, as it never commits."""


class BadSetting(RehearsalError):
    exit_code = ExitCode.USAGE


@dataclass
class Observed:
    """One statement of the rehearsal and what the server showed of it."""

    step: int
    text: str
    status: str  # "ran", "failed", "would wait", "interrupted", "not rehearsed", "not run"
    # relation -> the strongest mode the statement took that the transaction did not hold yet
    locks: dict[str, str] = field(default_factory=dict)
    index_of: dict[str, str] = field(default_factory=dict)  # a locked index -> its table
    # relation -> the strongest mode the transaction holds once the statement has run
    holding: dict[str, str] = field(default_factory=dict)
    rewritten: list[str] = field(default_factory=list)
    rows: int | None = None
    seconds: float = 0.0
    detail: str = ""  # why it failed, what it waits for, why it was not rehearsed
    offset: int = 0  # where the statement starts in its step's SQL


@dataclass
class Rehearsal:
    plan: Plan
    statements: list[Observed] = field(default_factory=list)
    lock_timeout: str = "2s"
    statement_timeout: str = "60s"
    at: int | None = None  # the step running now
    existing: set[str] = field(default_factory=set)  # the relations there before the plan
    interrupted: int | None = None  # the signal (Ctrl-C, SIGTERM) that stopped it
    catalog: Any = None  # what `look` read of the database before the plan ran
    review: Any = None  # the review config file's settings, under the plan's own (grading)

    @property
    def ok(self) -> bool:
        return all(s.status in ("ran", "not rehearsed") for s in self.statements)


def rehearse(
    plan: Plan,
    con: wire.Session,
    *,
    lock_timeout: str = "2s",
    statement_timeout: str = "60s",
    values: Mapping[str, object] | None = None,
    look: Callable[[Callable[[str], list[list[str]]]], Any] | None = None,
    within: bool = False,
) -> Rehearsal:
    """Run the plan in one transaction, observe every statement, roll back. `values`: the
    vars' (the plan is bound to them already; the steps that use what an earlier step
    captures are bound as the rehearsal reaches them). `look`: reads what it needs of the
    database with the query function it is given, before the plan runs (the catalogue).
    `within`: in a transaction the caller opened and rolls back, so that each plan of a run
    sees what the plans before it did (a fleet's pre-flight)."""
    result = Rehearsal(plan, lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    known = dict(values or {})
    try:
        if look is not None:
            result.catalog = look(lambda sql: wire.extended(con, sql, [()], text_rows=True).rows)
        _rehearse(con, plan, result, known, within)
    except wire.ConnectionLost as lost:
        where = f" during step {result.at}" if result.at else ""
        said = lost.server_said
        why = said.get("M", str(lost)) if said else str(lost)
        raise RehearsalError(
            f"the connection was lost{where} ({why}); nothing was committed: a rehearsal "
            "never sends COMMIT, and the server rolls back a transaction whose client is gone"
        ) from None
    return result


def _rehearse(
    con: wire.Session, plan: Plan, result: Rehearsal, known: dict[str, object], within: bool
) -> None:
    if not within:
        wire.simple(con, "BEGIN")
    try:
        for name, value in (
            ("lock_timeout", result.lock_timeout),
            ("statement_timeout", result.statement_timeout),
        ):
            # The settings are values, not SQL: set_config() takes them as bind parameters.
            try:
                wire.extended(con, "SELECT set_config($1, $2, true)", [(name, value)])
            except wire.ServerFailure as failure:
                raise BadSetting(
                    f"--{name.replace('_', '-')}: {failure.fields.get('M', 'invalid value')} "
                    "(a PostgreSQL duration such as 500ms, 2s or 1min)"
                ) from None
        if wire.server_major(con) >= 14:
            # A killed sqlplan must not leave its backend holding the rehearsal's locks until
            # the current statement ends: have the server poll the socket while it runs.
            wire.extended(
                con, "SELECT set_config('client_connection_check_interval', '1s', true)", [()]
            )
        existing, indexes = _existing(con)
        result.existing = set(existing.values())
        held = _held(con, existing, indexes)
        files = _filenodes(con)
        stopped = False
        state = Vars(dict(known))
        for planned in plan.steps:
            step = state.ready(plan, planned)
            for statement in step.statements:
                if not stopped and interrupts.requested() is not None:
                    result.interrupted, stopped = interrupts.requested(), True
                if stopped:
                    result.statements.append(
                        Observed(step.number, statement.text, "not run", offset=statement.offset)
                    )
                    continue
                result.at = step.number
                observed = _one(con, plan, step, statement, held=held, files=files, state=state)
                if interrupts.requested() is not None and observed.status != "ran":
                    # Ctrl-C: the server cancelled the statement at sqlplan's request
                    observed.status, observed.detail = (
                        "interrupted",
                        "cancelled at the user's request",
                    )
                    result.interrupted = interrupts.requested()
                result.statements.append(observed)
                if observed.status in ("failed", "would wait", "interrupted"):
                    stopped = True  # the plan would stop here too: the rest is not run
    except interrupts.Abandoned:
        raise  # a second Ctrl-C: no waiting for the server; closing the connection rolls back
    except BaseException:
        if not within:
            with contextlib.suppress(Exception):
                _rollback(con)
        raise
    if not within:
        _rollback(con)


def _rollback(con: wire.Session) -> None:
    if wire.transaction_status(con) != b"I":
        wire.simple(con, "ROLLBACK")


def _one(
    con: wire.Session,
    plan: Plan,
    step: AnyStep,
    statement: Statement,
    *,
    held: _Held,
    files: dict[str, int],
    state: Vars,
) -> Observed:
    observed = Observed(step.number, statement.text, "ran", offset=statement.offset)
    why_not = non_transactional(statement)
    if why_not is not None:
        observed.status, observed.detail = (
            "not rehearsed",
            f"{why_not} cannot run in a transaction block",
        )
        return observed
    if transaction_kind(statement) is not None:
        observed.status = "not rehearsed"
        observed.detail = "transaction control: the whole rehearsal is one transaction, rolled back"
        return observed
    started = time.perf_counter()
    # The engine's own executor runs it, a statement at a time (a batch's one by one), inside
    # the rehearsal's transaction: a negative test under a savepoint, a check before it counts.
    one = step.alone(statement) if isinstance(step, BatchStep) else step
    try:
        if isinstance(one, BackfillStep):  # its first batches, without its checkpoint
            observed.rows, observed.detail = rehearse_backfill(one, con)
        else:
            observed.rows = run_step(plan, one, con, _UNPRINTED, state)
    except StepFailed as failed:
        observed.seconds = time.perf_counter() - started
        server = failed.server
        if server is not None and server.sqlstate == "55P03":  # lock_timeout fired
            observed.status = "would wait"
            observed.detail = _blockers(con, statement)  # the failure rolled back: none ours
        elif server is not None:
            observed.status = "failed"
            observed.detail = f"{server.message} [{server.sqlstate}]"
        else:
            observed.status = "failed"
            lines = (line.strip() for line in failed.difference or ())
            observed.detail = "; ".join([failed.message, *lines])
        return observed
    observed.seconds = time.perf_counter() - started
    if step.number in state.undone and step.expect is not None:
        observed.rows = None
        observed.detail = f"failed with {step.expect.error}, as the plan expects"
        return observed
    now = _held(con, held.existing, held.index_of)
    new = now.modes - held.modes
    strongest: dict[str, str] = {}
    for relation, mode in sorted(new, key=lambda pair: _ORDER.index(pair[1])):
        strongest[relation] = mode
    # the strongest first; a table before its indexes; then by name
    observed.locks = dict(
        sorted(
            strongest.items(),
            key=lambda item: (-_ORDER.index(item[1]), item[0] in now.index_of, item[0]),
        )
    )
    observed.index_of = {i: t for i, t in now.index_of.items() if i in strongest}
    for relation, mode in sorted(now.modes, key=lambda pair: _ORDER.index(pair[1])):
        observed.holding[relation] = mode
    held.modes = now.modes
    after = _filenodes(con)
    observed.rewritten = sorted(r for r, node in after.items() if r in files and files[r] != node)
    files.clear()
    files.update(after)
    return observed


class _Unprinted:
    """A rehearsal prints its report, not the plan's messages."""

    def line(self, text: str) -> None:
        pass

    def progress(self, label: str, done: int, total: int) -> None:
        pass

    def warning(self, position: Position, message: str, code: str) -> None:
        pass


_UNPRINTED = _Unprinted()


@dataclass
class _Held:
    """The (relation, mode) pairs this backend holds; PostgreSQL lists each mode held apart."""

    modes: set[tuple[str, str]]
    index_of: dict[str, str]  # index -> its table
    # the relations that existed before the plan, by OID: a dropped one keeps its name
    existing: dict[str, str] = field(default_factory=dict)


_NOT_CATALOG = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'"
)


def _held(con: wire.Session, existing: dict[str, str], indexes: dict[str, str]) -> _Held:
    """The relation locks this backend holds outside the system catalogs."""
    outcome = wire.extended(
        con,
        "SELECT l.relation::text, c.oid::regclass::text, l.mode, "
        "coalesce(i.indrelid::regclass::text, '') "
        "FROM pg_locks l LEFT JOIN pg_class c ON c.oid = l.relation "
        "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.granted "
        f"AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND (c.oid IS NULL OR {_NOT_CATALOG})",
        [()],
        text_rows=True,
    )
    modes, index_of = set(), dict(indexes)  # a dropped index keeps its table
    for oid, name, mode, table in outcome.rows:
        if oid not in existing:
            continue  # created by the plan: nobody else waits for it
        relation = name or existing[oid]  # a dropped one keeps its name
        modes.add((relation, _PG_MODES.get(mode, mode)))
        if table:
            index_of[relation] = table
    return _Held(modes, index_of, existing)


def _existing(con: wire.Session) -> tuple[dict[str, str], dict[str, str]]:
    """The relations before the plan ran: names by OID, and each index's table."""
    outcome = wire.extended(
        con,
        "SELECT c.oid::text, c.oid::regclass::text, coalesce(i.indrelid::regclass::text, '') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        f"LEFT JOIN pg_index i ON i.indexrelid = c.oid WHERE {_NOT_CATALOG}",
        [()],
        text_rows=True,
    )
    names = {oid: name for oid, name, _ in outcome.rows}
    return names, {name: table for _, name, table in outcome.rows if table}


def _filenodes(con: wire.Session) -> dict[str, int]:
    outcome = wire.extended(
        con,
        "SELECT c.oid::regclass::text, c.relfilenode::text FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'm', 't') "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
        [()],
        text_rows=True,
    )
    return {relation: int(node) for relation, node in outcome.rows}


def _blockers(con: wire.Session, statement: Statement) -> str:
    """Who holds locks on the tables the statement names (read after its lock_timeout)."""
    parts = []
    for relation in _relations(statement.node):
        outcome = wire.extended(
            con,
            "SELECT l.pid::text, l.mode, coalesce(nullif(a.application_name, ''), a.usename, '?') "
            "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'relation' AND l.granted AND l.relation = to_regclass($1) "
            "AND l.pid <> pg_backend_pid()",
            [(relation,)],
            text_rows=True,
        )
        holders = [
            f"pid {pid} ({app}, {_PG_MODES.get(mode, mode)})" for pid, mode, app in outcome.rows
        ]
        if holders:
            parts.append(f"{relation}, held by {', '.join(holders)}")
    if not parts:
        return "would wait for a lock another session held (released by the time it was looked for)"
    return "would wait for a lock on " + "; ".join(parts)


def _relations(tree: Any) -> list[str]:
    """Every table a parse tree names (its RangeVar nodes), in order, once each."""
    return list(
        dict.fromkeys(
            ".".join(str(node[k]) for k in ("schemaname", "relname") if node.get(k))
            for node in nodes(tree)
            if "relname" in node
        )
    )
