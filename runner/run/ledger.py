"""What the server has confirmed of each step: committed, rolled back, not run, or in doubt.

The engine records every step's fate as the server's answers arrive; wire.Progress attributes
each answer to the request that caused it. A step is committed only once the server has said so
of its own transaction: the CommandComplete of the COMMIT that ends it, the last
CommandComplete of a simple query that commits it (the server sends it after committing), or a
ReadyForQuery with status idle after the Sync that closes its implicit transaction. Never a
ReadyForQuery inside a block (a BEGIN's), never another step's answer. When the connection
breaks after the commit was sent and before that answer came, nobody can know: the step is in
doubt, and the report says how to look.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from ..plan.model import AnyStep, Plan
from ..plan.sqlparse import Statement


class Fate(Enum):
    COMMITTED = "committed"
    ROLLED_BACK = "rolled back"
    NOT_RUN = "not run"
    IN_DOUBT = "in doubt"
    OPEN = "open"  # done, inside a transaction block no step has ended yet


@dataclass
class Ledger:
    plan: Plan
    fates: dict[int, Fate] = field(default_factory=dict)
    running: int | None = None  # the step whose answer was awaited when the run stopped
    look: dict[int, str] = field(default_factory=dict)  # per step: a query that settles a doubt
    rows: dict[int, int] = field(
        default_factory=dict
    )  # per step that ran: rows affected or returned
    seconds: dict[int, float] = field(default_factory=dict)  # per step: its round trip's time
    shared: set[int] = field(default_factory=set)  # steps that shared a round trip with others
    captured: dict[str, object] = field(default_factory=dict)  # vars the steps captured
    attempts: dict[int, int] = field(default_factory=dict)  # steps run more than once (retry)

    def __post_init__(self) -> None:
        self.fates = {s.number: Fate.NOT_RUN for s in self.plan.steps}

    def set(self, steps: Iterable[AnyStep], fate: Fate) -> None:
        for step in steps:
            self.fates[step.number] = fate

    def settle_open(self, fate: Fate) -> None:
        """The open transaction block ended: its steps share its fate."""
        for number, current in self.fates.items():
            if current is Fate.OPEN:
                self.fates[number] = fate

    @property
    def in_doubt(self) -> bool:
        return any(f is Fate.IN_DOUBT for f in self.fates.values())

    def lines(self) -> list[str]:
        """The report: the steps in each state, in plan order, with how to check a doubt."""
        by_fate: dict[Fate, list[AnyStep]] = {}
        for step in self.plan.steps:
            fate = self.fates[step.number]
            if fate is Fate.OPEN:
                fate = Fate.ROLLED_BACK  # a block no step committed dies with the connection
            by_fate.setdefault(fate, []).append(step)
        lines = ["what the server confirmed:"]
        for fate in (Fate.COMMITTED, Fate.ROLLED_BACK, Fate.IN_DOUBT, Fate.NOT_RUN):
            steps = by_fate.get(fate, [])
            if not steps:
                continue
            if fate is Fate.IN_DOUBT:
                for step in steps:
                    lines.append(
                        f"  in doubt: {_name(step)}: {_doubt(step, self.look.get(step.number))}"
                    )
            else:
                lines.append(f"  {fate.value}: " + ", ".join(_name(s) for s in steps))
        return lines


def _name(step: AnyStep) -> str:
    named = f' "{step.name}"' if step.name else ""
    return f"step {step.number}{named} ({step.position})"


def _doubt(step: AnyStep, look: str | None = None) -> str:
    checks = list(_checks(step.statements))
    if look is not None:
        how = f"look with {look} ('succeeded': it committed; 'running': it did not)"
    elif checks:
        how = "see whether its changes are there, e.g. " + "; ".join(checks)
    else:
        how = "see whether its changes are there"
    return (
        "its commit was sent, but the connection broke before the server's answer came, so it "
        f"may or may not have committed; before running the plan again, {how}"
    )


def _checks(statements: Iterable[Statement]) -> Iterator[str]:
    """Queries that show whether a statement's effect is in the database."""
    seen = set()
    for statement in statements:
        relation = statement.node.get("relation")
        if statement.kind == "CreateStmt" and isinstance(relation, dict):
            query = "SELECT to_regclass('" + _qualified(relation).replace("'", "''") + "')"
        elif statement.kind in (
            "InsertStmt",
            "UpdateStmt",
            "DeleteStmt",
            "CopyStmt",
        ) and isinstance(relation, dict):
            query = f"SELECT count(*) FROM {_qualified(relation)}"
        else:
            continue
        if query not in seen:
            seen.add(query)
            yield query


def _qualified(relation: dict[str, object]) -> str:
    parts = [str(relation[k]) for k in ("schemaname", "relname") if relation.get(k)]
    return ".".join(_ident(p) for p in parts)


def _ident(name: str) -> str:
    if name.isidentifier() and name == name.lower() and name.isascii():
        return name
    return '"' + name.replace('"', '""') + '"'
