"""The ledger's property tests, long profile (tests/run/test_ledger.py runs the fast one).

(a) Generated plans run pipelined and with --no-pipeline: the same exit code, output, errors,
    rows and settings seen by each step.
(b) Generated plans cut after every message the server sends (plain, on the embedded server):
    every claim of the report holds in the database. Each cut is one example.
(c) The same at sampled bytes over TLS, and after every message through PgBouncer, when
    Debian's PostgreSQL and PgBouncer are installed.

Prints how many examples ran and what they ended in.

    python bench/ledger.py [--plans 10000] [--cuts 10000] [--tls 1000] [--pooler 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "run"))  # the test module it runs long

from conftest import Cli  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from ledger_plans import GRANTS, SETUP, GeneratedPlan, plans  # noqa: E402
from scratch import scratch  # noqa: E402
from servers import (  # noqa: E402
    ENCODED,
    cluster_owner,
    debian_bin,
    make_certificates,
    remove_cluster,
    start_cluster,
    start_pgbouncer,
    stop_pgbouncer,
)
from test_ledger import Tally, same_either_way, sweep  # noqa: E402

from runner.connect.connection import connect  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plans", type=int, default=10_000, help="plans run both ways")
    parser.add_argument("--cuts", type=int, default=10_000, help="cut runs, plain")
    parser.add_argument("--tls", type=int, default=1_000, help="cut runs over TLS")
    parser.add_argument("--pooler", type=int, default=1_000, help="cut runs through PgBouncer")
    args = parser.parse_args()
    with scratch("ledger") as place:
        work, database = place.work, place.database
        cli = Cli(work, place.server)
        con = connect(database)
        con.run(SETUP)
        url = database.url(mask_password=False)

        # (a) pipelined and one step at a time
        started = time.perf_counter()
        exits: Counter[int] = Counter()
        done = [0]

        # rounds of at most 500: Hypothesis keeps what a round drew until it ends
        @settings(max_examples=max(min(args.plans, 500), 1), deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(plan=plans())
        def both_ways(plan: GeneratedPlan) -> None:
            seen = same_either_way(cli, con, url, plan)
            exits[seen.exit_code] += 1
            done[0] += 1

        while done[0] < args.plans:
            both_ways()
        if args.plans:
            print(
                f"(a) pipelined = --no-pipeline: {done[0]:,} plans in "
                f"{time.perf_counter() - started:.0f} s, 0 differences; exit codes "
                + ", ".join(f"{k}: {n:,}" for k, n in sorted(exits.items())),
                flush=True,
            )

        # (b) every cut, plain
        def cuts(label: str, goal: int, run_sweep: Callable[[GeneratedPlan, Tally], None]) -> None:
            tally = Tally()
            began = time.perf_counter()

            # about 20 cuts a plan: rounds of plans until the goal is reached
            @settings(max_examples=max(min(goal // 20, 200), 2), deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
            @given(plan=plans(max_segments=4))
            def one(plan: GeneratedPlan) -> None:
                if tally.runs < goal:
                    run_sweep(plan, tally)

            while tally.runs < goal:
                one()
            print(
                f"({label}) {tally.runs:,} cut runs in {time.perf_counter() - began:.0f} s: "
                f"{tally.claims:,} claims held ({tally.in_doubt:,} in doubt), exit codes "
                + ", ".join(f"{k}: {n:,}" for k, n in sorted(tally.by_exit.items())),
                flush=True,
            )

        def plain_url(port: int) -> str:
            return (
                f"postgresql://{database.user}@127.0.0.1:{port}/{database.database}?sslmode=disable"
            )

        cuts("b", args.cuts, lambda plan, tally: sweep(cli, con, plan, database.socket_path, plain_url, messages=True, tally=tally))  # fmt: skip
        con.close()

        # (c) TLS and PgBouncer
        bin_dir = debian_bin()
        if bin_dir is not None and (args.tls or args.pooler):
            certs_dir = work / "certs"
            certs_dir.mkdir()
            certs = make_certificates(certs_dir, cluster_owner())
            tls = start_cluster(bin_dir, tls=certs)
            plain = start_cluster(bin_dir, tls=None)
            try:
                for cluster in (tls, plain):
                    admin = connect(cluster.admin_target())
                    admin.run(SETUP)
                    admin.run(GRANTS.format(user="scram"))
                    admin.close()
                tls_con: Any = connect(tls.admin_target())

                def tls_url(port: int) -> str:
                    return f"postgresql://scram:{ENCODED}@localhost:{port}/postgres?sslmode=require"

                if args.tls:
                    cuts("c, TLS", args.tls, lambda plan, tally: sweep(cli, tls_con, plan, ("127.0.0.1", tls.port), tls_url, messages=False, samples=30, tally=tally))  # fmt: skip
                tls_con.close()
                pooler = start_pgbouncer(plain, "postgres", scram=True) if args.pooler else None
                if pooler is not None:
                    pooled_con: Any = connect(plain.admin_target())

                    def pooled_url(port: int) -> str:
                        return f"postgresql://scram:{ENCODED}@127.0.0.1:{port}/postgres?sslmode=disable"

                    try:
                        cuts("c, PgBouncer", args.pooler, lambda plan, tally: sweep(cli, pooled_con, plan, ("127.0.0.1", pooler.port), pooled_url, messages=True, tally=tally))  # fmt: skip
                    finally:
                        pooled_con.close()
                        stop_pgbouncer(pooler)
            finally:
                remove_cluster(tls)
                remove_cluster(plain)
    return 0


if __name__ == "__main__":
    sys.exit(main())
