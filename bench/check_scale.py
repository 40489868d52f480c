"""`sqlplan check` grows linearly with its input: plans that give N diagnostics, N warnings
(one batch of N statements) or a scalar of N characters, each checked at N and 2N in the same
run, interleaved. Prints the times and the ratio t(2N) / t(N): about 2 when linear, 4 when
quadratic.

    python bench/check_scale.py [--diagnostics 10000] [--statements 100000] [--digits 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def invalid_steps(n: int) -> str:
    """N steps that are each only the text `x`: N diagnostics."""
    return "sqlplan: 1\nname: p\nsteps:\n" + "  - x\n" * n


def warned_statements(n: int) -> str:
    """One batch of N CREATE INDEX statements on an existing table: N warnings."""
    body = "".join(f"      CREATE INDEX i{i} ON t (c{i % 50});\n" for i in range(n))
    return "sqlplan: 1\nname: p\nsteps:\n  - batch: |\n" + body


def long_scalar(n: int) -> str:
    """A name of N digits and a letter: a scalar that looks like a number until its end."""
    return f"sqlplan: 1\nname: {'1' * n}a\nsteps:\n  - batch: SELECT 1\n"


def seconds(text: str, work: Path) -> float:
    plan = work / "plan.yaml"
    plan.write_text(text)
    env = {**os.environ, "SQLPLAN_NO_CACHE": "1"}
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "runner", "check", str(plan)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--diagnostics", type=int, default=10_000)
    parser.add_argument("--statements", type=int, default=100_000)
    parser.add_argument("--digits", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sqlplan-check-scale-"))
    empty = seconds("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n", work)
    print(f"{'a one-step plan':>34}: {empty:.2f} s (start-up, subtracted below)")
    cases: list[tuple[str, Callable[[int], str], int]] = [
        ("diagnostics (steps that are `x`)", invalid_steps, args.diagnostics),
        ("warnings (CREATE INDEX in a batch)", warned_statements, args.statements),
        ("characters (a number-like name)", long_scalar, args.digits),
    ]
    for label, make, n in cases:
        small: list[float] = []
        large: list[float] = []
        for _ in range(args.repeat):  # interleaved: the machine's drift touches both alike
            small.append(seconds(make(n), work) - empty)
            large.append(seconds(make(2 * n), work) - empty)
        a, b = min(small), min(large)
        print(
            f"{label:>34}: N={n:,} {a:.2f} s, 2N={2 * n:,} {b:.2f} s, "
            f"ratio {b / a if a > 0 else float('nan'):.2f} (linear: 2, quadratic: 4)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
