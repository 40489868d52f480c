"""Rows sent as COPY text arrive as they were: generated rows of text (heavy in backslashes,
tabs, line breaks and `\\N`), NULLs, numbers, booleans and secrets, in chunks small enough that
a load spans many, read back from a real server beside what each value is sent as through a
bind parameter (values.sql_text). The rows come in batches cut anywhere, as a file's do."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.plan.values import Secret, sql_text
from runner.run import wire

special = st.text(alphabet=st.sampled_from(["\\", "\t", "\n", "\r", "N", ".", "a", " ", "é", "💾"]))
anything = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
values = st.one_of(
    st.none(),
    special,
    anything,
    st.integers(-(2**63), 2**63 - 1),
    st.booleans(),
    special.map(Secret),
)
# Mostly plain text, so that the clean chunks (joined as they are) and the ones with a value to
# escape both come up, side by side in one load.
plain = st.text(alphabet="abc ,.", max_size=8)
rows = st.lists(
    st.one_of(
        st.tuples(plain, plain, plain),
        st.tuples(st.one_of(plain, st.none()), plain, plain),
        st.tuples(special, st.one_of(special, st.none()), plain),
        st.tuples(values, values, values),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(
    rows=rows,
    chunk=st.sampled_from([16, 64, 256, 1 << 18]),
    cuts=st.lists(st.integers(0, 80), max_size=6),
)
def test_rows_sent_as_copy_text_arrive_as_they_were(
    con: Any, rows: list[tuple[object, ...]], chunk: int, cuts: list[int]
) -> None:
    con.run("CREATE TABLE IF NOT EXISTS t (n serial PRIMARY KEY, a text, b text, c text)")
    con.run("TRUNCATE t RESTART IDENTITY")
    before = wire.COPY_CHUNK_BYTES
    wire.COPY_CHUNK_BYTES = chunk
    try:
        edges = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
        batches = [rows[a:b] for a, b in itertools.pairwise(edges)]
        chunks = list(wire.copy_text(con, batches))
        outcome = wire.copy_in(con, "COPY t (a, b, c) FROM STDIN", chunks)
    finally:
        wire.COPY_CHUNK_BYTES = before
    assert outcome.row_count == len(rows)
    back = [tuple(r) for r in con.run("SELECT a, b, c FROM t ORDER BY n")]
    assert back == [tuple(sql_text(v) for v in row) for row in rows]
