"""`sqlplan stats` against the server's own figures, and `check --stats` grading lock and rewrite
findings on tables of known sizes and traffic: small ones become notes, large ones errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import ROOT, Cli, Database
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.connect.connection import connect
from runner.plan.model import ReviewSettings
from runner.review.grades import GRADED, Limits, Stats, grade

SCHEMA = json.loads((ROOT / "schemas" / "stats.schema.json").read_text())

TABLES = """
CREATE TABLE tiny (id int PRIMARY KEY, a int);
INSERT INTO tiny SELECT g, g FROM generate_series(1, 100) g;
CREATE TABLE big (id int PRIMARY KEY, a int, pad text);
INSERT INTO big SELECT g, g, repeat('x', 200) FROM generate_series(1, 60000) g;
CREATE INDEX big_a ON big (a);
CREATE TABLE busy (id int PRIMARY KEY, a int);
INSERT INTO busy SELECT g, g FROM generate_series(1, 100) g;
CREATE SCHEMA other;
CREATE TABLE other.tiny (id int);
ANALYZE;
"""


def _stats(cli: Cli, database: Database) -> dict[str, Any]:
    database.query(TABLES)
    writer = connect(database.target)
    try:
        for _ in range(20):
            writer.run("UPDATE busy SET a = a + 1")  # 2,000 writes
        writer.run("DELETE FROM busy WHERE id <= 10")  # 10 more
        writer.run("INSERT INTO busy SELECT g, g FROM generate_series(1, 10) g")  # and 10
        writer.run("SELECT pg_stat_force_next_flush()")
    finally:
        writer.close()
    result = cli("stats", "--database-url", database.url)
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    assert list(Draft202012Validator(SCHEMA).iter_errors(document)) == []
    return document


def test_stats_are_the_server_own_figures(cli: Cli, database: Database) -> None:
    document = _stats(cli, database)
    by_name = {(t["schema"], t["name"]): t for t in document["tables"]}
    assert set(by_name) >= {
        ("public", "tiny"),
        ("public", "big"),
        ("public", "busy"),
        ("other", "tiny"),
    }
    for (schema, name), table in by_name.items():
        qualified = f'"{schema}"."{name}"'
        (row,) = database.query(
            f"SELECT reltuples::bigint, relpages, pg_relation_size('{qualified}'), "
            f"pg_total_relation_size('{qualified}') FROM pg_class WHERE oid = '{qualified}'::regclass"
        )
        assert [table["rows"], table["pages"], table["bytes"], table["total_bytes"]] == row
        indexes = database.query(
            "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x "
            f"JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = '{qualified}'::regclass "
            "ORDER BY 1"
        )
        assert [[i["name"], i["bytes"]] for i in table["indexes"]] == indexes
    assert by_name[("public", "big")]["rows"] == 60000
    assert by_name[("public", "busy")]["writes"] == 100 + 2000 + 10 + 10
    window = document["window_seconds"]
    for table in document["tables"]:  # a rate only from counters that have counted 5 minutes
        expected = round(table["writes"] / (window / 60), 3) if window >= 300 else None
        assert table["writes_per_minute"] == expected
    assert (
        document["block_size"] == database.query("SELECT current_setting('block_size')::int")[0][0]
    )


PLAN = """\
sqlplan: 1
name: graded
review: {small: 10ms, large: LARGE, busy: 1000000000000}  # writes do not count here
steps:
  - name: Index the tiny table
    batch: CREATE INDEX tiny_a ON tiny (a)
  - name: Index the big one
    batch: CREATE INDEX big_pad ON big (pad)
  - name: Rewrite the big one
    batch: ALTER TABLE big ALTER COLUMN a TYPE bigint
"""


def test_grades_follow_the_table_size(cli: Cli, database: Database) -> None:
    document = _stats(cli, database)
    (cli.cwd / "stats.json").write_text(json.dumps(document))
    big = next(t for t in document["tables"] if t["name"] == "big")
    indexes = sum(i["bytes"] for i in big["indexes"])
    build = big["bytes"] / 50e6  # the default rewrite rate, 50 MB/s
    rewrite = (big["bytes"] + indexes) / 50e6
    # "large" between the index build and the rewrite: the build is medium, the rewrite large
    assert 0.01 < build < rewrite
    large = (build + rewrite) / 2
    cli.write("plan.yaml", PLAN.replace("LARGE", f"{large * 1000:.0f}ms"))
    plain = cli("check", "plan.yaml", "--format", "json")
    graded = cli("check", "plan.yaml", "--format", "json", "--stats", "stats.json")
    before = {(d["line"], d["code"]): d for d in json.loads(plain.stdout)["diagnostics"]}
    after = {(d["line"], d["code"]): d for d in json.loads(graded.stdout)["diagnostics"]}
    assert set(before) == set(after)
    assert plain.exit_code == 0
    assert graded.exit_code == 1  # a large finding is an error
    severities = {key: d["severity"] for key, d in after.items()}
    assert severities[(6, "create-index")] == "note"  # 100 rows
    assert severities[(8, "create-index")] == "warning"  # between small and large
    assert severities[(10, "alter-column-type")] == "error"
    assert "[large: public.big: 60,000 rows" in after[(10, "alter-column-type")]["message"]
    assert f"about {rewrite:.1f} s under the lock" in after[(10, "alter-column-type")][
        "message"
    ] or (rewrite < 1 and " ms under the lock" in after[(10, "alter-column-type")]["message"])
    assert severities[(10, "lock-timeout")] == "warning"  # queueing: reads wait too
    assert json.loads(graded.stdout)["notes"] >= 1


def test_a_busy_table_is_large_however_small(cli: Cli, database: Database) -> None:
    document = _stats(cli, database)
    # The test server started moments ago: as if its counters had counted for 10 minutes
    document["window_seconds"] = 600
    for table in document["tables"]:
        table["writes_per_minute"] = table["writes"] / 10
    (cli.cwd / "stats.json").write_text(json.dumps(document))
    busy = next(t for t in document["tables"] if t["name"] == "busy")
    cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: b\nsteps:\n  - batch: CREATE INDEX busy_a ON busy (a)\n",
    )
    rate = busy["writes_per_minute"]
    cli.write("sqlplan-review.yaml", f"busy: {max(int(rate), 1)}\n")
    found = json.loads(
        cli("check", "plan.yaml", "--format", "json", "--stats", "stats.json").stdout
    )
    (diagnostic,) = found["diagnostics"]
    assert diagnostic["severity"] == "error"
    assert f"{rate:,.0f} writes/min" in diagnostic["message"]
    cli.write("sqlplan-review.yaml", f"busy: {int(rate) * 100 + 100}\n")
    found = json.loads(
        cli("check", "plan.yaml", "--format", "json", "--stats", "stats.json").stdout
    )
    assert found["diagnostics"][0]["severity"] == "note"
    cli.write("sqlplan-review.yaml", "busy: many\n")
    bad = cli("check", "plan.yaml", "--stats", "stats.json")
    assert bad.exit_code == 4
    assert "review config sqlplan-review.yaml: busy: 'many' is not of type 'integer'" in bad.stderr


def test_a_file_that_is_not_stats_is_a_configuration_error(cli: Cli) -> None:
    cli.write("plan.yaml", "sqlplan: 1\nname: b\nsteps:\n  - batch: CREATE INDEX i ON t (a)\n")
    for text, said in [
        ("[]", "not a `sqlplan stats` document"),
        ('{"version": 1, "tables": [{"name": "t"}]}', "a table without 'schema'"),
        ("{", "--stats stats.json: "),
    ]:
        cli.write("stats.json", text)
        result = cli("check", "plan.yaml", "--stats", "stats.json")
        assert result.exit_code == 4, text
        assert said in result.stderr


SIZES = st.integers(0, 10**12)


@given(
    small=SIZES,
    larger=SIZES,
    rate=st.one_of(st.none(), st.floats(0, 10**6)),
    code=st.sampled_from(sorted(GRADED)),
)
def test_a_larger_table_never_grades_lower(
    small: int, larger: int, rate: float | None, code: str
) -> None:
    low, high = sorted((small, larger))
    order = ["small", "medium", "large"]

    def level(size: int) -> str:
        table = {
            "schema": "public", "name": "t", "rows": size // 100, "bytes": size,
            "total_bytes": size * 2, "indexes": [{"name": "i", "bytes": size}],
            "writes_per_minute": rate,
        }  # fmt: skip
        found = grade(code, "t", Stats({"tables": [table]}), ReviewSettings())
        assert found is not None
        return found.level

    assert order.index(level(low)) <= order.index(level(high))


def test_limits_take_the_plan_then_the_file_then_the_defaults() -> None:
    plan = ReviewSettings(large=10.0)
    config = ReviewSettings(large=20.0, busy=5)
    limits = Limits.of(plan.over(config))
    assert (limits.large, limits.busy, limits.small, limits.rewrite_rate) == (10.0, 5.0, 1.0, 50.0)


@pytest.mark.parametrize(
    ("review", "grade", "level"),
    [
        ("{small: 1h, busy: 1000000000000}", "small", "note"),
        ("{small: 1us, large: 1h, busy: 1000000000000}", "medium", "warning"),
        ("{large: 1us}", "large", "error"),
    ],
)
def test_a_rehearsal_grades_the_locks_it_held(
    cli: Cli, database: Database, review: str, grade: str, level: str
) -> None:
    """On a copy the time a lock was held is measured: the grade follows the thresholds."""
    database.query(TABLES)
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: held\nreview: {review}\nsteps:\n"
        "  - batch: CREATE INDEX big_pad ON big (pad)\n",
    )
    result = cli("rehearse", "plan.yaml", "--database-url", database.url, "--format", "json")
    assert result.exit_code == 0, result.stderr
    (hold,) = json.loads(result.stdout)["holds"]
    assert (hold["relation"], hold["mode"], hold["grade"]) == ("big", "SHARE", grade)
    assert hold["table"]["rows"] == 60000
    sarif = cli("rehearse", "plan.yaml", "--database-url", database.url, "--format", "sarif")
    (finding,) = json.loads(sarif.stdout)["runs"][0]["results"]
    assert (finding["ruleId"], finding["level"]) == ("blocks-others", level)
    assert f"[{grade}: 60,000 rows, " in finding["message"]["text"]
