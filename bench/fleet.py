"""A rollout over a fleet against the shell loop teams write: `psql -f` per target.

On the embedded PostgreSQL in a temporary directory: T databases (default 200), reached
through a loopback proxy that holds every chunk back half the RTT each way (RTT 0 and 20 ms).
The plan has three steps (a table made if missing, a row upserted with a parameter, a query
with an expectation); the psql script holds the same three statements. Interleaved, ROUNDS
times each, at each RTT:

- `for url in ...; do psql -X -q -v ON_ERROR_STOP=1 -f plan.sql "$url"; done` (bash);
- `sqlplan run plan.yaml --targets fleet.txt --parallel P`, for P in 1, 4, 16.

It prints each one's median wall time and its ratio to the psql loop's (the target: at RTT 20,
--parallel 16 at least 10x faster), and the most client connections to the fleet's databases
seen at once in pg_stat_activity (sampled every 10 ms), beside P. Then
the memory: one rollout of 1,000 targets (--many; the T databases each named by several
targets, each target its own connection and run) at --parallel 16, its peak RSS (the target:
under 200 MiB). Figures only.

    python bench/fleet.py [--targets 200] [--rtt 0,20] [--rounds 2] [--many 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

from bulk_load import LatencyProxy, run_process
from scratch import ROOT, scratch

from runner.connect.connection import connect
from runner.connect.target import with_database

PLAN = """\
sqlplan: 1
name: fleet_bench
steps:
  - batch: CREATE TABLE IF NOT EXISTS fleet_bench (id int PRIMARY KEY, seen int NOT NULL)
  - execute: >
      INSERT INTO fleet_bench VALUES ($1, 1)
      ON CONFLICT (id) DO UPDATE SET seen = fleet_bench.seen + 1
    params: [1]
  - query: SELECT count(*) AS n FROM fleet_bench
    expect:
      rows:
        - {n: 1}
    row: "{n} row"
"""
SCRIPT = """\
CREATE TABLE IF NOT EXISTS fleet_bench (id int PRIMARY KEY, seen int NOT NULL);
INSERT INTO fleet_bench VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET seen = fleet_bench.seen + 1;
SELECT count(*) AS n FROM fleet_bench;
"""


class Sampler:
    """The most client backends connected to the fleet's databases at once."""

    def __init__(self, admin: object, prefix: str) -> None:
        self.con = connect(admin)  # type: ignore[arg-type]
        self.prefix = prefix
        self.most = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND datname LIKE :p"
        )
        while not self.stop.is_set():
            self.most = max(self.most, self.con.run(sql, p=f"{self.prefix}%")[0][0])
            time.sleep(0.01)

    def done(self) -> int:
        self.stop.set()
        self.thread.join()
        self.con.close()
        return self.most


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--rtt", default="0,20")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--many", type=int, default=1000)
    args = parser.parse_args()
    psql = shutil.which("psql")
    with scratch("fleet") as s:
        admin = s.server.target
        prefix = f"fb_{os.getpid()}_"
        names = [f"{prefix}{i:04d}" for i in range(args.targets)]
        con = connect(admin)
        started = time.perf_counter()
        for name in names:
            con.run(f"CREATE DATABASE {name}")
        con.close()
        print(f"{len(names)} databases made in {time.perf_counter() - started:.1f} s")
        work = s.work
        (work / "plan.yaml").write_text(PLAN)
        (work / "plan.sql").write_text(SCRIPT)
        env = {**os.environ, "SQLPLAN_DATA_DIR": str(work / "state"), "PYTHONPATH": str(ROOT)}
        sqlplan = [sys.executable, "-m", "runner"]
        assert admin.socket_path is not None
        for rtt in (float(r) for r in args.rtt.split(",")):
            proxy = LatencyProxy(admin.socket_path, rtt)
            urls = [
                f"postgresql://postgres@127.0.0.1:{proxy.port}/{n}?sslmode=disable" for n in names
            ]
            (work / "fleet.txt").write_text("".join(f"t{i} {u}\n" for i, u in enumerate(urls)))
            loop = (
                "for url in "
                + " ".join(urls)
                + '; do psql -X -q -v ON_ERROR_STOP=1 -f plan.sql "$url" > /dev/null || exit 1; done'
            )
            ways: dict[str, list[str]] = {}
            if psql:
                ways["psql -f loop"] = ["bash", "-c", loop]
            for parallel in (1, 4, 16):
                ways[f"sqlplan --parallel {parallel}"] = [
                    *sqlplan, "run", "plan.yaml", "--targets", "fleet.txt", "--parallel",
                    str(parallel), "--max-failures", "0", "--format", "json",
                ]  # fmt: skip
            times: dict[str, list[float]] = {w: [] for w in ways}
            most: dict[str, int] = dict.fromkeys(ways, 0)
            for _ in range(args.rounds):
                for way, command in ways.items():
                    sampler = Sampler(admin, prefix)
                    seconds, _ = run_process(command, work, env)
                    most[way] = max(most[way], sampler.done())
                    times[way].append(seconds)
            print(
                f"\n== RTT {rtt:g} ms, {len(names)} targets x 3 steps ({args.rounds} rounds, interleaved)"
            )
            base = statistics.median(times["psql -f loop"]) if psql else None
            for way, taken in times.items():
                median = statistics.median(taken)
                ratio = f"{base / median:6.1f}x faster than the psql loop" if base else ""
                print(f"  {way:<22} {median:8.2f} s   {ratio}   most connections seen: {most[way]}")
        # memory: --many targets (each database named by several), --parallel 16, RTT 0
        proxy = LatencyProxy(admin.socket_path, 0)
        lines = [
            f"m{i} postgresql://postgres@127.0.0.1:{proxy.port}/{names[i % len(names)]}?sslmode=disable\n"
            for i in range(args.many)
        ]
        (work / "many.txt").write_text("".join(lines))
        command = [*sqlplan, "run", "plan.yaml", "--targets", "many.txt", "--parallel", "16",
                   "--max-failures", "0", "--format", "json", "--junit", "junit.xml"]  # fmt: skip
        seconds, rss = run_process(command, work, env)
        print(f"\n== {args.many} targets, --parallel 16, RTT 0")
        print(f"  {seconds:.2f} s, peak RSS {rss / 1024:.1f} MiB (target: under 200 MiB)")
        con = connect(with_database(admin, names[0]))
        print(
            f"  rows on the first database: {con.run('SELECT seen FROM fleet_bench')[0][0]} runs seen"
        )
        con.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
