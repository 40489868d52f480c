"""Whole-process time of `sqlplan check` (it runs on every commit): on the shipped plans and on
200 generated plans, with the validation cache off and warm. Baselines in the same run: a bare
interpreter, and one importing only `click` (what any click CLI pays). Prints medians and
ratios; asserts nothing.

    python bench/check_timing.py [--runs N]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

GENERATED = """\
sqlplan: 1
name: generated {n}
on_connect: connected
steps:
  - batch: |
      CREATE TABLE IF NOT EXISTS t{n} (id int PRIMARY KEY, name text, seen timestamptz);
    allow: []
  - execute: INSERT INTO t{n} (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING
    params: [{n}, name {n}]
    after: "inserted {{count}}"
  - bulk_insert: INSERT INTO t{n} (id, name) VALUES ($1, $2)
    rows:
{rows}
    after: "loaded {{count}} of {{rows}}"
  - execute: UPDATE t{n} SET seen = now() WHERE id = $1
    params: [{n}]
    after: "seen"
    after_no_rows: "missing"
  - query: SELECT id, name FROM t{n} WHERE id > $1 ORDER BY id
    params: [0]
    header: "--- t{n} ---"
    row: "{{id}}: {{name}}"
    footer: "--- {{count}} rows ---"
"""


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, cwd=cwd, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "runner", quiet=1)  # as an installed package is
    work = Path(tempfile.mkdtemp(prefix="sqlplan-check-bench-"))
    cached = {**os.environ, "SQLPLAN_CACHE_DIR": str(work / "cache")}
    uncached = {**os.environ, "SQLPLAN_NO_CACHE": "1"}
    try:
        shutil.copytree(ROOT / "plans", work / "plans")
        generated = work / "generated"
        generated.mkdir()
        for n in range(200):
            rows = "\n".join(f"      - [{n * 100 + i}, row {i}]" for i in range(1, 21))
            (generated / f"plan{n:03}.yaml").write_text(GENERATED.format(n=n, rows=rows))
        check = [sys.executable, "-m", "runner", "check"]
        cases = [
            ("python -c pass (interpreter start)", [sys.executable, "-c", "pass"], uncached),
            ("python -c 'import click'", [sys.executable, "-c", "import click"], uncached),
            ("sqlplan check plans/ (4 shipped plans)", [*check, "plans"], uncached),
            ("sqlplan check generated/ (200 plans, 1,000 steps)", [*check, "generated"], uncached),
            ("  the same, validation cache warm", [*check, "generated"], cached),
        ]
        timed([*check, "generated"], work, cached)  # fills the cache
        results = [
            (label, statistics.median(timed(cmd, work, env) for _ in range(args.runs)))
            for label, cmd, env in cases
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results[0][1]
    print(f"median of {args.runs} runs, whole process")
    for label, seconds in results:
        print(f"  {label:<50} {seconds * 1000:8.1f} ms   {seconds / base:5.2f} x interpreter")
    per_plan = (results[3][1] - results[2][1]) / 196 * 1000
    print(f"  marginal cost per generated plan: {per_plan:.2f} ms")


if __name__ == "__main__":
    main()
