"""A backfill stopped anyhow, again and again, ends as the single statement would: kill -9,
Ctrl-C, SIGTERM, a cut connection and a server restart at random moments (inside batches, at
their commits, between them), each followed by a run that resumes, until one finishes. An
audit trigger shows that no row was changed by two batches that both committed."""

from __future__ import annotations

import random
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import start_sqlplan
from servers import Cluster, remove_cluster, require_debian_postgres, start_cluster

from runner.connect.connection import connect

ROWS = 3000
PLAN = """\
sqlplan: 1
name: faults
steps:
  - name: Count each row once
    backfill:
      key: id
      batch: 50
      sql: UPDATE t SET v = v + 1 WHERE id > $1 AND id <= $2
    pause: 20ms
"""
FAULTS = ("kill", "sigint", "sigterm", "terminate", "restart", "immediate")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    made = start_cluster(require_debian_postgres(), tls=None)
    try:
        yield made
    finally:
        remove_cluster(made)


def _admin(cluster: Cluster) -> Any:
    return connect(cluster.admin_target())


def _query(cluster: Cluster, sql: str) -> list[list[Any]]:
    admin = _admin(cluster)
    try:
        return list(admin.run(sql) or [])
    finally:
        admin.close()


def _fault(cluster: Cluster, run: subprocess.Popen[str], fault: str) -> None:
    if fault == "kill":
        run.kill()
    elif fault == "sigint":
        run.send_signal(signal.SIGINT)
    elif fault == "sigterm":
        run.send_signal(signal.SIGTERM)
    elif fault == "terminate":
        _query(
            cluster,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = 'postgres' AND backend_type = 'client backend'",
        )
    else:
        mode = "fast" if fault == "restart" else "immediate"
        cluster.run(
            cluster.bin_dir / "pg_ctl", "-D", cluster.base / "data", "-m", mode,
            "-w", "restart", "-l", cluster.base / "server.log",
        )  # fmt: skip


def _wait_for_batches(cluster: Cluster, since: str) -> None:
    """Until this run's backend (started after `since`) has sent a batch."""
    probe = _admin(cluster)
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and not probe.run(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'UPDATE t SET v%' "
                "AND backend_start > CAST(:since AS timestamptz)",
                since=since,
            )[0][0]
        ):
            time.sleep(0.02)
    finally:
        probe.close()


def test_a_backfill_stopped_anyhow_changes_each_row_exactly_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    setup = _admin(cluster)
    setup.run(
        "DROP TABLE IF EXISTS t, audit; DROP SCHEMA IF EXISTS sqlplan CASCADE;"
        "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL DEFAULT 0);"
        f"INSERT INTO t (id) SELECT g * 2 FROM generate_series(1, {ROWS}) g;"
        "CREATE TABLE audit (id bigint, xid xid8 DEFAULT pg_current_xact_id());"
        "CREATE FUNCTION audited() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "  INSERT INTO audit (id) VALUES (NEW.id); PERFORM pg_sleep(0.001); RETURN NEW; END $$;"
        "CREATE TRIGGER audited AFTER UPDATE ON t FOR EACH ROW EXECUTE FUNCTION audited()"
    )
    setup.close()
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN)
    url = f"postgresql://admin@/postgres?host={cluster.base}&port={cluster.port}"
    env = {"DATABASE_URL": url, "SQLPLAN_CONNECT_RETRIES": "3", "SQLPLAN_CACHE_DIR": str(tmp_path)}
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    for round_number in range(60):
        [[before]] = _query(cluster, "SELECT clock_timestamp()::text")
        run = start_sqlplan("run", str(plan), env=env)
        fault = FAULTS[round_number % len(FAULTS)] if round_number < 24 else None
        if fault is not None:
            _wait_for_batches(cluster, before)
            time.sleep(rng.uniform(0, 0.5))
            faulting = threading.Thread(target=_fault, args=(cluster, run, fault))
            faulting.start()
        _, stderr = run.communicate(timeout=120)
        if fault is not None:
            faulting.join(60)
        code = run.returncode
        context = f"seed {seed}, round {round_number}, {fault}: exit {code}\n{stderr}"
        assert "Traceback" not in stderr, context
        seen[f"{fault}:{code}"] = seen.get(f"{fault}:{code}", 0) + 1
        if code == 0:
            break
        assert code in (-9, 1, 5, 6, 130, 143), context
        if code in (130, 143):  # the ledger's figures are the checkpoint's
            said = re.search(r"in all ([\d,]+) \(([\d,]+) rows\)", stderr)
            [[batches, rows]] = _query(cluster, "SELECT batches, rows FROM sqlplan.backfill")
            if said is not None:
                assert (int(said[1].replace(",", "")), int(said[2].replace(",", ""))) == (
                    batches,
                    rows,
                ), context
    else:
        pytest.fail(f"seed {seed}: the backfill never finished: {seen}")
    # the table is what the single statement makes of it, and no row changed twice
    assert _query(cluster, "SELECT count(*), min(v), max(v) FROM t") == [[ROWS, 1, 1]], seen
    assert _query(cluster, "SELECT count(*), count(DISTINCT id) FROM audit") == [[ROWS, ROWS]]
    assert _query(cluster, "SELECT rows, finished_at IS NOT NULL FROM sqlplan.backfill") == [
        [ROWS, True]
    ]
