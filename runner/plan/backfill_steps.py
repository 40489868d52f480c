"""A backfill step: one statement over a table's key range, batch by batch. What can be
checked without a database is checked here: one data-changing statement, the key range it is
limited to ($1..$n the lower bound, $n+1..$2n the upper), and the table it walks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import sqlparse
from .document import Map
from .model import BackfillStep
from .settings import duration, seconds
from .step_base import StepChecker

DEFAULT_BATCH = 1000
_CHANGES = ("UpdateStmt", "DeleteStmt", "InsertStmt", "MergeStmt")
_LOWER = {">": False, ">=": True}  # operator -> inclusive
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


class BackfillBuilder(StepChecker):
    """Builds a backfill step once what every step shares is built."""

    def backfill(
        self,
        index: int,
        node: Map,
        raw: dict[str, Any],
        facts: sqlparse.ParsedSql,
        common: dict[str, Any],
    ) -> BackfillStep:
        spec: dict[str, Any] = raw["backfill"]
        sql = common["sql"]
        key = (spec["key"],) if isinstance(spec["key"], str) else tuple(spec["key"])
        statement = facts.statements[0]
        if len(facts.statements) > 1:
            self.add(
                sql.locate(facts.statements[1].offset),
                f"a backfill step runs exactly one statement, but its SQL has "
                f"{len(facts.statements)}",
                "one-statement",
            )
        if statement.kind not in _CHANGES:
            self.add(
                sql.locate(statement.offset),
                "a backfill's SQL is one UPDATE, DELETE, INSERT or MERGE, limited to a batch's "
                "key range",
                "backfill-statement",
            )
        self.check_placeholders(sql, facts)  # type: ignore[attr-defined]
        table = _table(spec.get("table"), statement)
        if table is None:
            self.add(
                self.at(node.key("backfill").start),  # type: ignore[union-attr]
                "a backfill needs `table`: its SQL does not update or delete from one table "
                "whose key it could walk",
                "backfill-table",
            )
            table = ()
        inclusive = self._range(sql, facts, key)
        timing = {
            name: seconds(duration(raw[name])) if name in raw else None
            for name in ("pause", "batch_time", "max_duration")
        }
        return BackfillStep(
            **common,
            table=table,
            key=key,
            batch=int(spec.get("batch", DEFAULT_BATCH)),
            lower_inclusive=inclusive,
            pause=timing["pause"] or 0.0,
            batch_time=timing["batch_time"] or None,
            max_duration=timing["max_duration"] or None,
            before=self.message(node, raw, "before", ()),
            after=self.message(node, raw, "after", ("count", "batches")),
        )

    def _range(self, sql: Any, facts: sqlparse.ParsedSql, key: tuple[str, ...]) -> bool:
        """Whether the lower bound is inclusive; a diagnostic where the SQL does not limit
        itself to the batch's key range, or takes other parameters."""
        width = len(key)
        lower = _row([f"${i}" for i in range(1, width + 1)])
        upper = _row([f"${i}" for i in range(width + 1, 2 * width + 1)])
        column = _row(list(key))
        example = f"{column} > {lower} AND {column} <= {upper}"
        found_lower: bool | None = None
        found_upper = False
        for op, side in _bounds(facts.statements[0].node, key):
            if side == 0 and op in _LOWER:
                found_lower = _LOWER[op] if found_lower is None else found_lower
            elif side == 1 and op == "<=":
                found_upper = True
            elif side == 1 and op == "<":
                self.add(
                    sql.position,
                    f"the batch's upper bound is inclusive: sqlplan passes {upper} as the "
                    f"batch's last key, so write {column} <= {upper}",
                    "backfill-range",
                )
                found_upper = True
        if found_lower is None or not found_upper:
            missing = " and ".join(
                part
                for part, gone in (
                    (f"{column} > {lower}", found_lower is None),
                    (f"{column} <= {upper}", not found_upper),
                )
                if gone
            )
            self.add(
                sql.position,
                f"a backfill's SQL must limit each batch to its key range ({example}, "
                f"anded with the rest of its WHERE): it lacks {missing}; sqlplan passes "
                f"{lower} as the last key of the batch before and {upper} as this batch's last",
                "backfill-range",
            )
        if facts.highest_placeholder > 2 * width:
            self.add(
                sql.position,
                f"a backfill's SQL takes only its key range ($1..${2 * width}), but it uses "
                f"${facts.highest_placeholder}: write other values into the SQL itself",
                "backfill-range",
            )
        return bool(found_lower)


def _row(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + ", ".join(parts) + ")"


def _table(named: str | None, statement: sqlparse.Statement) -> tuple[str, ...] | None:
    if named is not None:
        return tuple(named.split(".", 1)) if "." in named else (named,)
    relation = statement.node.get("relation")
    if statement.kind in ("UpdateStmt", "DeleteStmt") and isinstance(relation, dict):
        return tuple(str(relation[k]) for k in ("schemaname", "relname") if relation.get(k))
    return None


def _bounds(tree: Any, key: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """(operator, 0 for the lower bound / 1 for the upper) of each comparison of the key with
    its range's parameters, read as `key OP parameter`, wherever the statement makes it."""
    width = len(key)
    lower = list(range(1, width + 1))
    upper = list(range(width + 1, 2 * width + 1))
    for expr in _a_exprs(tree):
        kind = expr.get("kind")
        left, right = expr.get("lexpr"), expr.get("rexpr")
        if kind == "AEXPR_BETWEEN" and _columns(left) == key and width == 1:
            items = right.get("List", {}).get("items", []) if isinstance(right, dict) else []
            if [_params([i]) for i in items] == [[1], [2]]:
                yield ">=", 0
                yield "<=", 1
            continue
        if kind != "AEXPR_OP":
            continue
        op = expr["name"][-1]["String"]["sval"]
        if _columns(right) == key:  # `$1 < id`: read as `id > $1`
            left, right, op = right, left, _MIRROR.get(op, op)
        if _columns(left) != key:
            continue
        if not isinstance(right, dict):
            continue
        params = _params(right.get("RowExpr", {}).get("args", []) if width > 1 else [right])
        if params == lower:
            yield op, 0
        elif params == upper:
            yield op, 1


def _a_exprs(tree: Any) -> Iterator[dict[str, Any]]:
    if isinstance(tree, dict):
        for name, value in tree.items():
            if name == "A_Expr" and isinstance(value, dict):
                yield value
            yield from _a_exprs(value)
    elif isinstance(tree, list):
        for item in tree:
            yield from _a_exprs(item)


def _columns(node: Any) -> tuple[str, ...] | None:
    """The column names a ColumnRef or ROW(...) of them names (the last part of each)."""
    if not isinstance(node, dict):
        return None
    refs = node["RowExpr"].get("args", []) if "RowExpr" in node else [node]
    names = []
    for ref in refs:
        fields = ref.get("ColumnRef", {}).get("fields") if isinstance(ref, dict) else None
        if not fields or "String" not in fields[-1]:
            return None
        names.append(fields[-1]["String"]["sval"])
    return tuple(names)


def _params(nodes: list[Any]) -> list[int] | None:
    numbers = []
    for node in nodes:
        ref = node.get("ParamRef") if isinstance(node, dict) else None
        if ref is None:
            return None
        numbers.append(int(ref.get("number", 0)))
    return numbers
