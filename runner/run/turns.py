"""Which consecutive steps travel together: one round trip for a run of steps that need nothing
from each other's results.

A run of steps is sent as one pipeline (Parse/Bind/Execute for every statement, one Sync at the
end). Outside a transaction block the engine puts each step but the last between BEGIN and
COMMIT, so each step still commits on its own, as it would alone; an error makes the server skip everything after
it. That is exact only for statements whose meaning does not change when they follow another
statement in the same pipeline, so a step travels with others only if all its statements are of
the kinds below. Anything else (transaction control, DO and CALL, VACUUM, CONCURRENTLY, COPY,
LOCK, cursors, SET LOCAL, ...) goes alone, exactly as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..plan.model import BULK_CHUNK_ROWS, AnyStep, BulkInsertStep, ExecuteStep, QueryStep
from ..plan.sqlparse import Statement

# Statements that mean the same alone or inside an implicit transaction a pipeline shares.
_PLAIN = frozenset(
    {
        "SelectStmt",
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "CreateStmt",
        "CreateTableAsStmt",
        "DropStmt",
        "AlterTableStmt",
        "IndexStmt",
        "ViewStmt",
        "CreateSeqStmt",
        "AlterSeqStmt",
        "CreateSchemaStmt",
        "CreateFunctionStmt",
        "CreateEnumStmt",
        "CompositeTypeStmt",
        "CreateDomainStmt",
        "CreateTrigStmt",
        "CommentStmt",
        "GrantStmt",
        "TruncateStmt",
        "RenameStmt",
        "CreateExtensionStmt",
        "VariableSetStmt",
    }
)


def plain(statement: Statement) -> bool:
    node = statement.node
    if statement.kind not in _PLAIN or node.get("concurrent"):
        return False
    if statement.kind == "VariableSetStmt":
        return _plain_set(node)
    return True


def _plain_set(node: dict[str, object]) -> bool:
    """SET of a setting that later statements of the same flight can follow.

    Not SET LOCAL (it warns outside a transaction block, but not inside a pipeline), not SET
    TRANSACTION (first statement of a transaction only), and not client_encoding or RESET ALL:
    the statements after them in the flight were encoded before the server changed encoding.
    """
    name = str(node.get("name", "")).lower()
    return (
        node.get("kind") in ("VAR_SET_VALUE", "VAR_SET_DEFAULT", "VAR_RESET")
        and not node.get("is_local")
        and name != "client_encoding"
        and not name.startswith("transaction")
    )


def travels_with_others(step: AnyStep) -> bool:
    """Whether the step can share a round trip with its neighbours."""
    if step.OWN_TRANSACTIONS or not all(plain(s) for s in step.statements):
        return False
    if step.captures or step.expect:
        return False  # its result is checked before it commits: it goes alone
    if step.retry is not None:
        return False  # it may run again alone: the same whether pipelined or not
    if isinstance(step, BulkInsertStep):
        # Inline rows only (a file's load streams on its own, with its progress bar), and in
        # one COPY or one flight: more flights need a transaction of their own.
        return step.source is None and (
            step.copy_sql is not None or len(step.rows) <= BULK_CHUNK_ROWS
        )
    return True


# The most a run sends before it reads: that much always fits in the socket buffers between
# client and server, so the client finishes writing even if the server, writing its answers,
# reads nothing more; only then does the client read. Without the bound, a run that sent a
# lot after a statement that answers a lot could leave both sides waiting on each other.
RUN_BYTES = 64 * 1024


def wire_size(step: AnyStep) -> int:
    """An upper estimate of the bytes a step sends in a run."""
    size = sum(len(s.text.encode()) + 64 for s in step.statements)
    if isinstance(step, (ExecuteStep, QueryStep)):
        size += sum(len(str(v).encode()) + 16 for v in step.params)
    elif isinstance(step, BulkInsertStep):
        size += sum(sum(len(str(v).encode()) + 16 for v in row) + 32 for row in step.rows)
    return size


def groups(steps: Iterable[AnyStep]) -> Iterator[tuple[AnyStep, ...]]:
    """The plan's steps in the runs that are sent together, in order.

    A query ends its run: its rows are checked against its template before anything after it
    is sent. A step that captures goes alone, as does one that uses what an earlier step
    captured (it needs the value before it is sent). A run sends at most RUN_BYTES.
    """
    run: list[AnyStep] = []
    size = 0
    captured: set[str] = set()
    for step in steps:
        step_size = wire_size(step)
        waits = any(f.name in captured for use in step.uses for f in use.template.fields)
        captured.update(c.var for c in step.captures)
        if not travels_with_others(step) or waits or step_size > RUN_BYTES:
            if run:
                yield tuple(run)
                run = []
            yield (step,)
            continue
        if size + step_size > RUN_BYTES:
            yield tuple(run)
            run, size = [], 0
        run.append(step)
        size += step_size
        if isinstance(step, QueryStep):
            yield tuple(run)
            run, size = [], 0
    if run:
        yield tuple(run)
