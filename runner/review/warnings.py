"""What a reviewer needs to know about a valid plan: where its transactions begin and end, and
warnings about statements that destroy data or cannot run where they are placed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import Diagnostic
from ..plan.model import BULK_CHUNK_ROWS, AnyStep, BatchStep, BulkInsertStep, Plan
from ..plan.sqlparse import Statement, closes_block, opens_block

# The codes a step can silence with `allow:`; the schema's enum for `allow` lists the same.
WARNING_CODES = (
    "drop",
    "truncate",
    "delete-without-where",
    "update-without-where",
    "no-transaction-block",
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
    if isinstance(step, BatchStep) and len(step.statements) > 1:
        return f"one implicit transaction: its {len(step.statements)} statements commit together or not at all"
    return "its own transaction (autocommit)"


def warnings(plan: Plan) -> list[Diagnostic]:
    found = []
    for transaction in transactions(plan):
        step = transaction.step
        in_block = (
            transaction.opened_by is not None
            or isinstance(step, BulkInsertStep)
            or (isinstance(step, BatchStep) and len(step.statements) > 1)
        )
        for statement in step.statements:
            for code, message in _statement_warnings(statement, in_block):
                if code in step.allow:
                    continue
                found.append(
                    Diagnostic(
                        step.sql.locate(statement.offset),
                        f"{step.label}: {message} (if intended, add '{code}' to the step's allow list)",
                        code,
                        severity="warning",
                    )
                )
    return found


def _statement_warnings(statement: Statement, in_block: bool) -> Iterator[tuple[str, str]]:
    kind, node = statement.kind, statement.node
    if kind == "DropStmt" and node.get("removeType") in _DROPPED:
        names = _names(node.get("objects", []))
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
    if in_block:
        name = _outside_transactions_only(statement)
        if name:
            yield (
                "no-transaction-block",
                f"{name} cannot run inside a transaction block, and this step runs it in one",
            )


def _outside_transactions_only(statement: Statement) -> str | None:
    """The statement's name if PostgreSQL refuses to run it inside a transaction block."""
    kind, node = statement.kind, statement.node
    if kind == "CreatedbStmt":
        return "CREATE DATABASE"
    if kind == "DropdbStmt":
        return "DROP DATABASE"
    if kind == "VacuumStmt" and node.get("is_vacuumcmd"):
        return "VACUUM"
    if kind == "IndexStmt" and node.get("concurrent"):
        return "CREATE INDEX CONCURRENTLY"
    if kind == "DropStmt" and node.get("concurrent"):
        return "DROP INDEX CONCURRENTLY"
    if kind == "ReindexStmt" and "concurrently" in _defnames(node.get("params", [])):
        return "REINDEX CONCURRENTLY"
    if kind == "AlterSystemStmt":
        return "ALTER SYSTEM"
    if kind in ("CreateTableSpaceStmt", "DropTableSpaceStmt"):
        return "CREATE TABLESPACE" if kind.startswith("Create") else "DROP TABLESPACE"
    return None


def _defnames(params: list[Any]) -> list[str]:
    return [p.get("DefElem", {}).get("defname", "") for p in params if isinstance(p, dict)]


def _names(objects: list[Any]) -> list[str]:
    """Qualified names from a DropStmt's objects: [List[String...]] or [String]."""
    names = []
    for item in objects:
        parts = item.get("List", {}).get("items", [item]) if isinstance(item, dict) else []
        names.append(
            ".".join(p.get("String", {}).get("sval", "?") for p in parts if isinstance(p, dict))
        )
    return names
