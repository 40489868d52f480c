"""The catalogue a plan learns from its own statements is the server's: after the same DDL,
the partitions, indexes (with the names PostgreSQL chose), foreign keys and views learned
offline equal what pg_catalog says, for every relation the plan created. Generated sequences
of DDL over long and non-ASCII names, run one by one on the embedded server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lock_truth import SCHEMA

from runner.plan.sqlparse import parse
from runner.review.catalog import Catalog, snapshot
from runner.review.ddl import learn
from runner.review.learned import LearnedCatalog
from runner.review.locks import describe, locks


def _learn(sql: str, learned: LearnedCatalog | None = None) -> LearnedCatalog:
    learned = learned or LearnedCatalog()
    for statement in parse(sql).statements:
        learn(learned, statement)
    return learned


def _facts(catalog: Catalog, relations: set[str]) -> dict[str, Any]:
    """What the catalogue says about `relations`, order aside."""
    return {
        relation: {
            "children": sorted(catalog.children.get(relation, [])),
            "indexes": sorted(catalog.indexes.get(relation, [])),
            "default": catalog.default.get(relation),
            "references": sorted(catalog.references.get(relation, [])),
            "referencing": sorted(catalog.referencing.get(relation, [])),
            "bases": sorted(catalog.bases.get(relation, [])),
            "views": sorted(catalog.views.get(relation, [])),
        }
        for relation in sorted(relations)
    }


def _own_tables(learned: LearnedCatalog) -> set[str]:
    return {r for r in learned.own if r not in learned.indexes}


def _own(learned: LearnedCatalog) -> set[str]:
    """The tables the plan created and followed, and their indexes."""
    tables = _own_tables(learned)
    return tables | {name for name in learned.indexes if learned.knows(name)}


def test_the_lock_truth_schema_is_learned_as_the_server_has_it(con: Any) -> None:
    con.run(SCHEMA)
    learned = _learn(SCHEMA)
    own = _own(learned)
    assert {"meas", "meas_2024", "meas_default", "child", "parent", "child_view"} <= own
    assert _facts(learned.catalog(), own) == _facts(snapshot(con.run), own)


def test_an_attached_table_keeps_an_index_only_of_the_kind_its_parent_needs(con: Any) -> None:
    """ATTACH PARTITION reuses a partition's equal index for the parent's, but a constraint's
    index only for a constraint of the same kind: every pairing, against the server."""
    kinds = {"PRIMARY KEY": "PRIMARY KEY (a, b)", "UNIQUE": "UNIQUE (a, b)", "index": None}
    for parent_kind, parent_sql in kinds.items():
        for child_kind, child_sql in kinds.items():
            sql = "\n".join(
                [
                    "CREATE TABLE p (a int NOT NULL, b int NOT NULL"
                    + (f", {parent_sql}" if parent_sql else "")
                    + ") PARTITION BY RANGE (a);",
                    *([] if parent_sql else ["CREATE UNIQUE INDEX ON p (a, b);"]),
                    "CREATE TABLE t (a int NOT NULL, b int NOT NULL"
                    + (f", {child_sql}" if child_sql else "")
                    + ");",
                    *([] if child_sql else ["CREATE UNIQUE INDEX ON t (a, b);"]),
                    "ALTER TABLE p ATTACH PARTITION t FOR VALUES FROM (0) TO (10);",
                ]
            )
            con.run("DROP SCHEMA IF EXISTS g CASCADE")
            con.run("CREATE SCHEMA g")
            con.run("SET search_path = g")
            try:
                for statement in sql.split(";\n"):
                    con.run(statement.rstrip(";"))
                learned = _learn(sql)
                own = _own(learned)
                assert {"p", "t"} <= own
                assert _facts(learned.catalog(), own) == _facts(snapshot(con.run), own), (
                    parent_kind,
                    child_kind,
                )
            finally:
                con.run("RESET search_path")
                con.run("DROP SCHEMA IF EXISTS g CASCADE")


def test_a_plan_knows_what_its_own_tables_lock() -> None:
    """No "may" on a table the plan created: the partitions and indexes are named."""
    learned = _learn(
        "CREATE TABLE m (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
        "CREATE TABLE m_1 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');"
        "CREATE TABLE m_d PARTITION OF m DEFAULT;"
    )
    (statement,) = parse("ALTER TABLE m ADD COLUMN x int").statements
    assert describe(learned.resolve(locks(statement))) == [
        "ACCESS EXCLUSIVE on m", "ACCESS EXCLUSIVE on m_1", "ACCESS EXCLUSIVE on m_d",
    ]  # fmt: skip
    (other,) = parse("ALTER TABLE elsewhere ADD COLUMN x int").statements
    assert describe(learned.resolve(locks(other))) == describe(locks(other))


def test_code_the_plan_runs_makes_its_tables_unknown_again() -> None:
    learned = _learn("CREATE TABLE m (id int) PARTITION BY RANGE (id); DO $$BEGIN END$$;")
    (statement,) = parse("ALTER TABLE m ADD COLUMN x int").statements
    assert describe(learned.resolve(locks(statement))) == describe(locks(statement))


# --- generated DDL --------------------------------------------------------------------------


@st.composite
def _identifier(draw: st.DrawFn) -> str:
    """An identifier of up to 63 bytes, often near the limit, some with two-byte characters:
    PostgreSQL's generated names are cut in bytes, on a character boundary."""
    name = draw(st.text(alphabet="abcxyzé_", min_size=1, max_size=12))
    length = draw(st.sampled_from([0, 30, 58, 61, 62, 63]))
    pad = draw(st.sampled_from(["x", "é"]))
    while len((name + pad).encode()) <= length:
        name += pad
    return name


_IDENTIFIER = _identifier()


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _State:
    column: str  # a column every table has, besides a, b and c
    names: list[str]  # drawn once: statements pick from them (and number them apart)
    tables: list[str] = field(default_factory=list)
    partitioned: list[str] = field(default_factory=list)
    partitions: list[tuple[str, str]] = field(default_factory=list)  # (partition, parent)
    keyed: list[str] = field(default_factory=list)  # tables with a unique key on (a)
    indexes: list[str] = field(default_factory=list)
    bound: int = 0
    count: int = 0

    def columns(self) -> str:
        return f"a int NOT NULL, b text, c int, {_q(self.column)} int"


def _statement(data: st.DataObject, state: _State) -> str:
    draw = data.draw
    choices = ["table", "partitioned"]
    if state.tables:
        choices += ["index", "constraint", "view", "drop", "rename", "drop index"]
    if state.keyed:
        choices += ["fk", "fk"]
    if state.partitioned:
        choices += ["partition", "partition", "attach"]
    if state.partitions:
        choices += ["detach"]
    choice = draw(st.sampled_from(choices))
    name = draw(st.sampled_from(state.names))
    state.count += 1
    if name in state.tables or name in state.indexes:  # a fresh name, long ones kept long
        name = name[: 63 - len(str(state.count)) - 2] + str(state.count)
    key_columns = draw(
        st.lists(st.sampled_from(["b", "c", state.column]), min_size=1, max_size=3, unique=True)
    )
    keys = ", ".join(_q(k) for k in key_columns)
    if choice == "table":
        extra = draw(
            st.sampled_from(
                ["", ", PRIMARY KEY (a)", ", PRIMARY KEY (a)", f", UNIQUE ({keys})", f", UNIQUE ({keys}), UNIQUE ({keys})",
                 f", CONSTRAINT {_q(name + '_k')} UNIQUE (b)", ", EXCLUDE USING btree (c WITH =)"]
            )
        )  # fmt: skip
        column_key = draw(st.sampled_from(["", " UNIQUE", " PRIMARY KEY"]))
        columns = state.columns().replace("c int", f"c int{column_key}", 1)
        return f"CREATE TABLE {_q(name)} ({columns}{extra})"
    if choice == "partitioned":
        extra = draw(st.sampled_from(["", ", PRIMARY KEY (a)", f", UNIQUE (a, {keys})"]))
        return f"CREATE TABLE {_q(name)} ({state.columns()}{extra}) PARTITION BY RANGE (a)"
    if choice == "partition":
        parent = draw(st.sampled_from(state.partitioned))
        state.bound += 10
        bound = draw(
            st.sampled_from(["DEFAULT", f"FOR VALUES FROM ({state.bound}) TO ({state.bound + 10})"])
        )
        sub = draw(st.sampled_from(["", " PARTITION BY RANGE (a)"]))
        return f"CREATE TABLE {_q(name)} PARTITION OF {_q(parent)} {bound}{sub}"
    if choice == "attach":
        parent = draw(st.sampled_from(state.partitioned))
        table = draw(st.sampled_from(state.tables))
        state.bound += 10
        return f"ALTER TABLE {_q(parent)} ATTACH PARTITION {_q(table)} FOR VALUES FROM ({state.bound}) TO ({state.bound + 10})"  # fmt: skip
    if choice == "detach":
        table, parent = draw(st.sampled_from(state.partitions))
        return f"ALTER TABLE {_q(parent)} DETACH PARTITION {_q(table)}"
    table = draw(st.sampled_from(state.tables))
    if choice == "index":
        expression = draw(
            st.sampled_from(
                [keys, "lower(b)", "(a + c)", "(b::varchar)", "coalesce(a, c)", f"{keys}, lower(b)"]
            )
        )
        include = draw(st.sampled_from(["", " INCLUDE (c)"]))
        named = draw(st.sampled_from(["", _q(name) + " "]))
        only = draw(st.sampled_from(["", "ONLY "]))
        unique = draw(st.sampled_from(["", "UNIQUE "]))
        return f"CREATE {unique}INDEX {named}ON {only}{_q(table)} ({expression}){include}"
    if choice == "constraint":
        kind = draw(st.sampled_from(["UNIQUE", "PRIMARY KEY"]))
        named = draw(st.sampled_from(["", f"CONSTRAINT {_q(name)} "]))
        return f"ALTER TABLE {_q(table)} ADD {named}{kind} (a, {keys})"
    if choice == "fk":
        target = draw(st.sampled_from(state.keyed))
        named = draw(st.sampled_from(["", f"CONSTRAINT {_q(name)} "]))
        how = draw(st.sampled_from(["ADD", "ADD COLUMN"]))
        if how == "ADD COLUMN":
            return f"ALTER TABLE {_q(table)} ADD COLUMN {_q(name)} int {named}REFERENCES {_q(target)} (a)"  # fmt: skip
        return f"ALTER TABLE {_q(table)} ADD {named}FOREIGN KEY (c) REFERENCES {_q(target)} (a)"
    if choice == "view":
        return f"CREATE VIEW {_q(name)} AS SELECT a, b FROM {_q(table)}"
    if choice == "drop":
        cascade = draw(st.sampled_from(["", " CASCADE"]))
        return f"DROP TABLE {_q(table)}{cascade}"
    if choice == "drop index" and state.indexes:
        return f"DROP INDEX {_q(draw(st.sampled_from(state.indexes)))}"
    return f"ALTER TABLE {_q(table)} RENAME TO {_q(name)}"


def test_generated_ddl_is_learned_as_the_server_has_it(con: Any) -> None:
    ran: list[int] = []
    compared: list[int] = []

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=st.data(), column=_IDENTIFIER, names=st.lists(_IDENTIFIER, min_size=3, max_size=6))
    def check(data: st.DataObject, column: str, names: list[str]) -> None:
        con.run("DROP SCHEMA IF EXISTS g CASCADE")
        con.run("CREATE SCHEMA g")
        con.run("SET search_path = g")
        state = _State(column if column not in ("a", "b", "c") else column + "_", names)
        learned = LearnedCatalog()
        done: list[str] = []
        for _ in range(data.draw(st.integers(6, 20))):
            sql = _statement(data, state)
            try:
                con.run(sql)
            except Exception:  # the grammar's statement does not apply here
                continue
            done.append(sql)
            for statement in parse(sql).statements:
                learn(learned, statement)
            _follow(state, con)
        ran.append(len(done))
        compared.append(len(_own_tables(learned)))
        own = _own(learned)
        server = snapshot(con.run)
        assert _facts(learned.catalog(), own) == _facts(server, own), "\n".join(done)

    try:
        check()
    finally:
        con.run("RESET search_path")
        con.run("DROP SCHEMA IF EXISTS g CASCADE")
    assert sum(ran) > 400  # statements run
    assert sum(compared) > 200  # tables whose facts were compared


def _follow(state: _State, con: Any) -> None:
    """The state's tables and indexes, read back from the server after each statement."""
    rows = con.run(
        "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'g' ORDER BY c.oid"
    )
    state.tables = [str(name) for name, kind in rows if kind in ("r", "p")]
    state.partitioned = [str(name) for name, kind in rows if kind == "p"]
    state.indexes = [str(name) for name, kind in rows if kind in ("i", "I")]
    state.partitions = [
        (str(child), str(parent))
        for child, parent in con.run(
            "SELECT c.relname, p.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE c.relispartition AND c.relkind IN ('r', 'p') "
            "AND c.relnamespace = 'g'::regnamespace"
        )
    ]
    state.keyed = [
        str(name)
        for (name,) in con.run(
            "SELECT DISTINCT t.relname FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE i.indisunique AND i.indkey::text = '1' AND i.indpred IS NULL "
            "AND t.relnamespace = 'g'::regnamespace"
        )
    ]
