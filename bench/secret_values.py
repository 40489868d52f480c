"""The secrets and vars property tests, long profile (tests/run/test_secret_values.py and
tests/plan/test_vars.py run the fast one).

(a) Generated secrets (quotes, backslashes, newlines, any Unicode, long enough to be clipped)
    given to plans whose statements make the server echo them, searched for in every output of
    the runs: stdout, stderr, --format json and github, JUnit, the summary, status, the history
    table, a usage error (show, --dry-run and rehearse for one plan; the fast profile does them
    for every plan).
(b) Integers around each integer type's bounds: sqlplan refuses a var's value exactly when the
    server's column of that type would.

    python bench/secret_values.py [--secrets 10000] [--integers 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "run"))  # the test module it runs long
sys.path.insert(0, str(ROOT / "tests" / "plan"))  # the test module it runs long

from conftest import Cli  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from scratch import scratch  # noqa: E402
from test_secret_values import SECRETS, SETUP, search_every_output, write_plans  # noqa: E402
from test_vars import _server_reads, _var  # noqa: E402

from runner.connect.connection import connect  # noqa: E402
from runner.plan.vars import VarValueError, from_text  # noqa: E402


def _rounds(goal: int, done: list[int], body: Any) -> None:
    """Hypothesis in rounds of at most 500 examples until `goal` (memory stays bounded)."""
    while done[0] < goal:
        body()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--secrets", type=int, default=10_000)
    parser.add_argument("--integers", type=int, default=10_000)
    args = parser.parse_args()
    with scratch("secrets") as place:
        database = place.database
        con = connect(database)
        con.run(SETUP)
        cli = Cli(place.work, place.server)
        names = write_plans(cli)
        url = database.url(mask_password=False)
        lengths: list[int] = []
        done = [0]
        started = time.perf_counter()

        @settings(max_examples=min(max(args.secrets, 1), 500), deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(secret=SECRETS)
        def secrets_round(secret: str) -> None:
            search_every_output(cli, con, url, names, secret, every=False)
            lengths.append(len(secret))
            done[0] += 1

        _rounds(args.secrets, done, secrets_round)
        if args.secrets:
            print(
                f"(a) {done[0]:,} secrets ({min(lengths)} to {max(lengths)} characters) in "
                f"{time.perf_counter() - started:.0f} s: no piece of one in any output",
                flush=True,
            )
        counted = [0]
        refused = [0]
        started = time.perf_counter()

        @settings(max_examples=min(max(args.integers, 1), 500), deadline=None, database=None, suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(
            kind_bits=st.sampled_from([("smallint", 15), ("integer", 31), ("bigint", 63)]),
            data=st.data(),
        )
        def integers_round(kind_bits: tuple[str, int], data: st.DataObject) -> None:
            kind, bits = kind_bits
            n = data.draw(st.integers(-(2**bits) - 3, 2**bits + 3) | st.integers(-(10**25), 10**25))
            try:
                from_text(_var(kind), str(n))
                ours = True
            except VarValueError:
                ours = False
                refused[0] += 1
            assert ours == (_server_reads(con, str(n), kind) is not None), (kind, n)
            counted[0] += 1

        _rounds(args.integers, counted, integers_round)
        if args.integers:
            print(
                f"(b) {counted[0]:,} integers in {time.perf_counter() - started:.0f} s: "
                f"{refused[0]:,} refused by sqlplan and the server alike, the rest taken by both",
                flush=True,
            )
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
