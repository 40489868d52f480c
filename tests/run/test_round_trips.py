"""Round trips, counted by a proxy between sqlplan and the server: connect, then the steps."""

from __future__ import annotations

from conftest import ROOT, Cli, Server
from servers import FakeServer, TurnCounter

# Without TLS and with trust authentication (the embedded server), connecting is one turn:
# the startup message. Terminate is the last turn (it has no reply).
CONNECT, TERMINATE = 1, 1


def _turns(cli: Cli, server: Server, plan: str, query: str = "sslmode=disable") -> tuple[int, str]:
    counter = TurnCounter(server.target.socket_path)
    with FakeServer(counter.handle) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres?{query}"
        result = cli("run", plan, env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.stderr
    return counter.settle(), result.stdout


def test_the_quickstart_plans_cost_one_turn_after_connecting(cli: Cli, server: Server) -> None:
    plans = ROOT / "plans"
    # create_table: two batches, one execute and a bulk insert (COPY) travel together
    assert _turns(cli, server, str(plans / "create_table.yaml"))[0] == CONNECT + 1 + TERMINATE
    assert _turns(cli, server, str(plans / "read_data.yaml"))[0] == CONNECT + 1 + TERMINATE
    assert _turns(cli, server, str(plans / "update_data.yaml"))[0] == CONNECT + 1 + TERMINATE
    assert _turns(cli, server, str(plans / "delete_data.yaml"))[0] == CONNECT + 1 + TERMINATE


def test_sslmode_prefer_asks_for_tls_once(cli: Cli, server: Server) -> None:
    plan = str(ROOT / "plans" / "read_data.yaml")
    _turns(cli, server, str(ROOT / "plans" / "create_table.yaml"))  # the table read_data reads
    assert (
        _turns(cli, server, plan, "sslmode=prefer")[0] == 1 + CONNECT + 1 + TERMINATE
    )  # SSLRequest, 'N'


def test_a_row_by_row_bulk_insert_costs_one_turn_per_flight(cli: Cli, server: Server) -> None:
    rows = "".join(f"      - [r{i}]\n" for i in range(2500))  # three flights of up to 1,000 rows
    plan = cli.write(
        "plan.yaml",
        "sqlplan: 1\nname: flights\nsteps:\n"
        "  - batch: DROP TABLE IF EXISTS flights; CREATE TABLE flights (name text)\n    allow: [drop]\n"
        "  - bulk_insert: INSERT INTO flights (name) SELECT $1\n    rows:\n"
        + rows
        + "    after: '{count}'\n",
    )
    turns, out = _turns(cli, server, str(plan))
    assert out == "2500\n"
    assert turns == CONNECT + 1 + 3 + TERMINATE  # BEGIN and COMMIT ride with the first and last
