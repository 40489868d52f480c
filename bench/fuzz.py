"""Fuzz `sqlplan check`'s validation with generated and mutated plans (the long profile of
tests/plan/test_fuzz.py): every example must end in a Plan or in diagnostics at positions inside the
file. Prints how many examples ran, how many were valid plans, and the slowest example.

    python bench/fuzz.py [--examples 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fuzzing import check_any, mutated_seed, random_text, schema_plans  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="in all, over 3 strategies")
    args = parser.parse_args()
    each = args.examples // 3 + 1
    outcomes: Counter[str] = Counter()
    slowest = (0.0, b"")
    for name, strategy in (
        ("mutated seeds", mutated_seed()),
        ("schema-generated", schema_plans()),
        ("random bytes and text", random_text()),
    ):
        started = time.perf_counter()
        before = sum(outcomes.values())

        @settings(
            max_examples=each,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(raw=strategy)
        def run(raw: bytes) -> None:
            nonlocal slowest
            t = time.perf_counter()
            outcomes[check_any(raw, ROOT / "bench" / "fuzz-plan.yaml")] += 1
            took = time.perf_counter() - t
            if took > slowest[0]:
                slowest = (took, raw)

        run()
        ran = sum(outcomes.values()) - before
        print(f"{name:>22}: {ran:,} examples in {time.perf_counter() - started:.1f} s", flush=True)
    total = sum(outcomes.values())
    print(
        f"{'total':>22}: {total:,} examples, {outcomes['valid']:,} valid plans, "
        f"{outcomes['invalid']:,} with diagnostics, 0 tracebacks"
    )
    print(f"{'slowest':>22}: {slowest[0] * 1000:.1f} ms ({len(slowest[1]):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
