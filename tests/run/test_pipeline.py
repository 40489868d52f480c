"""Steps that travel together in one round trip behave exactly as when each goes alone.

Every case runs twice on the same database, pipelined and with --no-pipeline, and must give the
same exit code, output, diagnostics and database contents; the proxy counts the turns.
"""

from __future__ import annotations

import pytest
from conftest import Cli, Database, Server
from servers import FakeServer, TurnCounter

from runner.plan.validate import parse_plan
from runner.run.turns import RUN_BYTES, groups, wire_size

SETUP = """\
sqlplan: 1
name: pipeline
steps:
  - batch: |
      DROP TABLE IF EXISTS parent, child, notes;
      CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);
    allow: [drop]
    after: tables dropped and made
  - batch: |
      CREATE TABLE parent (id int PRIMARY KEY);
      CREATE TABLE child (
          parent_id int REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED
      );
    after: parent and child made
"""

INSERT_NOTE = """\
  - execute: INSERT INTO notes (id, body) VALUES ($1, $2)
    params: [{id}, {body}]
    before: "inserting {{$1}}"
    after: "inserted {{count}} ({{$1}})"
"""

BULK_COPY = """\
  - bulk_insert: INSERT INTO notes (id, body) VALUES ($1, $2)
    rows:
      - [10, ten]
      - [11, {body}]
      - [12, twelve]
    before: "loading {{rows}}"
    after: "loaded {{count}}"
"""

BULK_UPSERT = """\
  - bulk_insert: INSERT INTO notes (id, body) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING
    rows:
      - [20, twenty]
      - [10, again]
      - [21, {body}]
    after: "upserted {{count}}"
"""

QUERY = """\
  - query: SELECT id, body FROM notes ORDER BY id
    row: "{id}: {body}"
    empty: none
"""

STATE = "SELECT coalesce(string_agg(id || '=' || body, ' ' ORDER BY id), '') FROM notes"


def _run(cli: Cli, db: Database, plan: str, *flags: str) -> tuple[int, int, str, str, object]:
    cli.write("plan.yaml", plan)
    counter = TurnCounter(db.target.socket_path)
    with FakeServer(counter.handle) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/{db.target.database}?sslmode=disable"
        result = cli("run", "plan.yaml", *flags, env={"DATABASE_URL": url})
    state = db.query(STATE)[0][0]
    return counter.settle(), result.exit_code, result.stdout, result.stderr, state


def _same_both_ways(cli: Cli, db: Database, plan: str) -> tuple[int, int, int, str, str]:
    """(turns pipelined, turns alone, exit code, stdout, stderr) after checking they agree."""
    pipelined = _run(cli, db, plan)
    alone = _run(cli, db, plan, "--no-pipeline")
    assert pipelined[1:] == alone[1:]
    return pipelined[0], alone[0], *pipelined[1:4]


def test_a_plan_that_succeeds_sends_its_steps_in_one_turn(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + INSERT_NOTE.format(id=1, body="one")
        + BULK_COPY.format(body="eleven")
        + BULK_UPSERT.format(body="twenty-one")
        + QUERY
    )
    together, alone, code, out, err = _same_both_ways(cli, database, plan)
    assert (code, err) == (0, "")
    assert out == (
        "tables dropped and made\nparent and child made\ninserting 1\ninserted 1 (1)\n"
        "loading 3\nloaded 3\nupserted 2\n"
        "1: one\n10: ten\n11: eleven\n12: twelve\n20: twenty\n21: twenty-one\n"
    )
    # connect, the steps, Terminate
    assert (together, alone) == (1 + 1 + 1, 1 + 6 + 1)


def test_a_failed_batch_statement_stops_the_run_where_it_would_alone(
    cli: Cli, database: Database
) -> None:
    plan = (
        SETUP
        + INSERT_NOTE.format(id=1, body="one")
        + """\
  - batch: |
      INSERT INTO notes VALUES (2, 'two');
      INSERT INTO notes VALUES (3, 'x' || nosuch);
    after: never printed
"""
        + INSERT_NOTE.format(id=4, body="never")
    )
    together, alone, code, out, err = _same_both_ways(cli, database, plan)
    assert code == 1
    assert out == "tables dropped and made\nparent and child made\ninserting 1\ninserted 1 (1)\n"
    assert err.splitlines() == [
        'plan.yaml:21:43: error: step 4 failed: column "nosuch" does not exist [42703]',
        "    INSERT INTO notes VALUES (3, 'x' || nosuch);",
        "                                        ^",
        "what the server confirmed:",
        "  committed: step 1 (plan.yaml:4:5), step 2 (plan.yaml:9:5), step 3 (plan.yaml:15:5)",
        "  rolled back: step 4 (plan.yaml:19:5)",
        "  not run: step 5 (plan.yaml:23:5)",
    ]
    assert database.query(STATE)[0][0] == "1=one"  # step 3 committed; step 4 rolled back whole
    # together: connect, the run, a ROLLBACK of the block sqlplan opened around step 4,
    # Terminate (the price of a server log without "no transaction in progress" warnings)
    assert (together, alone) == (1 + 1 + 1 + 1, 1 + 4 + 1)


@pytest.mark.parametrize("upsert", [False, True], ids=["copy", "flight"])
def test_a_failed_row_is_named_the_same(cli: Cli, database: Database, upsert: bool) -> None:
    bulk = (BULK_UPSERT if upsert else BULK_COPY).format(body="null")
    plan = SETUP + INSERT_NOTE.format(id=1, body="one") + bulk + INSERT_NOTE.format(id=5, body="x")
    _, _, code, out, err = _same_both_ways(cli, database, plan)
    assert code == 1
    assert "violates not-null constraint" in err
    assert ("  row: 3 (at plan.yaml:23:9)" if upsert else "  row: 2 (at plan.yaml:22:9)") in err
    assert "none of the 3 rows were inserted" in err
    assert database.query(STATE)[0][0] == "1=one"
    assert out.endswith("inserted 1 (1)\n" + ("" if upsert else "loading 3\n"))


def test_a_deferred_constraint_fails_its_own_step_at_commit(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
  - execute: INSERT INTO child (parent_id) VALUES ($1)
    params: [7]
    after: child inserted
"""
        + INSERT_NOTE.format(id=2, body="two")
    )
    _, _, code, out, err = _same_both_ways(cli, database, plan)
    assert code == 1
    assert out == "tables dropped and made\nparent and child made\n"
    assert 'step 3 failed: insert or update on table "child" violates foreign key' in err
    assert database.query("SELECT count(*) FROM child") == [[0]]
    assert database.query(STATE)[0][0] == ""


def test_inside_a_transaction_block_a_failure_rolls_back_the_block(
    cli: Cli, database: Database
) -> None:
    plan = (
        SETUP
        + "  - batch: BEGIN\n"
        + INSERT_NOTE.format(id=1, body="one")
        + INSERT_NOTE.format(id=1, body="dup")
        + INSERT_NOTE.format(id=3, body="three")
        + "  - batch: COMMIT\n"
    )
    together, alone, code, out, err = _same_both_ways(cli, database, plan)
    assert code == 1
    assert "duplicate key value violates unique constraint" in err
    assert "the open transaction was rolled back" in err
    assert out.endswith("inserting 1\ninserted 1 (1)\ninserting 1\n")
    assert database.query(STATE)[0][0] == ""
    # setup, BEGIN alone, the three inserts together (the failure ends the run), ROLLBACK
    assert (together, alone) == (1 + 1 + 1 + 1 + 1 + 1, 1 + 2 + 1 + 2 + 1 + 1)


def test_warnings_are_the_steps_own_not_the_pipelines(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + """\
  - batch: |
      CREATE OR REPLACE FUNCTION warn(t text) RETURNS int LANGUAGE plpgsql
      AS $$ BEGIN RAISE WARNING 'careful: %', t; RETURN 1; END $$;
  - query: SELECT warn('first') AS w
    row: "{w}"
  - execute: INSERT INTO notes VALUES (warn('second'), 'w')
"""
        + QUERY
    )
    _, _, code, out, err = _same_both_ways(cli, database, plan)
    assert (code, out) == (0, "tables dropped and made\nparent and child made\n1\n1: w\n")
    assert err.splitlines() == [
        "plan.yaml:18:5: warning: step 4: the server warns: careful: first [01000]",
        "plan.yaml:20:5: warning: step 5: the server warns: careful: second [01000]",
    ]


def test_a_template_that_misses_a_column_stops_before_the_next_step(
    cli: Cli, database: Database
) -> None:
    plan = (
        SETUP
        + INSERT_NOTE.format(id=1, body="one")
        + """\
  - query: SELECT id FROM notes
    row: "{title}"
"""
        + INSERT_NOTE.format(id=2, body="two")
    )
    _, _, code, out, err = _same_both_ways(cli, database, plan)
    assert code == 1
    assert out.endswith("inserted 1 (1)\n")
    assert "the row template uses {title}" in err
    assert database.query(STATE)[0][0] == "1=one"


def test_steps_that_must_go_alone_do(cli: Cli, database: Database) -> None:
    plan = (
        SETUP
        + "  - batch: VACUUM notes\n"
        + "  - batch: CREATE INDEX CONCURRENTLY notes_body ON notes (body)\n"
        + "  - batch: SET LOCAL work_mem = '8MB'\n"
        + INSERT_NOTE.format(id=1, body="one")
    )
    together, alone, code, out, err = _same_both_ways(cli, database, plan)
    assert (code, out) == (
        0,
        "tables dropped and made\nparent and child made\ninserting 1\ninserted 1 (1)\n",
    )
    assert "SET LOCAL can only be used in transaction blocks" in err
    assert (together, alone) == (1 + 1 + 3 + 1 + 1, 1 + 6 + 1)


def test_which_steps_travel_together() -> None:
    plan = parse_plan(
        "sqlplan: 1\nname: p\nsteps:\n"
        + "".join(
            f"  - batch: {sql}\n"
            for sql in (
                "SET search_path = public",  # 1 travels
                "CREATE TABLE t (a int)",  # 2 travels
                "SET NAMES 'LATIN1'",  # 3 alone: later SQL was encoded already
                "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",  # 4 alone
                "SET transaction_read_only = on",  # 5 alone
                "RESET ALL",  # 6 alone
                "DO $$ BEGIN END $$",  # 7 alone
                "CALL p()",  # 8 alone
                "LOCK t",  # 9 alone
                "COPY t FROM '/dev/null'",  # 10 alone
                "DROP INDEX CONCURRENTLY i",  # 11 alone
                "INSERT INTO t VALUES (1); COMMIT",  # 12 alone: transaction control
                "RESET search_path",  # 13 travels
                "SELECT 1",  # 14 travels
            )
        )
        + "  - query: SELECT 1 AS a\n"  # 15 travels, and ends the run
        + "  - execute: SELECT $1::int\n    params: [1]\n",  # 16
        "plan.yaml",
    )
    assert [[s.number for s in g] for g in groups(plan.steps)] == [
        [1, 2], [3], [4], [5], [6], [7], [8], [9], [10], [11], [12], [13, 14, 15], [16],
    ]  # fmt: skip


def test_a_run_sends_a_bounded_number_of_bytes() -> None:
    value = "x" * 20_000
    plan = parse_plan(
        "sqlplan: 1\nname: p\nsteps:\n"
        + "".join(f"  - execute: SELECT $1::text\n    params: [{value}]\n" for _ in range(7))
        + f"  - execute: SELECT $1::text\n    params: [{'y' * (RUN_BYTES + 1)}]\n",
        "plan.yaml",
    )
    assert [[s.number for s in g] for g in groups(plan.steps)] == [[1, 2, 3], [4, 5, 6], [7], [8]]
    assert all(sum(map(wire_size, g)) <= RUN_BYTES for g in groups(plan.steps) if len(g) > 1)


def test_a_pipelined_run_leaves_no_warning_in_the_server_log(
    cli: Cli, database: Database, server: Server
) -> None:
    log = server.embedded.log_file
    before = log.stat().st_size
    plan = SETUP + "".join(INSERT_NOTE.format(id=i, body=f"n{i}") for i in range(1, 9)) + QUERY
    together, _, code, out, err = _same_both_ways(cli, database, plan)
    assert (code, err) == (0, "")
    assert out.endswith("8: n8\n")
    assert together == 1 + 1 + 1  # all ten steps in one run
    with open(log, "rb") as handle:
        handle.seek(before)
        written = handle.read().decode("utf-8", "replace")
    assert "WARNING" not in written, written
    assert "NOTICE" not in written, written
