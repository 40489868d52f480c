"""Steps that need nothing from each other's results, sent in one round trip (turns.py says
which): each in the transaction it would have alone, the settings in force, and each step's
messages and fate from its own answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..plan.model import AnyStep, BatchStep, Plan
from . import wire
from .failures import OPEN_ROLLED_BACK, OURS_ROLLED_BACK, group_failure, roll_back
from .kinds import Vars, pieces_of, print_outcome
from .ledger import Fate, Ledger
from .messages import Output, before_fields, report_warnings, say
from .settings import reset_local, set_local


def run_group(
    plan: Plan,
    group: Sequence[AnyStep],
    con: wire.Session,
    out: Output,
    ledger: Ledger,
    *,
    state: Vars,
) -> None:
    """Steps that need nothing from each other's results, in one round trip (see turns.py)."""
    commit_each = wire.transaction_status(con) == b"I"
    pieces: list[wire.Piece] = []
    owners: list[tuple[int, int]] = []  # per piece: its step's index in the group, SQL offset
    separate = False
    for index, step in enumerate(group):
        # Alone, each step would commit at its own Sync; here the next step follows at once,
        # so each but the last is its own transaction block. An explicit BEGIN makes its
        # COMMIT one the server expects: no "there is no transaction in progress" warning.
        # A step with settings is one too: SET LOCAL holds until its COMMIT.
        separate = commit_each and (index < len(group) - 1 or bool(step.settings))
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
        for piece, offset in pieces_of(step, con):
            pieces.append(dataclasses.replace(piece, owner=number))
            owners.append((index, offset))
        if separate:
            pieces.append(wire.Piece("COMMIT", quiet=True, owner=number, commits=True))
            owners.append((index, 0))
    failure: wire.PipelineFailure | None = None
    try:
        outcomes = wire.pipeline(con, pieces, commits=commit_each and not separate)
    except wire.PipelineFailure as e:
        failure, outcomes = e, e.outcomes
    if failure is None:  # the server did it all: each step committed, or is inside the block
        ledger.set(group, Fate.COMMITTED if commit_each else Fate.OPEN)
    failed_step, offset = owners[failure.index] if failure is not None else (len(group), 0)
    results: list[list[wire.Outcome]] = [[] for _ in group]
    for (index, _), piece, outcome in zip(owners, pieces, outcomes, strict=False):
        if not piece.quiet or index == failed_step:
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
            implicit = commit_each and not step.settings
            failed = group_failure(step, failure, offset, rolled_back and not implicit)
            if commit_each and failed.rolled_back == OPEN_ROLLED_BACK:
                failed.rolled_back = OURS_ROLLED_BACK
            raise failed
        if not isinstance(step, BatchStep):
            state.rows[step.number] = step_outcomes[0].count(step.COUNTS_RETURNED)
        print_outcome(plan, step, step_outcomes, out)
