"""The scope a step whose result is checked before it commits runs in (its `expect`, its
captures): one rule and one path for every kind that takes them (execute, query, bulk_insert).

Outside a transaction block the step runs in a transaction of its own, committed once the
checks pass, so that a failed check keeps nothing of it. A negative test (`expect.error`)
inside a block the plan opened runs under a savepoint, which its expected error rolls back
while the block goes on. Any other step inside a block runs in it, and a failed check rolls
the block back.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ExpectationFailed, StepFailed
from ..plan.model import AnyStep
from . import captures, expectations, wire
from .failures import roll_back, step_failed

SAVEPOINT = "sqlplan_expect"


@dataclass
class Checked:
    con: wire.Session
    step: AnyStep
    ours: bool  # a transaction of its own, which COMMIT ends once the checks pass
    savepoint: bool  # a negative test inside the plan's block, under a savepoint

    @classmethod
    def scope(cls, con: wire.Session, step: AnyStep) -> Checked:
        ours = wire.transaction_status(con) == b"I"
        negative = step.expect is not None and step.expect.error is not None
        return cls(con, step, ours, negative and not ours)

    @property
    def opening(self) -> str | None:
        """What opens the scope, sent with the step's statement or just before it."""
        return "BEGIN" if self.ours else (f"SAVEPOINT {SAVEPOINT}" if self.savepoint else None)

    def undo(self) -> None:
        """Roll back what the step did: its own transaction, or its savepoint."""
        if self.ours:
            wire.simple(self.con, "ROLLBACK")
        elif self.savepoint:
            wire.simple(
                self.con, f"ROLLBACK TO SAVEPOINT {SAVEPOINT}; RELEASE SAVEPOINT {SAVEPOINT}"
            )

    def expected(self, failure: wire.ServerFailure) -> bool:
        """Whether the server's error is the one the step's `expect` names; if so, what the
        step did is undone and the plan goes on."""
        expect = self.step.expect
        if expect is None or failure.fields.get("C") != expect.error:
            return False
        self.undo()
        return True

    def refused(
        self, check: captures.CaptureFailed | expectations.Unmet, kept: str | None = None
    ) -> StepFailed:
        """A check that failed: what the step did is rolled back (its savepoint, else the
        transaction it is in); the failure to raise, saying what was kept (`kept`: the kind's
        own words for it)."""
        if self.savepoint:
            self.undo()
        else:
            roll_back(self.con)
        kept = kept or (
            "its transaction was rolled back: nothing it did was kept"
            if self.ours or self.savepoint
            else "the open transaction was rolled back"
        )
        if isinstance(check, expectations.Unmet):
            return ExpectationFailed(
                check.message,
                position=check.position,
                sql=self.step.sql.text,
                step=self.step.number,
                rolled_back=kept,
                difference=check.difference,
            )
        return step_failed(self.step, check.message, position=check.position, rolled_back=kept)

    def commit(self) -> None:
        """The checks passed: a transaction of the step's own commits (a savepoint stays, part
        of the plan's block)."""
        if self.ours:
            wire.simple(self.con, "COMMIT", commits=True)
