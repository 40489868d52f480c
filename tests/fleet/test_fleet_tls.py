"""A fleet on Debian's PostgreSQL with TLS required and SCRAM: 20 databases, one target with a
wrong password. Every other target applies; the wrong one fails as a connection does, its
password shown nowhere; the JUnit and JSON reports name each target."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from conftest import Cli
from fleets import write_plans
from servers import ENCODED, Cluster

from runner.connect.connection import connect

COUNT = 20


@pytest.fixture(scope="module")
def tls_fleet(ssl_server: Cluster) -> Iterator[list[str]]:
    admin = connect(ssl_server.admin_target())
    names = [f"tls_{i:02d}" for i in range(COUNT)]
    try:
        for name in names:
            admin.run(f"CREATE DATABASE {name} OWNER scram")
    finally:
        admin.close()
    yield [
        f"postgresql://scram:{ENCODED}@localhost:{ssl_server.port}/{name}?sslmode=require"
        for name in names
    ]
    admin = connect(ssl_server.admin_target())
    try:
        for name in names:
            admin.run(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def test_a_tls_fleet_with_one_wrong_password(
    cli: Cli, tls_fleet: list[str], ssl_server: Cluster
) -> None:
    plans = write_plans(cli.cwd)
    wrong = tls_fleet[7].replace(ENCODED, "not-the-password-9137")
    env = {f"TENANT_{i}": url for i, url in enumerate(tls_fleet)}
    env["TENANT_7"] = wrong
    cli.write("fleet.txt", "".join(f"tenant{i} $TENANT_{i} tier=t{i % 2}\n" for i in range(COUNT)))
    result = cli("run", *plans, "--targets", "fleet.txt", "--parallel", "6", "--max-failures", "0",
                 "--format", "json", "--junit", "junit.xml", env=env)  # fmt: skip
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    statuses = {t["name"]: t["status"] for t in document["targets"]}
    assert statuses.pop("tenant7") == "failed"
    assert set(statuses.values()) == {"applied"}
    failed = document["targets"][7]
    assert failed["exit_code"] == 5
    assert "password authentication failed" in failed["run"]["error"]["message"]
    junit = (cli.cwd / "junit.xml").read_text()
    assert junit.count("<testsuite ") == COUNT
    for text in (result.stdout, result.stderr, junit):
        assert "not-the-password-9137" not in text
        assert "p@ss:w/rd" not in text
        assert ENCODED not in text
    assert document["fleet"]["most_open"] <= 6
    for i in (0, 19):
        con = connect(ssl_server.target("scram", database=f"tls_{i:02d}", sslmode="require"))
        try:
            assert con.run("SELECT count(*) FROM accounts")[0][0] == 3
        finally:
            con.close()
