"""The lock and rewrite analysis against the server, on every statement the grammar of
tests/lock_truth.py generates: PostgreSQL 18 (embedded) and 15 (Debian's, when installed).

Prints, per version: how many statements ran (and how many the schema refused), the
disagreements by class (missed, weak, rewrite missed, rewrite invented fail; strong is
counted), by statement kind, and with --show N the first N disagreements. Then the statements
that cannot run in a transaction block (CREATE INDEX CONCURRENTLY, VACUUM FULL, REINDEX ...
CONCURRENTLY, DETACH ... CONCURRENTLY, ...), each probed behind a second session that holds
one table at a time, in fresh copies of the database (lock_truth.probe).

    python bench/locks.py [--show 20] [--version 18|15]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lock_truth import (  # noqa: E402
    FAILING,
    SCHEMA,
    Copies,
    compare,
    kind_of,
    observe,
    outside,
    probe,
    statements,
)
from scratch import scratch  # noqa: E402
from servers import debian_bin, remove_cluster, start_cluster  # noqa: E402

from runner.connect.connection import connect  # noqa: E402
from runner.connect.target import Target, with_database  # noqa: E402


def _measure(con: Any, version: int, show: int) -> None:
    con.run(SCHEMA)
    began = time.perf_counter()
    ran = refused = 0
    classes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    failing_kinds: Counter[str] = Counter()
    shown = 0
    for sql in statements(version):
        truth = observe(con, sql)
        if not truth.ran:
            refused += 1
            continue
        ran += 1
        kind = kind_of(sql)
        kinds[kind] += 1
        found = compare(truth, version)
        for disagreement in found:
            classes[disagreement.kind] += 1
        if any(d.kind in FAILING for d in found):
            failing_kinds[kind] += 1
            if shown < show:
                shown += 1
                print(f"  {sql}")
                for d in found:
                    print(f"      {d.kind}: {d.relation}: {d.detail}")
    wrong = sum(failing_kinds.values())
    print(
        f"PostgreSQL {version}: {ran:,} statements ran ({refused:,} refused by the schema) in "
        f"{time.perf_counter() - began:.0f} s; {wrong:,} disagree ({wrong / max(ran, 1):.0%}); "
        + ", ".join(f"{k}: {n:,}" for k, n in sorted(classes.items())),
        flush=True,
    )
    print("  by kind (disagreeing / ran):")
    for kind, count in sorted(kinds.items(), key=lambda item: (-failing_kinds[item[0]], item[0])):
        print(f"    {kind:<40} {failing_kinds[kind]:>4} / {count}")


def _measure_outside(admin_target: Target, version: int, show: int) -> None:
    """The statements that cannot run in a transaction block, probed behind a second session
    in fresh copies of a database holding the schema."""
    admin = connect(admin_target)
    copies = Copies(admin, lambda name: with_database(admin_target, name), connect, "lt_outside")
    began = time.perf_counter()
    ran = refused = 0
    classes: Counter[str] = Counter()
    wrong: list[str] = []
    try:
        copies.drop(copies.base)
        copies.make_base()
        for sql in outside(version):
            truth = probe(copies, sql)
            if not truth.ran:
                refused += 1
                continue
            ran += 1
            found = compare(truth, version)
            for disagreement in found:
                classes[disagreement.kind] += 1
            if any(d.kind in FAILING for d in found):
                wrong.append(sql)
                if len(wrong) <= show:
                    print(f"  {sql}")
                    for d in found:
                        print(f"      {d.kind}: {d.relation}: {d.detail}")
    finally:
        copies.drop(copies.base)
        admin.close()
    print(
        f"PostgreSQL {version}, outside a transaction block: {ran:,} statements probed "
        f"({refused:,} refused by the schema), {copies.made:,} database copies, in "
        f"{time.perf_counter() - began:.0f} s; {len(wrong):,} disagree; "
        + (", ".join(f"{k}: {n:,}" for k, n in sorted(classes.items())) or "no disagreement"),
        flush=True,
    )


def _measure_on(target: Target, admin_target: Target, show: int) -> None:
    con = connect(target)
    try:
        version = int(con.run("SHOW server_version_num")[0][0]) // 10000
        _measure(con, version, show)
    finally:
        con.close()
    _measure_outside(admin_target, version, show)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", type=int, default=0, help="print the first N disagreements")
    parser.add_argument("--version", type=int, choices=(18, 15), help="one version only")
    args = parser.parse_args()
    if args.version in (None, 18):
        with scratch("locks") as place:
            _measure_on(place.database, place.server.target, args.show)
    bin_dir = debian_bin()
    if args.version in (None, 15) and bin_dir is not None:
        cluster = start_cluster(bin_dir, tls=None)
        try:
            _measure_on(cluster.admin_target(), cluster.admin_target(), args.show)
        finally:
            remove_cluster(cluster)
    elif args.version == 15:
        print("Debian's PostgreSQL is not installed: PostgreSQL 15 skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
