"""Generated plans whose effects are known: every step leaves rows tagged with its number in
tables `t` and `u`, so that after any run (whole, cut, interrupted) what the report claims of
each step can be held against what the database holds.

The plans mix every step kind, multi-statement batches, failing statements, explicit BEGIN and
COMMIT (or ROLLBACK) spans, SET, SHOW, DO and LISTEN inside batches, COPY and row-by-row loads
(some long enough for several flights), step settings, and a retry that succeeds at its second
attempt. A query step prints the settings it sees, so that two ways of running the same plan
can be compared step by step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hypothesis import strategies as st

SETUP = """
DROP TABLE IF EXISTS t, u;
DROP SEQUENCE IF EXISTS attempts;
CREATE TABLE t (step int, k int);
CREATE TABLE u (step int, k int, PRIMARY KEY (step, k));
CREATE SEQUENCE attempts;
CREATE OR REPLACE FUNCTION lock_once() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF nextval('attempts') % 2 = 1 THEN
    RAISE EXCEPTION 'busy' USING ERRCODE = '55P03';
  END IF;
  RETURN 0;
END$$;
"""
RESET = "TRUNCATE t, u; ALTER SEQUENCE attempts RESTART"
GRANTS = "GRANT ALL ON t, u, attempts TO {user}"

# What a query step prints: what it sees of the data and of the settings in force.
_SEEN = (
    "SELECT count(*) AS c, current_setting('statement_timeout') AS st, "
    "current_setting('lock_timeout') AS lt, current_setting('search_path') AS sp, "
    "current_setting('application_name') AS an FROM t"
)


@dataclass(frozen=True)
class Step:
    """A step before it has its number: `text(n)` is its YAML; `rows` what it leaves with
    step = n when its transaction commits; `fails` whether it fails."""

    kind: str
    body: tuple[str, ...]  # YAML lines after "- ", with {n} for the step's number
    rows: int = 0
    fails: bool = False
    retries: bool = False  # it has a retry (never inside a block)
    undone: bool = False  # inside a block that ends with ROLLBACK

    def text(self, n: int) -> str:
        lines = [line.replace("{n}", str(n)) for line in self.body]
        return "  - " + "\n    ".join(lines) + "\n"


@dataclass(frozen=True)
class GeneratedPlan:
    text: str
    rows: dict[int, int]  # per step: rows left when its transaction commits
    kept: dict[int, int]  # per step: rows left by a run that succeeds


def _statement() -> st.SearchStrategy[tuple[str, int, bool]]:
    """(SQL with {n}, rows it inserts, whether it fails) of a batch statement."""
    return st.one_of(
        st.just(("INSERT INTO t (step, k) VALUES ({n}, 1)", 1, False)),
        st.integers(2, 30).map(
            lambda m: (
                f"INSERT INTO t (step, k) SELECT {{n}}, g FROM generate_series(1, {m}) g",
                m,
                False,
            ),
        ),
        st.just(("SET application_name TO 'a{n}'", 0, False)),
        st.just(("SET search_path TO public, pg_catalog", 0, False)),
        st.just(("SHOW search_path", 0, False)),
        st.just(("DO $$BEGIN INSERT INTO t (step, k) VALUES ({n}, 0); END$$", 1, False)),
        st.just(("LISTEN c{n}", 0, False)),
        st.just(("INSERT INTO t (step, k) VALUES ({n}, 1 / (SELECT 0))", 0, True)),
    )


_SETTING = st.sampled_from(
    [(), ("statement_timeout: 4321ms",), ("lock_timeout: 1234ms",), ("statement_timeout: 7s",)]
)


@st.composite
def _batch(draw: st.DrawFn) -> Step:
    statements = draw(st.lists(_statement(), min_size=1, max_size=3))
    fails = any(f for _, _, f in statements)
    rows = 0 if fails else sum(r for _, r, _ in statements)
    body = ["batch: |", *(f"  {sql};" for sql, _, _ in statements)]
    body += list(draw(_SETTING))
    body.append("after: batch {n} done")
    return Step("batch", tuple(body), rows, fails)


@st.composite
def _execute(draw: st.DrawFn) -> Step:
    fails = draw(st.integers(0, 5)) == 0
    value = '"x"' if fails else "7"
    body = [
        "execute: INSERT INTO t (step, k) VALUES ($1, $2)",
        f"params: [{{n}}, {value}]",
        *draw(_SETTING),
        "after: execute {n} inserted {count}",
    ]
    return Step("execute", tuple(body), 0 if fails else 1, fails)


def _retried() -> Step:
    return Step(
        "execute",
        (
            "execute: INSERT INTO t (step, k) SELECT $1, lock_once()",
            "params: [{n}]",
            "retry: {attempts: 2, backoff: 10ms}",
            "after: retried {n}",
        ),
        1,
        retries=True,
    )


@st.composite
def _query(draw: st.DrawFn) -> Step:
    body = [f"query: {_SEEN}", "row: 'step {n} sees {c} {st} {lt} {sp} {an}'", *draw(_SETTING)]
    return Step("query", tuple(body))


@st.composite
def _bulk(draw: st.DrawFn) -> Step:
    copy = draw(st.booleans())
    count = draw(st.one_of(st.integers(1, 4), st.just(1500)))
    fails = draw(st.integers(0, 7)) == 0
    values = [f"[{{n}}, {i}]" for i in range(count)]
    if fails:
        values[-1] = '[{n}, "x"]'
    table = "t" if copy else "u"
    tail = "" if copy else " ON CONFLICT DO NOTHING"
    body = [
        f"bulk_insert: INSERT INTO {table} (step, k) VALUES ($1, $2){tail}",
        "rows:",
        *(f"  - {v}" for v in values),
        "after: bulk {n} loaded {count}",
    ]
    return Step("bulk", tuple(body), 0 if fails else count, fails)


def _control(sql: str) -> Step:
    return Step("batch", (f"batch: {sql}", f"after: {sql.lower()} {{n}}"))


_INNER = st.one_of(_batch(), _execute(), _query(), _bulk())


@st.composite
def _segment(draw: st.DrawFn) -> list[Step]:
    """One step outside any block, or a block: BEGIN, steps, then COMMIT or ROLLBACK (or
    nothing: the plan ends with the block open)."""
    choice = draw(st.integers(0, 9))
    if choice <= 5:
        return [draw(_INNER)]
    if choice == 6:
        return [_retried()]
    if choice == 7:
        rows = draw(st.integers(1, 3))
        return [
            Step(
                "batch",
                (
                    "batch: |",
                    "  BEGIN;",
                    f"  INSERT INTO t (step, k) SELECT {{n}}, g FROM generate_series(1, {rows}) g;",
                    "  COMMIT",
                ),
                rows,
            )
        ]
    inner = draw(st.lists(_INNER, min_size=0, max_size=3))
    end = draw(st.sampled_from(["COMMIT", "COMMIT", "ROLLBACK", None]))
    if end == "ROLLBACK":
        inner = [dataclasses.replace(s, undone=True) for s in inner]
    return [_control("BEGIN"), *inner, *([_control(end)] if end else [])]


@st.composite
def plans(draw: st.DrawFn, max_segments: int = 5) -> GeneratedPlan:
    steps: list[Step] = []
    for segment in draw(st.lists(_segment(), min_size=1, max_size=max_segments)):
        steps += segment
        ends = segment[-1].body[0] in ("batch: COMMIT", "batch: ROLLBACK")
        if segment[0].body[0] == "batch: BEGIN" and not ends:
            break  # a block left open ends the plan (a retry after it would be invalid)
    head = ["sqlplan: 1", "name: generated"]
    head += draw(st.sampled_from([[], ["lock_timeout: 2s"], ["statement_timeout: 9s"]]))
    text = "\n".join(head) + "\nsteps:\n" + "".join(s.text(n) for n, s in enumerate(steps, 1))
    rows = {n: s.rows for n, s in enumerate(steps, 1)}
    kept = {n: 0 if s.undone else s.rows for n, s in enumerate(steps, 1)}
    return GeneratedPlan(text, rows, kept)
