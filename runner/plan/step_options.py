"""What a step of any kind may add to its SQL: `expect`, its settings (lock_timeout,
statement_timeout), a `retry`, and `capture`/`capture_all`."""

from __future__ import annotations

from typing import Any

from . import sqlparse
from .document import Map
from .model import (
    Capture,
    Expect,
    Retry,
)
from .settings import SETTINGS, duration, duration_problem, seconds
from .step_base import StepChecker


class StepOptions(StepChecker):
    """The keys every kind may take, beside its SQL and its messages."""

    def expect(self, index: int, node: Map, raw: dict[str, Any], kind: str) -> Expect | None:
        """expect: a count or range, a query's rows, or the error of a negative test."""
        spec = raw.get("expect")
        key = node.key("expect")
        if not isinstance(spec, dict) or key is None:
            return None
        position = self.at(key.start)
        count = spec.get("count")
        low = high = None
        if type(count) is int:
            low = high = count
        elif isinstance(count, dict):
            low, high = count.get("min"), count.get("max")
            if isinstance(low, int) and isinstance(high, int) and low > high:
                self.add(position, f"expect.count: min {low} is more than max {high}", "expect")
        rows = spec.get("rows")
        if rows is not None and kind != "query":
            self.add(position, "expect.rows is for query steps (expect a count here)", "expect")
        if "error" in spec and ("count" in spec or "rows" in spec):
            self.add(
                position,
                "expect.error is a negative test: it cannot be combined with count or rows",
                "expect",
            )
        checked: tuple[dict[str, object], ...] | None = None
        if isinstance(rows, list):
            checked = tuple(row for row in rows if isinstance(row, dict))
            names = [sorted(row) for row in checked]
            for row_index, row_names in enumerate(names):
                if row_names != names[0]:
                    offset = self.document.offset_at(["steps", index, "expect", "rows", row_index])
                    self.add(
                        self.at(offset),
                        f"expected row {row_index + 1} names {', '.join(row_names) or 'no column'}, "
                        f"but row 1 names {', '.join(names[0]) or 'no column'}: each expected row "
                        "names the same columns",
                        "expect",
                    )
            for row_index, row in enumerate(checked):
                for column, value in row.items():
                    self.check_value(["steps", index, "expect", "rows", row_index, column], value)
            self.expect_uses = tuple(self.uses([index, "expect", "rows"], list(checked)))
        return Expect(
            position=position,
            count_min=low if isinstance(low, int) else None,
            count_max=high if isinstance(high, int) else None,
            rows=checked,
            ordered=spec.get("ordered", True) is not False,
            error=spec.get("error") if isinstance(spec.get("error"), str) else None,
        )

    def settings(
        self, node: Map, raw: dict[str, Any], statements: Any
    ) -> tuple[tuple[str, str], ...]:
        """lock_timeout and statement_timeout: SET LOCAL inside the step's transaction, so
        only for statements that can run in one; and retry, likewise."""
        found = tuple((name, duration(raw[name])) for name in SETTINGS if name in raw)
        for name, value in found:
            problem = duration_problem(value)
            value_node = node.value(name)
            if problem is not None:
                self.add(
                    self.at(value_node.start if value_node else node.start),
                    f"{name}: {problem}",
                    "value",
                )
        for name in (*(n for n, _ in found), *(["retry"] if "retry" in raw else [])):
            if not sqlparse.runs_in_a_block(statements):
                key = node.key(name)
                self.add(
                    self.at(key.start if key else node.start),
                    f"{name} needs a transaction to hold it (SET LOCAL, a rollback to retry "
                    "from), and this step's SQL cannot run in one sqlplan opens: it ends or "
                    "opens a block, or runs outside any (CONCURRENTLY, VACUUM, CALL, ...)",
                    "setting-outside-transaction",
                )
        return found

    def retry(self, node: Map, raw: dict[str, Any]) -> Retry | None:
        spec = raw.get("retry")
        key = node.key("retry")
        if not isinstance(spec, dict) or key is None or not isinstance(spec.get("attempts"), int):
            return None
        backoff = seconds(duration(spec.get("backoff", "1s")))
        return Retry(spec["attempts"], backoff, self.at(key.start))

    def captures(
        self, index: int, raw: dict[str, Any], facts: sqlparse.ParsedSql
    ) -> tuple[Capture, ...]:
        """capture and capture_all: each var new, and a statement that returns rows."""
        found: list[Capture] = []
        for key, every in (("capture", False), ("capture_all", True)):
            spec = raw.get(key)
            if isinstance(spec, list):
                pairs = [
                    (column, column, ["steps", index, key, i]) for i, column in enumerate(spec)
                ]
            elif isinstance(spec, dict):
                pairs = [(var, column, ["steps", index, key, var]) for var, column in spec.items()]
            else:
                continue
            for var, column, path in pairs:
                if not isinstance(var, str) or not isinstance(column, str):
                    continue  # the schema reports it
                offset = (
                    self.document.key_offset_at(path)
                    if isinstance(spec, dict)
                    else self.document.offset_at(path)
                )
                position = self.at(offset if offset is not None else 0)
                if var in self.var_names or any(c.var == var for c in found):
                    self.add(
                        position,
                        f"var {var!r} is already declared or captured: capture it under another name",
                        "var-duplicate",
                    )
                found.append(Capture(var, column, every, position))
        if found and facts.statements and not _returns_rows(facts.statements[0]):
            self.add(
                found[0].position,
                "a capture needs the statement's rows, and it returns none: add RETURNING "
                "(INSERT, UPDATE, DELETE, MERGE) or capture from a query",
                "capture",
            )
        return tuple(found)


def _returns_rows(statement: sqlparse.Statement) -> bool:
    node = statement.node
    return statement.kind == "SelectStmt" or bool(
        node.get("returningList") or node.get("returningClause")
    )
