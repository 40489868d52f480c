"""What a reviewer needs to know about a valid plan: where its transactions begin and end, and
warnings about statements that destroy data or cannot run where they are placed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import Diagnostic
from ..plan.model import (
    BULK_CHUNK_ROWS,
    AnyStep,
    BackfillStep,
    BatchStep,
    BulkInsertStep,
    Plan,
)
from ..plan.settings import in_force, seconds
from ..plan.sqlparse import Statement, closes_block, non_transactional, opens_block
from .backfills import findings as backfill_findings
from .compat import COMPAT_CODES
from .compat import findings as compat_findings
from .locks import KEEPS_TABLE, NEWEST, RULES, Context, Finding, findings, locks, note
from .modes import object_names
from .pooler import POOLER_CODES
from .pooler import findings as pooler_findings

# The codes a step can silence with `allow:`; the schema's warningCode lists the same.
WARNING_CODES = (
    "drop",
    "truncate",
    "delete-without-where",
    "update-without-where",
    "no-transaction-block",
    "unnamed-concurrent-index",
    *RULES,
    *POOLER_CODES,
    *COMPAT_CODES,
)

_DROPPED = {"OBJECT_TABLE": "DROP TABLE", "OBJECT_SCHEMA": "DROP SCHEMA"}


@dataclass(frozen=True)
class Transaction:
    """How one step runs, transaction-wise."""

    step: AnyStep
    opened_by: int | None  # the step whose BEGIN is still open when this step starts
    description: str


def transactions(plan: Plan) -> list[Transaction]:
    result = []
    open_since: int | None = None
    for step in plan.steps:
        inside = open_since
        for statement in step.statements:
            if opens_block(statement) and open_since is None:
                open_since = step.number
            elif closes_block(statement):
                open_since = None
        result.append(Transaction(step, inside, _describe(step, inside, open_since)))
    return result


def _describe(step: AnyStep, inside: int | None, after: int | None) -> str:
    if inside is not None:
        text = f"inside the transaction opened by step {inside}"
        if after is None:
            text += ", which this step ends"
        return text
    if after is not None:
        return "opens a transaction block that a later step must end"
    if isinstance(step, BulkInsertStep):
        rows = len(step.rows)
        counted = f"all {rows} rows" if step.source is None else "all its rows"
        if step.copy_sql is not None:
            return f"one COPY statement: {counted} or none"
        if step.source is not None:
            return f"one transaction (BEGIN/COMMIT around flights of {BULK_CHUNK_ROWS} rows): all rows or none"
        if rows <= BULK_CHUNK_ROWS:
            return f"one transaction: all {rows} rows or none (one flight; its Sync commits)"
        flights = -(-rows // BULK_CHUNK_ROWS)
        return f"one transaction: BEGIN, {rows} rows in {flights} flights, COMMIT; all rows or none"
    if isinstance(step, BackfillStep):
        return (
            f"a transaction per batch of {step.batch:,} keys, each committing its checkpoint "
            "in sqlplan.backfill with its changes"
        )
    if isinstance(step, BatchStep) and len(step.statements) > 1:
        return f"one implicit transaction: its {len(step.statements)} statements commit together or not at all"
    return "its own transaction (autocommit)"


def warnings(
    plan: Plan,
    version: int | None = None,
    *,
    pooler: bool = False,
    compat: bool = False,
    created: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    """Every review warning of the plan: data it destroys, statements placed where they cannot
    run, and the locks and rewrites of its DDL for PostgreSQL `version` (else the plan's own
    `postgres:`, else the newest); with `pooler`, what a transaction-mode pooler breaks; with
    `compat`, what breaks the application code still running on the old schema. `created`:
    tables that plans new in the same change created before this one (exempt, as the plan's
    own: nobody uses them yet)."""
    found: list[Diagnostic] = []

    def warn(
        step: AnyStep, statement: Statement, code: str, message: str, relation: str = ""
    ) -> None:
        if code in step.allow:
            return
        found.append(
            Diagnostic(
                step.sql.locate(statement.offset),
                f"{step.label}: {message} (if intended, add '{code}' to the step's allow list)",
                code,
                severity="warning",
                context=statement.text,
                relation=relation,
            )
        )

    for transaction in transactions(plan):
        step = transaction.step
        in_block = (
            transaction.opened_by is not None
            or isinstance(step, BulkInsertStep)
            or (isinstance(step, BatchStep) and len(step.statements) > 1)
        )
        for statement in step.statements:
            for code, message in _statement_warnings(statement, in_block):
                warn(step, statement, code, message)
    for step, statement, code, message in backfill_findings(plan):
        warn(step, statement, code, message)
    for step, statement, finding in lock_findings(
        plan, version or plan.postgres or NEWEST, created
    ):
        warn(step, statement, finding.code, finding.message, finding.relation)
    if pooler:
        for step, statement, code, message in pooler_findings(plan):
            warn(step, statement, code, message)
    if compat:
        for step, statement, code, message in compat_findings(plan, created):
            warn(step, statement, code, message)
    return found


def lock_findings(
    plan: Plan, version: int, created: frozenset[str] = frozenset()
) -> Iterator[tuple[AnyStep, Statement, Finding]]:
    """The lock rules, statement by statement, with what the plan did before each (tables it
    created, a lock_timeout it set) and what runs in the same transaction after it; `created`
    are tables new plans before it created."""
    context = Context(version=version, created=set(created))
    pending: list[tuple[AnyStep, Statement]] = []  # the transaction so far
    in_block = False
    for step in in_force(plan, {}).steps:
        context.step_lock_timeout = any(
            name == "lock_timeout" and seconds(value) > 0 for name, value in step.settings
        )
        if not in_block:
            yield from _held(pending, context)
            pending = []
        for statement in step.statements:
            if opens_block(statement):
                yield from _held(pending, context)
                pending, in_block = [], True
                continue
            if closes_block(statement):
                yield from _held(pending, context)
                pending, in_block = [], False
                continue
            for finding in findings(statement, context):
                yield step, statement, finding
            pending.append((step, statement))
            note(statement, context)
    yield from _held(pending, context)


def _held(
    transaction: list[tuple[AnyStep, Statement]], context: Context
) -> Iterator[tuple[AnyStep, Statement, Finding]]:
    """An ACCESS EXCLUSIVE lock is held until its transaction ends: name what runs under it."""
    for index, (step, statement) in enumerate(transaction):
        remaining = len(transaction) - index - 1  # no slice of the rest: linear in its length
        if not remaining or statement.kind not in KEEPS_TABLE:
            continue
        for lock in locks(statement, context.version):
            if (
                lock.mode != "ACCESS EXCLUSIVE"
                or lock.relation.rsplit(".", 1)[-1] in context.created
            ):
                continue
            shown = "; ".join(first_line(s.text) for _, s in transaction[index + 1 : index + 4]) + (
                "; ..." if remaining > 3 else ""
            )
            yield (
                step,
                statement,
                Finding(
                    "held-lock",
                    f"the ACCESS EXCLUSIVE lock on {lock.relation} taken here is held until the "
                    f"transaction ends, while {remaining} more "
                    f"{'statements run' if remaining != 1 else 'statement runs'} under it "
                    f"({shown}): every query on "
                    f"{lock.relation} waits meanwhile; commit right after it",
                    lock.relation,
                ),
            )
            break


def first_line(text: str, width: int = 40) -> str:
    """A statement's first line, cut to `width` characters with an ellipsis."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _statement_warnings(statement: Statement, in_block: bool) -> Iterator[tuple[str, str]]:
    kind, node = statement.kind, statement.node
    if kind == "DropStmt" and node.get("removeType") in _DROPPED:
        names = object_names(node.get("objects", []))
        them = "them and all their" if len(names) > 1 else "it and all its"
        yield "drop", f"{_DROPPED[node['removeType']]} {', '.join(names)} deletes {them} data"
    elif kind == "DropdbStmt":
        yield "drop", f"DROP DATABASE {node.get('dbname', '')} deletes the database"
    elif kind == "TruncateStmt":
        yield "truncate", "TRUNCATE deletes every row"
    elif kind == "DeleteStmt" and "whereClause" not in node:
        yield "delete-without-where", "DELETE without WHERE deletes every row"
    elif kind == "UpdateStmt" and "whereClause" not in node:
        yield "update-without-where", "UPDATE without WHERE changes every row"
    if kind == "IndexStmt" and node.get("concurrent") and not node.get("idxname"):
        yield (
            "unnamed-concurrent-index",
            "CREATE INDEX CONCURRENTLY without a name: a build that fails or is interrupted "
            "leaves an INVALID index that cannot be found by name to be dropped and built again",
        )
    if in_block:
        name = non_transactional(statement)
        if name:
            yield (
                "no-transaction-block",
                f"{name} cannot run inside a transaction block, and this step runs it in one",
            )


def created_tables(plan: Plan) -> set[str]:
    """The tables a plan creates (bare names): CREATE TABLE, CREATE TABLE AS."""
    found = set()
    for step in plan.steps:
        for statement in step.statements:
            node = statement.node
            relation = node.get("relation") if statement.kind == "CreateStmt" else None
            if statement.kind == "CreateTableAsStmt":
                relation = node.get("into", {}).get("rel")
            if isinstance(relation, dict) and isinstance(relation.get("relname"), str):
                found.add(relation["relname"])
    return found
