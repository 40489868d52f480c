"""How `sqlplan check` scales with inline rows: a plan with 200,000 inline rows (about 10 MB)
checked with the validation cache off, on a cold cache (validated and written) and warm; its
time and peak memory against loading the same file with PyYAML's C loader (the baseline, run
interleaved); then inline rows against the same rows in a rows_from CSV file at several sizes.

    python bench/large_plan.py [--rows 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLPLAN = [sys.executable, "-m", "runner"]
BASELINE = [
    sys.executable,
    "-c",
    "import sys, yaml; yaml.load(open(sys.argv[1], 'rb'), Loader=yaml.CSafeLoader)",
]


def plan_text(rows: int, *, from_file: bool) -> str:
    head = (
        "sqlplan: 1\nname: large\nsteps:\n"
        "  - batch: CREATE TABLE IF NOT EXISTS books (id int, title text, price numeric, in_stock boolean)\n"
        "  - bulk_insert: INSERT INTO books (id, title, price, in_stock) VALUES ($1, $2, $3, $4)\n"
    )
    if from_file:
        return head + "    rows_from: {file: books.csv}\n"
    random.seed(rows)
    lines = [
        f'      - [{i}, "Book {i} of the set", {random.randint(0, 99999)}.{random.randint(0, 99):02d}, {"true" if i % 2 else "false"}]\n'
        for i in range(rows)
    ]
    return head + "    rows:\n" + "".join(lines)


def csv_text(rows: int) -> str:
    random.seed(rows)
    return "id,title,price,in_stock\n" + "".join(
        f"{i},Book {i} of the set,{random.randint(0, 99999)}.{random.randint(0, 99):02d},{'true' if i % 2 else 'false'}\n"
        for i in range(rows)
    )


def measure(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one run of `command`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode() if process.stderr else ""
    if process.returncode not in (0,):
        raise SystemExit(f"{command} failed ({process.returncode}): {error}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sqlplan-large-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLPLAN_")}
    env["PYTHONPATH"] = str(ROOT)
    try:
        plan = work / "large.yaml"
        plan.write_text(plan_text(args.rows, from_file=False))
        size = plan.stat().st_size
        print(f"plan: {args.rows:,} inline rows, {size / 1e6:.1f} MB")
        cases = {
            "PyYAML CSafeLoader (baseline)": ([*BASELINE, str(plan)], {}),
            "sqlplan check, cache off": ([*SQLPLAN, "check", str(plan)], {"SQLPLAN_NO_CACHE": "1"}),
            "sqlplan check, cold cache": (
                [*SQLPLAN, "check", str(plan)],
                {"SQLPLAN_CACHE_DIR": ""},
            ),
            "sqlplan check, warm cache": (
                [*SQLPLAN, "check", str(plan)],
                {"SQLPLAN_CACHE_DIR": str(work / "warm")},
            ),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        subprocess.run([*SQLPLAN, "check", str(plan)], env={**env, "SQLPLAN_CACHE_DIR": str(work / "warm")},
                       cwd=work, check=True, capture_output=True)  # fmt: skip
        for run in range(args.runs):
            for name, (command, settings) in cases.items():  # interleaved
                extra = dict(settings)
                if extra.get("SQLPLAN_CACHE_DIR") == "":
                    extra["SQLPLAN_CACHE_DIR"] = str(work / f"cold-{run}")
                results[name].append(measure(command, {**env, **extra}, work))
        base = statistics.median(t for t, _ in results["PyYAML CSafeLoader (baseline)"])
        for name, samples in results.items():
            seconds = statistics.median(t for t, _ in samples)
            memory = max(m for _, m in samples)
            print(
                f"{name:>32}: {seconds:6.2f} s ({seconds / base:4.2f}x baseline), peak {memory:6.1f} MiB"
            )
        print("\ninline rows against rows_from (median of runs, cache off):")
        for rows in (1_000, 10_000, 50_000, args.rows):
            timings = {}
            for from_file in (False, True):
                directory = work / f"{'file' if from_file else 'inline'}-{rows}"
                directory.mkdir()
                (directory / "plan.yaml").write_text(plan_text(rows, from_file=from_file))
                if from_file:
                    (directory / "books.csv").write_text(csv_text(rows))
                samples = [
                    measure(
                        [*SQLPLAN, "check", "plan.yaml"],
                        {**env, "SQLPLAN_NO_CACHE": "1"},
                        directory,
                    )
                    for _ in range(args.runs)
                ]
                timings[from_file] = (
                    statistics.median(t for t, _ in samples),
                    max(m for _, m in samples),
                )
                shutil.rmtree(directory)
            (inline, inline_mem), (file, file_mem) = timings[False], timings[True]
            print(
                f"{rows:>10,} rows: inline {inline * 1000:7.0f} ms {inline_mem:6.1f} MiB; rows_from {file * 1000:5.0f} ms {file_mem:5.1f} MiB"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
