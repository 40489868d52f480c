"""A backfill against the single statement it replaces, and what each does to a writer.

On the embedded PostgreSQL in a temporary directory: a table of N rows (default 5 million),
and a writer that updates random rows one at a time, throughout. Then, interleaved, ROUNDS
times each:

- the single statement, `UPDATE t SET n = n + 1`, through `sqlplan run` (an execute step);
- the same as a `backfill` step over `id` in batches of B keys, through `sqlplan run`.

Each is followed by a VACUUM (not timed), so that each starts on the same table. For each it
prints the wall time and, for the writer's updates while it ran: p50, p99 and the longest wait.
First the writer alone, with no change running (its own noise). Then the ratios the backfill
is held to: its total time against the single statement's (target at most 2x) and the writer's
longest wait against the longest batch (at most 2x; the average batch beside it), beside the
longest wait under the single statement against that statement's time. Figures only.

    python bench/backfill.py [--rows 5000000] [--batch 5000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from scratch import ROOT, scratch

from runner.connect.connection import connect

SINGLE = """\
sqlplan: 1
name: single_{round}
steps:
  - name: Every row at once
    execute: UPDATE t SET n = n + 1
"""
BACKFILL = """\
sqlplan: 1
name: backfill_{round}
steps:
  - name: Every row in batches
    backfill:
      key: id
      batch: {batch}
      sql: UPDATE t SET n = n + 1 WHERE id > $1 AND id <= $2
"""


class Writer:
    """Updates random rows, one a transaction, and keeps (when it started, how long it took)."""

    def __init__(self, target: Any, rows: int) -> None:
        self.con = connect(target)
        self.rows = rows
        self.times: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        pick = random.Random(7)
        while not self.stop.is_set():
            row = pick.randrange(1, self.rows + 1)
            began = time.perf_counter()
            self.con.run("UPDATE t SET w = w + 1 WHERE id = :id", id=row)
            self.times.append((began, time.perf_counter() - began))
            time.sleep(0.002)

    def during(self, start: float, end: float) -> list[float]:
        return [took for began, took in self.times if start <= began <= end]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        self.con.close()


def _run(work: Path, url: str, name: str, text: str) -> tuple[float, dict[str, Any]]:
    plan = work / f"{name}.yaml"
    plan.write_text(text)
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(plan), "--format", "json"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def _figures(waits: list[float]) -> str:
    if not waits:
        return "no writes"
    waits = sorted(waits)
    p99 = waits[min(len(waits) - 1, int(len(waits) * 0.99))]
    return (
        f"{len(waits):,} writes, p50 {statistics.median(waits) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, longest {waits[-1] * 1000:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    with scratch("backfill") as place:
        target = place.database
        url = target.url(mask_password=False)
        setup = connect(target)
        print(f"loading {args.rows:,} rows ...", flush=True)
        setup.run(
            "CREATE TABLE t (id bigint PRIMARY KEY, n int NOT NULL DEFAULT 0, "
            "w int NOT NULL DEFAULT 0, filler text)"
        )
        setup.run(
            "INSERT INTO t (id, filler) SELECT g, md5(g::text) "
            f"FROM generate_series(1, {args.rows}) g"
        )
        setup.run("VACUUM ANALYZE t")
        writer = Writer(target, args.rows)
        time.sleep(1)
        idle_start = time.perf_counter()
        time.sleep(10)
        idle = writer.during(idle_start, time.perf_counter())
        print(f"no change running: {_figures(idle)}", flush=True)
        results: dict[str, list[tuple[float, list[float], dict[str, Any]]]] = {
            "single": [],
            "backfill": [],
        }
        try:
            for round_number in range(args.rounds):
                order = ["single", "backfill"] if round_number % 2 == 0 else ["backfill", "single"]
                for kind in order:
                    text = (SINGLE if kind == "single" else BACKFILL).format(
                        round=round_number, batch=args.batch
                    )
                    start = time.perf_counter()
                    seconds, report = _run(place.work, url, f"{kind}_{round_number}", text)
                    waits = writer.during(start, time.perf_counter())
                    results[kind].append((seconds, waits, report))
                    print(f"round {round_number + 1} {kind}: {seconds:.2f} s; {_figures(waits)}")
                    setup.run("VACUUM t")
        finally:
            writer.close()
            setup.close()
    single = statistics.median(s for s, _, _ in results["single"])
    backfill = statistics.median(s for s, _, _ in results["backfill"])
    step = results["backfill"][-1][2]["plans"][0]["steps"][0]
    batches = step["backfill"]["batches"]
    batch_time = step["duration_ms"] / 1000 / max(batches, 1)
    longest_batch = (
        max(
            r["plans"][0]["steps"][0]["backfill"]["longest_batch_ms"]
            for _, _, r in results["backfill"]
        )
        / 1000
    )
    longest_single = max(max(w, default=0.0) for _, w, _ in results["single"])
    longest_backfill = max(max(w, default=0.0) for _, w, _ in results["backfill"])
    single_statement = statistics.median(
        r["plans"][0]["steps"][0]["duration_ms"] / 1000 for _, _, r in results["single"]
    )
    print()
    print(
        f"rows {args.rows:,}, batch {args.batch:,}: {batches:,} batches, {batch_time * 1000:.1f} "
        f"ms each on average, the longest {longest_batch * 1000:.1f} ms"
    )
    print(f"single UPDATE: {single:.2f} s (the statement {single_statement:.2f} s)")
    print(
        f"backfill:      {backfill:.2f} s = {backfill / single:.2f}x the single UPDATE (target <= 2x)"
    )
    print(
        f"writer's longest wait: under the backfill {longest_backfill * 1000:.1f} ms = "
        f"{longest_backfill / longest_batch:.2f}x the longest batch (target <= 2x), "
        f"{longest_backfill / batch_time:.2f}x the average one; under the single UPDATE "
        f"{longest_single * 1000:.1f} ms = {longest_single / single_statement:.2f}x the statement"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
