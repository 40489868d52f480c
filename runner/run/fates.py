"""Each step's fate from what the server said: after a unit that succeeded, and after a
connection lost in the middle of one (progress.py attributes every answer to its request)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..plan.model import AnyStep, QueryStep
from ..plan.sqlparse import block_open_after, closes_block
from . import wire
from .ledger import Fate, Ledger
from .progress import Progress, Verdict


def settle(ledger: Ledger, group: Sequence[AnyStep], after: bytes, con: wire.Session) -> None:
    """A unit that succeeded: idle after it means committed (or rolled back, if it ended its
    block with ROLLBACK); inside a block means done but open."""
    if after != b"I":
        ledger.set(group, Fate.OPEN)
        return
    last = getattr(con, "sqlplan_progress", Progress()).last_tag
    ended = Fate.ROLLED_BACK if last == "ROLLBACK" else Fate.COMMITTED
    ledger.settle_open(ended)
    ledger.set(group, Fate.COMMITTED)


def settle_lost(
    ledger: Ledger, group: Sequence[AnyStep], before: bytes, progress: Progress
) -> AnyStep:
    """The connection broke during the unit: each of its steps' fate from what the server said
    of its own requests (Progress attributes every answer to the request that caused it).
    Returns the step whose answer was awaited."""
    inside = before != b"I"
    running: AnyStep | None = None
    for step in group:
        fate = fate_of(step, progress.verdict(step.number))
        if inside and not any(closes_block(s) for s in step.statements):
            # its work belongs to the open block, which dies with the connection
            fate = Fate.ROLLED_BACK if fate is not Fate.NOT_RUN else fate
        elif fate is Fate.COMMITTED and block_open_after(step.statements, inside):
            fate = Fate.ROLLED_BACK  # it opened a block that dies with the connection
        elif any(closes_block(s) for s in step.statements):
            ledger.settle_open(fate)  # the block it ends shares its fate
        ledger.set([step], fate)
        if running is None and fate is not Fate.COMMITTED:
            running = step
    ledger.settle_open(Fate.ROLLED_BACK)  # a block still open dies with the connection
    return running or group[-1]


def fate_of(step: AnyStep, verdict: Verdict) -> Fate:
    """A step's fate from what the server said of its own requests."""
    if verdict in (Verdict.NOT_SENT, Verdict.SKIPPED):
        return Fate.NOT_RUN
    if verdict is Verdict.COMMITTED:
        return Fate.COMMITTED
    if verdict is not Verdict.UNANSWERED:
        return Fate.ROLLED_BACK  # an error, a ROLLBACK, or no commit sent: nothing kept
    if isinstance(step, QueryStep) and reads_only(step):
        return Fate.ROLLED_BACK  # a read: nothing to commit
    return Fate.IN_DOUBT


def reads_only(step: AnyStep) -> bool:
    """A plain SELECT: nothing it does can be committed (a data-modifying WITH can)."""
    statement = step.statements[0]
    if statement.kind != "SelectStmt" or statement.node.get("intoClause"):
        return False
    return not re.search(r"\b(insert|update|delete|merge)\b", statement.text, re.IGNORECASE)
