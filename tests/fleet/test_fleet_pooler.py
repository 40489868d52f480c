"""A fleet with some targets behind PgBouncer in transaction mode (as Neon's -pooler hosts
are) and the rest direct, on Debian's PostgreSQL with SCRAM: every target applies its `once`
migration, load and query; a rerun skips the migration on all of them, pooled or not."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import Cli
from fleets import write_plans
from servers import (
    ENCODED,
    Cluster,
    Pooler,
    start_pgbouncer,
    stop_pgbouncer,
)

from runner.connect.connection import connect

COUNT = 6
POOLED = (1, 3, 5)


@pytest.fixture
def mixed_fleet(plain_cluster: Cluster) -> Iterator[list[str]]:
    admin = connect(plain_cluster.admin_target())
    names = [f"mixed_{i}" for i in range(COUNT)]
    try:
        for name in names:
            admin.run(f"CREATE DATABASE {name} OWNER scram")
    finally:
        admin.close()
    poolers: list[Pooler] = []
    urls = []
    try:
        for i, name in enumerate(names):
            port, flag = plain_cluster.port, ""
            if i in POOLED:
                pooler = start_pgbouncer(plain_cluster, name, scram=True)
                if pooler is None:
                    pytest.skip("pgbouncer is not installed")
                poolers.append(pooler)
                port, flag = pooler.port, "&pgbouncer=true"
            urls.append(
                f"postgresql://scram:{ENCODED}@127.0.0.1:{port}/{name}?sslmode=disable{flag}"
            )
        yield urls
    finally:
        for pooler in poolers:
            stop_pgbouncer(pooler)
        admin = connect(plain_cluster.admin_target())
        try:
            for name in names:
                admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            admin.close()


def test_pooled_and_direct_targets_apply_and_rerun_alike(cli: Cli, mixed_fleet: list[str]) -> None:
    plans = write_plans(cli.cwd)
    cli.write("fleet.txt", "".join(f"m{i} {url}\n" for i, url in enumerate(mixed_fleet)))
    first = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "3", "--format", "json")
    assert first.exit_code == 0, first.stderr
    document = json.loads(first.stdout)
    assert [t["status"] for t in document["targets"]] == ["applied"] * COUNT
    assert [t["run"]["plans"][2]["output"] for t in document["targets"]] == [
        ["accounts: 3"]
    ] * COUNT
    again = cli("run", plans[0], "--targets", "fleet.txt", "--parallel", "3", "--format", "json")
    assert again.exit_code == 0, again.stderr
    assert [t["status"] for t in json.loads(again.stdout)["targets"]] == ["skipped"] * COUNT
    status = cli("status", *plans, "--targets", "fleet.txt", "--format", "json")
    cells = [t["plans"][0]["status"] for t in json.loads(status.stdout)["targets"]]
    assert cells == ["applied"] * COUNT


def test_what_a_pooler_breaks_is_said_once_for_the_pooled_targets(
    cli: Cli, mixed_fleet: list[str]
) -> None:
    cli.write(
        "session.yaml",
        "sqlplan: 1\nname: session\nsteps:\n  - batch: |\n      SET search_path = public;\n"
        "      SELECT 1;\n",
    )
    cli.write("fleet.txt", "".join(f"m{i} {url}\n" for i, url in enumerate(mixed_fleet)))
    result = cli("run", "session.yaml", "--targets", "fleet.txt")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "[pooler-session-set]" in line]
    assert len(said) == 1
    assert said[0].startswith("session.yaml:5:7: warning:")
    assert said[0].endswith("(3 targets behind a transaction pooler)")
