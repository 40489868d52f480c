"""sqlplan against psql where users are: TLS, SCRAM-SHA-256-PLUS and channel_binding=require
(as Neon requires), at a round-trip time of 0 and 20 ms.

Starts Debian's PostgreSQL (as the connection tests do) with TLS and a SCRAM user, and a
loopback proxy in front of it that holds every chunk back half the RTT each way; sqlplan runs
as a wheel install lays it out (see installed()), whatever this checkout's install. Then, for
each quickstart plan, `sqlplan run plans/NAME.yaml` against `psql -f NAME.sql` (the same SQL)
with the same URL (sslmode=require&channel_binding=require), interleaved pair by pair, with the
validation cache warm and off; the median of each and of their ratios, and the round trips each
client made. With --bulk, loads of 100,000 and 1,000,000 rows from CSV against psql's \\copy.
Figures only; nothing is asserted.

    python bench/neon_like.py [--pairs 15] [--rtt 0,20] [--bulk]

Needs Debian's postgresql and openssl (as .ci/run installs).
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
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bulk_load import COLUMNS, QUICKSTART_SQL, LatencyProxy  # noqa: E402
from servers import (  # noqa: E402
    ENCODED,
    debian_bin,
    make_certificates,
    remove_cluster,
    start_cluster,
)

from runner.connect.connection import connect  # noqa: E402


def installed(work: Path, root: Path = ROOT) -> Path:
    """sqlplan as `pip install sqlplan` lays it out, whatever this checkout's install is (an
    editable one adds an import hook that costs about 10 ms at every start): the package, byte-
    compiled, in a virtual environment of its own, and the console script pip writes. Its
    dependencies come from this interpreter's environment through a path file."""
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    shutil.copytree(root / "runner", site / "runner", ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(site / "runner", quiet=1)
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "dependencies.pth").write_text("\n".join(ours) + "\n")
    script = venv / "bin" / "sqlplan"
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport re\nimport sys\nfrom runner.main import entry\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        "    sys.exit(entry())\n"
    )
    script.chmod(0o755)
    return script


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)  # fmt: skip
    elapsed = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()[-400:]}")
    return elapsed


def pairs(
    n: int,
    ours: list[str],
    *,
    theirs: list[str],
    cwd: Path,
    env: dict[str, str],
    ours_env: dict[str, str],
) -> tuple[float, float, float]:
    """Interleaved pairs: (median sqlplan s, median psql s, median of the per-pair ratios)."""
    a, b, ratios = [], [], []
    for _ in range(n):
        x = timed(ours, cwd, ours_env)
        y = timed(theirs, cwd, env)
        a.append(x)
        b.append(y)
        ratios.append(x / y)
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def turns(proxy: LatencyProxy, command: list[str], cwd: Path, env: dict[str, str]) -> int:
    before = proxy.turns
    timed(command, cwd, env)
    time.sleep(0.05)
    return proxy.turns - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--rtt", default="0,20")
    parser.add_argument("--bulk", action="store_true", help="also 100k and 1M rows against \\copy")
    args = parser.parse_args()
    bin_dir = debian_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        raise SystemExit(
            "needs Debian's postgresql and openssl: apt-get install postgresql openssl"
        )
    psql = str(bin_dir / "psql")

    import pwd

    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    work = Path(tempfile.mkdtemp(prefix="sqlplan-neon-bench-"))
    work.chmod(0o755)
    ours_base = [str(installed(work))]
    certs = make_certificates(work, owner)
    cluster = start_cluster(bin_dir, tls=certs)
    try:
        admin = connect(cluster.admin_target())
        admin.run("CREATE DATABASE bench OWNER scram")
        admin.close()
        shutil.copytree(ROOT / "plans", work / "plans")
        for name, sql in QUICKSTART_SQL.items():
            (work / f"{name}.sql").write_text(sql)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SQLPLAN_")) and k != "DATABASE_URL"}  # fmt: skip
        base_env["SQLPLAN_CACHE_DIR"] = str(work / "cache")
        print(f"PostgreSQL {bin_dir.parent.name} (Debian), TLS + SCRAM-SHA-256-PLUS, channel_binding=require, "
              f"{args.pairs} interleaved pairs per figure, whole processes; sqlplan installed as from a wheel: {ours_base[0]}")  # fmt: skip
        for rtt in (float(r) for r in args.rtt.split(",")):
            proxy = LatencyProxy(("127.0.0.1", cluster.port), rtt)
            url = f"postgresql://scram:{ENCODED}@localhost:{proxy.port}/bench?sslmode=require&channel_binding=require"
            env = {**base_env, "DATABASE_URL": url, "PGPASSWORD": ""}
            env.pop("PGPASSWORD")
            print(f"\n== RTT {rtt:g} ms")
            print(
                f"  {'plan':<13} {'psql -f':>8} {'sqlplan':>8} {'ratio':>6} {'cache off':>10} {'ratio':>6} {'trips us/psql':>14}"
            )
            timed([*ours_base, "run", "plans/create_table.yaml"], work, env)
            for name in QUICKSTART_SQL:
                ours = [*ours_base, "run", f"plans/{name}.yaml"]
                theirs = [psql, "-X", "-q", "-d", url, "-f", f"{name}.sql"]
                timed(ours, work, env)  # the cache holds the plan from here on
                warm = pairs(args.pairs, ours, theirs=theirs, cwd=work, env=env, ours_env=env)
                cold = pairs(
                    args.pairs,
                    ours,
                    theirs=theirs,
                    cwd=work,
                    env=env,
                    ours_env={**env, "SQLPLAN_NO_CACHE": "1"},
                )
                trips = f"{turns(proxy, ours, work, env)}/{turns(proxy, theirs, work, env)}"
                print(f"  {name:<13} {warm[1] * 1000:8.1f} {warm[0] * 1000:8.1f} {warm[2]:6.2f} "
                      f"{cold[0] * 1000:10.1f} {cold[2]:6.2f} {trips:>14}")  # fmt: skip
            if args.bulk:
                print(f"  {'rows':<13} {'psql copy':>10} {'sqlplan':>8} {'x psql (rows/s)':>16}")
                for rows in (100_000, 1_000_000):
                    csv = work / f"books{rows}.csv"
                    if not csv.exists():
                        with csv.open("w") as f:
                            f.write("title,author,publication_year,in_stock\n")
                            for i in range(rows):
                                f.write(f"Book {i},Author {i % 977},{1900 + i % 120},{'true' if i % 3 else 'false'}\n")  # fmt: skip
                        (work / f"load{rows}.yaml").write_text(
                            f"sqlplan: 1\nname: load\nsteps:\n  - bulk_insert: INSERT INTO books ({COLUMNS}) VALUES ($1, $2, $3, $4)\n"
                            f"    rows_from:\n      file: {csv.name}\n"
                        )
                    copy = f"\\copy books ({COLUMNS}) FROM '{csv}' WITH (FORMAT csv, HEADER)"
                    reset = [psql, "-X", "-q", "-d", url, "-c", "TRUNCATE books"]
                    ours_t, theirs_t, ratios = [], [], []
                    for _ in range(max(3, args.pairs // 3)):
                        timed(reset, work, env)
                        x = timed([*ours_base, "run", f"load{rows}.yaml"], work, env)
                        timed(reset, work, env)
                        y = timed([psql, "-X", "-q", "-d", url, "-c", copy], work, env)
                        ours_t.append(x)
                        theirs_t.append(y)
                        ratios.append(y / x)
                    print(f"  {rows:<13,} {statistics.median(theirs_t):10.2f} {statistics.median(ours_t):8.2f} "
                          f"{statistics.median(ratios):16.2f}")  # fmt: skip
    finally:
        remove_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
