"""Progress forgets what no verdict needs: a bulk insert sent row by row makes one request a
row, and memory must stay flat. Held against a Progress that forgets nothing, over generated
interactions (requests of several steps, answers arriving while more are sent, errors that make
the server skip to the Sync, a connection lost at any point). No server: this is the
bookkeeping of the answers, which tests/run/test_ledger.py holds against real ones."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pg8000.core import COMMAND_COMPLETE, ERROR_RESPONSE, READY_FOR_QUERY

from runner.run import progress as progress_module
from runner.run.progress import EXECUTE, QUERY, SYNC, Progress

ERROR = b"SERROR\x00C23505\x00Mduplicate key\x00\x00"

requests = st.tuples(
    st.sampled_from([EXECUTE, EXECUTE, EXECUTE, SYNC, QUERY]),
    st.integers(1, 3),  # the owner
    st.booleans(),  # commits
)
# Each turn: requests sent, then how many of the outstanding ones the server answers, and how.
turns = st.lists(
    st.tuples(
        st.lists(requests, min_size=1, max_size=6),
        st.integers(0, 6),
        st.lists(st.sampled_from(["ok", "ok", "ok", "error", "rollback"]), min_size=6, max_size=6),
        st.sampled_from([b"I", b"T", b"E"]),
    ),
    min_size=1,
    max_size=25,
)


def _answers(progress: Progress, outcome: str, status: bytes) -> list[tuple[bytes, bytes]]:
    """The messages the server sends for the first request still waiting for its answer."""
    pending = progress.requests[progress.waiting]
    if outcome == "error":
        answer = [(ERROR_RESPONSE, ERROR)]
        return answer if pending.kind == EXECUTE else [*answer, (READY_FOR_QUERY, b"E")]
    tag = b"ROLLBACK\x00" if outcome == "rollback" else b"INSERT 0 1\x00"
    if pending.kind == EXECUTE:
        return [(COMMAND_COMPLETE, tag)]
    if pending.kind == SYNC:
        return [(READY_FOR_QUERY, status)]
    return [(COMMAND_COMPLETE, tag), (READY_FOR_QUERY, status)]


@settings(max_examples=300, deadline=None)
@given(turns)
def test_a_compacted_progress_gives_every_verdict_a_full_one_gives(
    turns: list[tuple[list[tuple[str, int, bool]], int, list[str], bytes]],
) -> None:
    full, compact = Progress(), Progress()
    old = progress_module.COMPACT_AFTER
    progress_module.COMPACT_AFTER = 10**9
    try:
        for sent, answered, outcomes, status in turns:
            for kind, owner, commits in sent:
                full.owner = owner
                full.request(kind, commits=commits)
                progress_module.COMPACT_AFTER = 2  # the other compacts at every chance
                compact.owner = owner
                compact.request(kind, commits=commits)
                progress_module.COMPACT_AFTER = 10**9
            for outcome in outcomes[:answered]:
                if full.waiting >= len(full.requests):
                    break
                for code, data in _answers(full, outcome, status):
                    full.answer(code, data)
                    compact.answer(code, data)
            # the connection may be lost here: what each says now must agree
            for owner in (1, 2, 3):
                assert compact.verdict(owner) == full.verdict(owner)
            assert compact.last_tag == full.last_tag
            assert compact.errors == full.errors
    finally:
        progress_module.COMPACT_AFTER = old


@pytest.mark.parametrize("rows", [100_000])
def test_a_long_run_of_answered_executes_is_held_in_a_few_requests(rows: int) -> None:
    progress = Progress(owner=1)
    for _ in range(rows):
        progress.request(EXECUTE)
        progress.answer(COMMAND_COMPLETE, b"INSERT 0 1\x00")
    progress.request(SYNC, commits=True)
    progress.answer(READY_FOR_QUERY, b"I")
    assert len(progress.requests) < 2 * progress_module.COMPACT_AFTER + 2
    assert progress.verdict(1).value == "committed"
