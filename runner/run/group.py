"""Steps that need nothing from each other's results, sent in one round trip (turns.py says
which): each in the transaction it would have alone, the settings in force, and each step's
messages and fate from its own answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..plan.model import AnyStep, BatchStep, Plan
from . import wire
from .failures import OPEN_ROLLED_BACK, OURS_ROLLED_BACK, group_failure, roll_back
from .kinds import Vars, pieces_of, print_outcome
from .ledger import Fate, Ledger
from .messages import Output, before_fields, report_warnings, say
from .settings import reset_local, set_local


@dataclass
class Around:
    """What sqlplan sends with a unit's steps, in their round trip: ahead of them `lead` (a
    `once` plan's claim), in the last step's transaction `record` (sql, params: that the plan
    succeeded), and after its commit `tail` (the end stamped)."""

    lead: Sequence[wire.Piece] = ()
    record: tuple[str, tuple[object, ...]] | None = None
    tail: Sequence[wire.Piece] = ()
    answers: list[wire.Outcome] = field(default_factory=list)  # the lead's, once answered


class LeadFailed(Exception):
    """A statement of the lead failed: the server skipped everything after it, the steps
    included, and the transaction it ran in ended at the Sync; nothing of the plan ran."""

    def __init__(self, failure: wire.PipelineFailure) -> None:
        super().__init__(failure.fields.get("M", ""))
        self.failure = failure


def run_group(
    plan: Plan,
    group: Sequence[AnyStep],
    con: wire.Session,
    out: Output,
    ledger: Ledger,
    *,
    state: Vars,
    around: Around | None = None,
) -> None:
    """Steps that need nothing from each other's results, in one round trip (see turns.py),
    with what goes `around` them."""
    commit_each = wire.transaction_status(con) == b"I"
    lead = list(around.lead) if around is not None else []
    pieces: list[wire.Piece] = list(lead)
    owners: list[tuple[int, int]] = [(-1, 0)] * len(lead)  # per piece: its step's index, SQL offset
    record = around.record if around is not None else None
    tail = list(around.tail) if around is not None else []
    separate = wrapped = False
    for index, step in enumerate(group):
        # Alone, each step would commit at its own Sync; here the next step follows at once,
        # so each but the last is its own transaction block. An explicit BEGIN makes its
        # COMMIT one the server expects: no "there is no transaction in progress" warning.
        # A step with settings is one too: SET LOCAL holds until its COMMIT. So is a last step
        # with the record (in its transaction) or the tail (after its commit).
        last = index == len(group) - 1
        wrapped = commit_each and last and (record is not None or bool(tail))
        separate = commit_each and (not last or bool(step.settings) or wrapped)
        number = step.number
        if separate:
            pieces.append(wire.Piece("BEGIN", quiet=True, owner=number))
            owners.append((index, 0))
        if not commit_each:
            for name in sorted(state.local - {n for n, _ in step.settings}):
                # one statement per piece: the extended protocol
                pieces.append(wire.Piece(reset_local([name]), quiet=True, owner=number))
                owners.append((index, 0))
            state.local.clear()
        if step.settings:
            sql, params = set_local(step.settings)
            pieces.append(wire.Piece(sql, (params,), quiet=True, owner=number))
            owners.append((index, 0))
            if not commit_each:
                state.local.update(name for name, _ in step.settings)
        if last and record is not None:
            pieces.append(wire.Piece(record[0], (record[1],), quiet=True, owner=number))
            owners.append((index, 0))
        for piece, offset in pieces_of(step, con):
            pieces.append(dataclasses.replace(piece, owner=number))
            owners.append((index, offset))
        if separate:
            pieces.append(wire.Piece("COMMIT", quiet=True, owner=number, commits=True))
            owners.append((index, 0))
    pieces += tail
    owners += [(len(group), 0)] * len(tail)
    failure: wire.PipelineFailure | None = None
    try:
        outcomes = wire.pipeline(con, pieces, commits=commit_each and not separate)
    except wire.PipelineFailure as e:
        failure, outcomes = e, e.outcomes
    if around is not None:
        around.answers = outcomes[: len(lead)]
    if failure is not None and owners[failure.index][0] < 0:
        roll_back(con)  # the claim's block, where its failure came after BEGIN
        raise LeadFailed(failure)
    if failure is not None and owners[failure.index][0] >= len(group):
        failure = None  # the tail's: every step committed before it (its end is unstamped)
    if failure is None:  # the server did it all: each step committed, or is inside the block
        ledger.set(group, Fate.COMMITTED if commit_each else Fate.OPEN)
    failed_step, offset = owners[failure.index] if failure is not None else (len(group), 0)
    results: list[list[wire.Outcome]] = [[] for _ in group]
    for (index, _), piece, outcome in zip(owners, pieces, outcomes, strict=False):
        if 0 <= index < len(group) and (not piece.quiet or index == failed_step):
            results[index].append(outcome)
    for index, step in enumerate(group[: failed_step + 1]):
        step_outcomes = results[index]
        report_warnings(step, (n for o in step_outcomes for n in o.notices), out)
        if index == failed_step:
            assert failure is not None
            # each ended with its own COMMIT, or ran inside the block the failure rolls back
            ledger.set(group[:index], Fate.COMMITTED if commit_each else Fate.ROLLED_BACK)
            say(out, step.before, before_fields(plan, step))
            rolled_back = roll_back(con)
            # Reported as the step alone would be: in its implicit transaction (nothing to
            # say), in one of sqlplan's own for its settings, or in the plan's open block.
            implicit = (
                commit_each and not step.settings and not (wrapped and index == len(group) - 1)
            )
            failed = group_failure(step, failure, offset, rolled_back and not implicit)
            if commit_each and failed.rolled_back == OPEN_ROLLED_BACK:
                failed.rolled_back = OURS_ROLLED_BACK
            raise failed
        if not isinstance(step, BatchStep):
            state.rows[step.number] = step_outcomes[0].count(step.COUNTS_RETURNED)
        print_outcome(plan, step, step_outcomes, out)
