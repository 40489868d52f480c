"""Differential tests, long profile, on private servers.

(a) Values: random values of every supported type through every path (execute parameters,
inline rows as COPY and row by row, CSV parsed and sent whole, JSON Lines objects and arrays),
each compared with the same value written as a SQL literal (embedded PostgreSQL 18).
(b) CSV: random files and options read by sqlplan's reader and by COPY (FORMAT csv) of the same
bytes, on PostgreSQL 18 and, when installed, Debian's PostgreSQL.

Prints how many values and files were checked.

    python bench/differential.py [--values 10000] [--files 10000]
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
sys.path.insert(0, str(ROOT / "tests" / "plan"))  # the test module it runs long

from conftest import Database  # noqa: E402
from csv_oracle import Options, csv_files, postgres_rows, sqlplan_rows  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from scratch import scratch  # noqa: E402
from servers import debian_bin, remove_cluster, start_cluster  # noqa: E402
from test_values import Store  # noqa: E402
from value_oracle import PATHS, Kind, cases  # noqa: E402

from runner.connect.connection import connect  # noqa: E402
from runner.plan.files import SourceError  # noqa: E402
from runner.run.wire import csv_end_marker  # noqa: E402


def _long(examples: int) -> Callable[[Any], Any]:
    return settings(
        max_examples=max(examples, 10),
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def values_on(
    store: Store, path: str, share: int, checked: Counter[str], kinds: Counter[str]
) -> None:
    @_long(share // 6)  # about 6.5 values an example
    @given(case=cases(path))
    def run(case: tuple[Kind, list[Any]]) -> None:
        kind, values = case
        store.check(path, kind, values)
        checked[path] += len(values)
        kinds[kind.name] += len(values)

    while checked[path] < share:  # Hypothesis stops on its own schedule
        run()


def files_on(con: Any, count: int, tally: Counter[str]) -> None:
    end_marker = csv_end_marker(con)

    @_long(count)
    @given(case=csv_files())
    def run(case: tuple[Options, int, bytes]) -> None:
        options, width, data = case
        ours = sqlplan_rows(options, width, data, end_marker=end_marker)
        theirs = postgres_rows(con, options, width, data)
        if isinstance(theirs, str):
            assert isinstance(ours, SourceError), (data, theirs, ours)
            tally["refused by both"] += 1
        else:
            assert ours == theirs, (data, theirs, ours)
            tally["same rows"] += 1

    run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=int, default=10_000, help="values in all, over the paths")
    parser.add_argument("--files", type=int, default=10_000, help="CSV files per server")
    args = parser.parse_args()
    with scratch("differential") as place:
        store = Store(place.server, Database(place.database))
        checked: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        share = args.values // len(PATHS) + 1
        for path in PATHS:
            started = time.perf_counter()
            values_on(store, path, share, checked, kinds)
            print(
                f"(a) {path:>16}: {checked[path]:,} values in {time.perf_counter() - started:.1f} s, all equal",
                flush=True,
            )
        print(f"(a) {'total':>16}: {sum(checked.values()):,} values, 0 differences")
        print(f"(a) {'by type':>16}: " + ", ".join(f"{k} {n:,}" for k, n in sorted(kinds.items())))
        servers: list[tuple[str, Any, Callable[[], None]]] = [
            ("PostgreSQL 18", store.con, lambda: None)
        ]
        if debian_bin() is not None:
            cluster = start_cluster(debian_bin(), tls=None)  # type: ignore[arg-type]
            servers.append(
                (
                    "Debian PostgreSQL",
                    connect(cluster.admin_target()),
                    lambda: remove_cluster(cluster),
                )
            )
        for label, con, done in servers:
            started = time.perf_counter()
            tally: Counter[str] = Counter()
            try:
                files_on(con, args.files, tally)
            finally:
                done()
            version = csv_end_marker(con)
            print(
                f"(b) {label:>16}: {sum(tally.values()):,} files in {time.perf_counter() - started:.1f} s "
                f"({tally['same rows']:,} same rows, {tally['refused by both']:,} refused by both; "
                f"\\. ends data: {'yes' if version else 'no'})",
                flush=True,
            )
        store.con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
