"""What `check` can tell of a backfill's key without a database: when the plan created the
table itself, whether it gave the key a unique index (run time checks it always)."""

from __future__ import annotations

import json
from collections.abc import Iterator

from ..plan.model import AnyStep, BackfillStep, Plan
from ..plan.sqlparse import Statement
from .ddl import learn
from .learned import LearnedCatalog


def findings(plan: Plan) -> Iterator[tuple[AnyStep, Statement, str, str]]:
    """(step, statement, code, message) for each backfill over a table the plan created
    without a primary key or unique constraint on exactly its key."""
    learned = LearnedCatalog()
    for step in plan.steps:
        if isinstance(step, BackfillStep) and step.table:
            table = step.table[-1]
            if table in learned.own and not any(
                index.table == table and _unique_on(index.definition, step.key)
                for index in learned.indexes.values()
            ):
                key = ", ".join(step.key)
                yield (
                    step,
                    step.statements[0],
                    "backfill-key",
                    f"the backfill walks {table} by ({key}), but the plan creates {table} "
                    f"without a primary key or unique constraint on ({key}): the run refuses a "
                    "key without a unique index on exactly its columns",
                )
        for statement in step.statements:
            learn(learned, statement)


def _unique_on(definition: str, key: tuple[str, ...]) -> bool:
    """A unique index without predicate on exactly the key's columns, in its order."""
    unique, columns, _, where = json.loads(definition)
    return bool(unique) and where is None and tuple(columns) == key
