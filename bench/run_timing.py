"""Wall time of `sqlplan run` on the embedded server: first use, cold (server stopped), warm.

Baselines measured in the same run: `psql` (the embedded package's own) running the same query
on the same warm server, and a bare `python -c pass`. Prints medians and ratios; asserts nothing.

    python bench/run_timing.py [--runs N]
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from runner.connect.embedded import EmbeddedServer, _wheel_install

ROOT = Path(__file__).resolve().parent.parent
READ_SQL = "SELECT * FROM books ORDER BY publication_year;"


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def median_of(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    sqlplan = [sys.executable, "-m", "runner"]
    compileall.compile_dir(ROOT / "runner", quiet=1)  # as an installed package is
    work = Path(tempfile.mkdtemp(prefix="sqlplan-bench-"))
    work.chmod(0o755)  # ours; lets the server's user reach it when run as root
    shutil.copytree(ROOT / "plans", work / "plans")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "SQLPLAN_DATA_DIR", "SQLPLAN_NO_CACHE")
    }
    env["SQLPLAN_CACHE_DIR"] = str(work / "cache")
    run_create = [*sqlplan, "run", "plans/create_table.yaml"]
    run_read = [*sqlplan, "run", "plans/read_data.yaml"]

    def first_use() -> float:
        EmbeddedServer(work / ".sqlplan").destroy()
        return timed(run_create, work, env)

    def cold() -> float:
        EmbeddedServer(work / ".sqlplan").stop()
        return timed(run_read, work, env)

    try:
        first = median_of(max(1, args.runs // 3), first_use)
        cold_read = median_of(max(1, args.runs // 2), cold)
        target = EmbeddedServer(work / ".sqlplan").ensure_running()
        warm_read = median_of(args.runs, lambda: timed(run_read, work, env))
        uncached = {**env, "SQLPLAN_NO_CACHE": "1"}
        warm_uncached = median_of(args.runs, lambda: timed(run_read, work, uncached))
        warm_create = median_of(args.runs, lambda: timed(run_create, work, env))
        psql = str(_wheel_install() / "bin" / "psql")
        psql_read = median_of(
            args.runs,
            lambda: timed([psql, "-X", "-q", "-d", target.url(), "-c", READ_SQL], work, env),
        )
        python = median_of(args.runs, lambda: timed([sys.executable, "-c", "pass"], work, env))
    finally:
        EmbeddedServer(work / ".sqlplan").destroy()
        shutil.rmtree(work, ignore_errors=True)

    rows = [
        ("python -c pass (interpreter start)", python),
        ("psql -c '<read_data query>', warm server", psql_read),
        ("sqlplan run read_data.yaml, warm server", warm_read),
        ("  the same, validation cache off", warm_uncached),
        ("sqlplan run read_data.yaml, cold (server stopped)", cold_read),
        ("sqlplan run create_table.yaml, warm server", warm_create),
        ("sqlplan run create_table.yaml, first use (initdb)", first),
    ]
    print(
        f"median of {args.runs} runs (first use: {max(1, args.runs // 3)}, cold: {max(1, args.runs // 2)})"
    )
    for label, seconds in rows:
        print(f"  {label:<52} {seconds * 1000:8.1f} ms   {seconds / psql_read:5.2f} x psql")


if __name__ == "__main__":
    main()
