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
    PARTIAL = "committed in part"  # a backfill that stopped between batches: some committed


@dataclass
class Batches:
    """What a backfill step's batches did: in this run, and in all (its checkpoint)."""

    ident: str  # its checkpoint's id in sqlplan.backfill
    key: tuple[str, ...]
    look: str  # a query that shows the checkpoint
    batches: int = 0  # committed by this run
    rows: int = 0  # changed by the batches this run committed
    total_batches: int = 0  # committed by every run, as the checkpoint counts them
    total_rows: int = 0
    checkpoint: list[str] | None = None  # the last key done; None: no batch yet
    resumed_from: list[str] | None = None  # where this run started, when an earlier one left it
    doubt: list[str] | None = None  # the last key of a batch whose commit went unanswered
    finished: str | None = None  # when the last batch was done (this run or an earlier one)
    earlier: bool = False  # an earlier run finished it: this one ran nothing
    longest: float = 0.0  # seconds: this run's longest batch, BEGIN to its last answer

    @property
    def fate(self) -> Fate:
        """The step's fate when it stopped before its end."""
        if self.doubt is not None:
            return Fate.IN_DOUBT
        return Fate.PARTIAL if self.batches else Fate.ROLLED_BACK

    def where(self, key: list[str] | None) -> str:
        if key is None:
            return "before the first key"
        return ", ".join(f"{c} = {v}" for c, v in zip(self.key, key, strict=False))

    def figures(self) -> str:
        """What its batches did, in a line."""
        return (
            f"{self.batches:,} {'batch' if self.batches == 1 else 'batches'} committed in "
            f"this run ({self.rows:,} rows changed); in all {self.total_batches:,} "
            f"({self.total_rows:,} rows), checkpoint at {self.where(self.checkpoint)}"
        )

    def text(self) -> str:
        """What its batches did, and what the next run does."""
        if self.finished is not None:
            ended = "by an earlier run" if self.earlier else "in this run"
            return f"{self.figures()}; finished {ended}, at {self.finished}"
        if self.doubt is not None:
            return (
                f"{self.figures()}; the batch up to {self.where(self.doubt)} sent its commit, "
                "but the connection broke before the answer came: it may or may not have "
                f"committed. Its checkpoint commits with it, so {self.look} tells (last_key "
                f"{{{', '.join(self.doubt)}}}: it committed), and the next run resumes from "
                "whichever it is"
            )
        return f"{self.figures()}; the next run resumes after it"


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
    backfills: dict[int, Batches] = field(default_factory=dict)  # per backfill step that ran

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

    def stopped(self, step: AnyStep) -> None:
        """A step stopped before its end: a backfill's fate is what its batches did."""
        figures = self.backfills.get(step.number)
        if figures is not None and not figures.earlier:
            self.fates[step.number] = figures.fate

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
        for fate in (Fate.COMMITTED, Fate.PARTIAL, Fate.ROLLED_BACK, Fate.IN_DOUBT, Fate.NOT_RUN):
            steps = by_fate.get(fate, [])
            if not steps:
                continue
            if fate in (Fate.PARTIAL, Fate.IN_DOUBT):
                for step in steps:
                    batches = self.backfills.get(step.number)
                    said = (
                        batches.text()
                        if batches is not None
                        else _doubt(step, self.look.get(step.number))
                    )
                    lines.append(f"  {fate.value}: {_name(step)}: {said}")
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
