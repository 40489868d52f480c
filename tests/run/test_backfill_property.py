"""A property of the backfill step over generated tables: whatever the keys (gaps, text of any
characters, timestamps, composite keys), the bound's form and the batch size, the backfill
changes every row exactly once, in as many batches as the keys fill, as the single statement
would, and its checkpoint counts the same."""

from __future__ import annotations

import math
from typing import Any

from conftest import Cli, Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# what an array literal quotes and escapes comes often: a checkpoint is a text[]
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('",\\{} N')),
        st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    ),
    max_size=6,
)
KINDS = {
    "int": ("int", st.integers(-(2**31) + 2, 2**31 - 1), ("exclusive", "inclusive", "between")),
    "bigint": ("bigint", st.integers(-(2**62), 2**62), ("exclusive", "between")),
    "numeric": ("numeric", st.decimals(-1000, 1000, places=3), ("exclusive", "inclusive")),
    "text": ("text", TEXT, ("inclusive", "between")),
    "timestamptz": (
        "timestamptz",
        st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)),
        ("exclusive",),
    ),
}


@st.composite
def tables(draw: Any) -> tuple[list[str], list[tuple[object, ...]], str, int, bool]:
    """(key column types, distinct key tuples, the bound's form, batch size, whether each
    run stops after one batch and the next resumes)."""
    width = draw(st.sampled_from([1, 1, 2]))
    kinds = [draw(st.sampled_from(sorted(KINDS))) for _ in range(width)]
    forms = set(KINDS[kinds[0]][2])
    if width > 1:
        forms -= {"between"}
    form = draw(st.sampled_from(sorted(forms)))
    keys = draw(st.lists(st.tuples(*(KINDS[k][1] for k in kinds)), max_size=120, unique=True))
    batch = draw(st.integers(1, 40))
    stops = draw(st.booleans()) and len(keys) <= 6 * batch
    return [KINDS[k][0] for k in kinds], keys, form, batch, stops


def _sql(width: int, form: str) -> str:
    names = [f"k{i}" for i in range(width)]
    if width == 1:
        column, lower, upper = "k0", "$1", "$2"
    else:
        column = "(" + ", ".join(names) + ")"
        lower = "(" + ", ".join(f"${i + 1}" for i in range(width)) + ")"
        upper = "(" + ", ".join(f"${width + i + 1}" for i in range(width)) + ")"
    where = {
        "exclusive": f"{column} > {lower} AND {column} <= {upper}",
        "inclusive": f"{column} >= {lower} AND {column} <= {upper}",
        "between": f"{column} BETWEEN {lower} AND {upper}",
    }[form]
    return f"UPDATE t SET v = v + 1 WHERE {where}"


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tables())
def test_a_backfill_changes_every_row_once_whatever_the_keys(
    cli: Cli, database: Database, table: tuple[list[str], list[tuple[object, ...]], str, int, bool]
) -> None:
    types, keys, form, batch, stops = table
    width = len(types)
    names = [f"k{i}" for i in range(width)]
    columns = ", ".join(f"{n} {t} NOT NULL" for n, t in zip(names, types, strict=True))
    database.query(
        "DROP TABLE IF EXISTS t; DROP SCHEMA IF EXISTS sqlplan CASCADE;"
        f"CREATE TABLE t ({columns}, v int NOT NULL DEFAULT 0, PRIMARY KEY ({', '.join(names)}))"
    )
    for key in keys:
        params = {n: str(value) for n, value in zip(names, key, strict=True)}
        casts = ", ".join(f"CAST(:{n} AS {t})" for n, t in zip(names, types, strict=True))
        database.query(f"INSERT INTO t ({', '.join(names)}) VALUES ({casts})", **params)
    key_yaml = names[0] if width == 1 else "[" + ", ".join(names) + "]"
    plan = (
        "sqlplan: 1\nname: property\nsteps:\n  - backfill:\n"
        f"      key: {key_yaml}\n      batch: {batch}\n      sql: {_sql(width, form)}\n"
        '    after: "{count} rows in {batches} batches"\n'
        + ("    max_duration: 1us\n" if stops else "")
    )
    result = cli.run_plan(plan, url=database.url)
    for _ in range(7):  # each run does one batch; the next resumes from its checkpoint
        if result.exit_code != 9:
            break
        result = cli.run_plan(plan, url=database.url)
    assert result.exit_code == 0, result.stderr
    batches = math.ceil(len(keys) / batch)
    assert result.stdout == f"{len(keys)} rows in {batches} batches\n"
    assert database.query("SELECT count(*) FROM t WHERE v <> 1") == [[0]]
    assert database.query("SELECT rows, batches FROM sqlplan.backfill") == [[len(keys), batches]]
