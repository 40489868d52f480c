"""What does not survive a transaction-mode pooler (PgBouncer's pool_mode = transaction,
Neon's -pooler hosts): the pooler gives the client a server connection for one transaction
at a time, so anything that outlives a transaction on that connection is lost to this client
and left to the next one. Each finding is a review warning at the statement's line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..plan.model import AnyStep, Plan
from ..plan.sqlparse import Statement, closes_block, nodes, opens_block

POOLER_CODES = (
    "pooler-session-set",
    "pooler-advisory-lock",
    "pooler-listen",
    "pooler-temp-table",
    "pooler-prepare",
)

_SESSION_LOCKS = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
        "pg_advisory_unlock",
        "pg_advisory_unlock_shared",
        "pg_advisory_unlock_all",
    }
)
_CURSOR_OPT_HOLD = 0x0020
_NEXT = "a later transaction may run on another server connection"


def findings(plan: Plan) -> Iterator[tuple[AnyStep, Statement, str, str]]:
    """(step, statement, code, message) for each thing the plan does that a transaction-mode
    pooler breaks."""
    temp: dict[str, tuple[int, int | None]] = {}  # name -> (step, the block it was made in)
    opened_by: int | None = None
    for step in plan.steps:
        for statement in step.statements:
            block = opened_by
            yield from _statement(step, statement)
            for name in _temp_tables(statement):
                temp[name] = (step.number, block)
            for name in _relations(statement):
                if name in temp and statement.kind not in ("CreateStmt", "CreateTableAsStmt"):
                    made, made_in = temp[name]
                    if made != step.number and (made_in is None or made_in != block):
                        yield (
                            step,
                            statement,
                            "pooler-temp-table",
                            f"temporary table {name} was created by step {made} in another "
                            f"transaction: through a transaction pooler {_NEXT}, which does "
                            "not have it (create and use it inside one BEGIN ... COMMIT)",
                        )
            if opens_block(statement) and opened_by is None:
                opened_by = step.number
            elif closes_block(statement):
                opened_by = None


def _statement(
    step: AnyStep, statement: Statement
) -> Iterator[tuple[AnyStep, Statement, str, str]]:
    kind, node = statement.kind, statement.node
    if kind == "VariableSetStmt" and not node.get("is_local"):
        name = str(node.get("name") or "all settings")
        if not name.startswith("transaction"):
            yield (
                step,
                statement,
                "pooler-session-set",
                f"SET {name} lasts for the server connection, which a transaction pooler gives "
                "to other clients once this transaction ends: this plan's next transaction may "
                "not have it, and another client may (use SET LOCAL inside a block, or the "
                "plan's lock_timeout and statement_timeout)",
            )
    elif kind == "ListenStmt":
        yield (
            step,
            statement,
            "pooler-listen",
            f"LISTEN waits on the server connection, which a transaction pooler takes back once "
            f"the transaction ends: {_NEXT}, and the notifications are lost",
        )
    elif kind == "PrepareStmt" or (
        kind == "DeclareCursorStmt" and int(node.get("options", 0)) & _CURSOR_OPT_HOLD
    ):
        what = "PREPARE" if kind == "PrepareStmt" else "a cursor WITH HOLD"
        yield (
            step,
            statement,
            "pooler-prepare",
            f"{what} lives on the server connection after the transaction: through a "
            f"transaction pooler {_NEXT}, which does not have it",
        )
    for function in sorted(_functions(node) & _SESSION_LOCKS):
        yield (
            step,
            statement,
            "pooler-advisory-lock",
            f"{function}() is a session-level lock: through a transaction pooler it stays on "
            "the server connection after the transaction, held for whichever client gets it "
            "next (use pg_advisory_xact_lock, released at the end of the transaction)",
        )


def _functions(node: Any) -> set[str]:
    found = set()
    for item in nodes(node):
        call = item.get("FuncCall")
        if isinstance(call, dict):
            names = [n.get("String", {}).get("sval", "") for n in call.get("funcname", [])]
            if names:
                found.add(str(names[-1]).lower())
    return found


def _temp_tables(statement: Statement) -> list[str]:
    node = statement.node
    relation = None
    if statement.kind == "CreateStmt":
        relation = node.get("relation")
        if node.get("oncommit") == "ONCOMMIT_DROP":
            return []
    elif statement.kind == "CreateTableAsStmt":
        into = node.get("into", {})
        relation = into.get("rel")
        if into.get("onCommit") == "ONCOMMIT_DROP":
            return []
    if isinstance(relation, dict) and relation.get("relpersistence") == "t":
        return [str(relation.get("relname"))]
    return []


def _relations(statement: Statement) -> set[str]:
    found = set()
    for item in nodes(statement.node):
        relation = item.get("RangeVar")
        if isinstance(relation, dict) and relation.get("schemaname") in (None, "pg_temp"):
            found.add(str(relation.get("relname")))
        if (
            "relname" in item
            and "relpersistence" in item
            and item.get("schemaname") in (None, "pg_temp")
        ):
            found.add(str(item["relname"]))
    return found
