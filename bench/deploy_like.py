"""A deploy on a Neon-like link: a one-step `once` migration (a CREATE TABLE and a CREATE INDEX
in one batch) applied, and run again once it is applied, by sqlplan, by `psql -f` (the same SQL
between BEGIN and COMMIT, with no history at all) and, where it is installed, by dbmate (its
`schema_migrations` table; `npm install dbmate` puts it in node_modules/.bin).

The set-up is bench/neon_like.py's: Debian's PostgreSQL with TLS and a SCRAM user behind a
loopback proxy that holds every chunk back half the RTT each way and counts the client's round
trips; sqlplan installed as from a wheel. Each figure is the median of interleaved runs of
whole processes (one of each tool per round, the database reset before each apply outside the
timing); ratios are per round. sqlplan runs with its validation cache warm and, as on a CI
machine where nothing survives between jobs, with it off. psql and sqlplan use
sslmode=require&channel_binding=require; dbmate's driver knows no channel_binding, so it uses
sslmode=require (SCRAM-SHA-256 without channel binding). Figures only; nothing is asserted.

    python bench/deploy_like.py [--rounds 15] [--rtt 20] [--dbmate PATH] [--baseline DIR]

--baseline DIR adds another checkout of sqlplan (`git worktree add DIR <commit>`), installed
the same way and run against a database of its own in the same rounds: before and after a
change, measured side by side.

Needs Debian's postgresql and openssl (as .ci/run installs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "bench")]

from bulk_load import LatencyProxy  # noqa: E402
from neon_like import installed, timed  # noqa: E402
from servers import ENCODED, debian_bin, make_certificates, remove_cluster, start_cluster  # noqa: E402

from runner.connect.connection import connect  # noqa: E402
from runner.connect.target import with_database  # noqa: E402

MIGRATION = """\
CREATE TABLE deploy_items (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deploy_items_name ON deploy_items (name);
"""

PLAN = "sqlplan: 1\nname: create_items\nonce: true\nsteps:\n  - batch: |\n" + "".join(
    f"      {line}\n" for line in MIGRATION.splitlines()
)


def find_dbmate(given: str | None) -> str | None:
    for candidate in (given, shutil.which("dbmate"), str(ROOT / "node_modules/.bin/dbmate")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


class Tool:
    """One way to deploy: its command, its environment, and how to undo an apply."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], reset: Callable[[], None]
    ) -> None:
        self.name, self.command, self.env, self.reset = name, command, env, reset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rtt", default="20")
    parser.add_argument("--dbmate", help="the dbmate binary (default: PATH, node_modules/.bin)")
    parser.add_argument("--baseline", type=Path, help="another checkout of sqlplan to compare")
    args = parser.parse_args()
    bin_dir = debian_bin()
    if bin_dir is None or shutil.which("openssl") is None:
        raise SystemExit(
            "needs Debian's postgresql and openssl: apt-get install postgresql openssl"
        )
    psql = str(bin_dir / "psql")
    dbmate = find_dbmate(args.dbmate)

    import pwd

    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    work = Path(tempfile.mkdtemp(prefix="sqlplan-deploy-bench-"))
    work.chmod(0o755)
    sqlplan = str(installed(work))
    baseline = None
    if args.baseline:
        (work / "baseline").mkdir()
        baseline = str(installed(work / "baseline", args.baseline.resolve()))
    certs = make_certificates(work, owner)
    cluster = start_cluster(bin_dir, tls=certs)
    try:
        admin = connect(cluster.admin_target())
        admin.run("CREATE DATABASE deploy OWNER scram")
        admin.run("CREATE DATABASE deploy_baseline OWNER scram")
        admin.close()
        direct = connect(with_database(cluster.admin_target(), "deploy"))
        other = connect(with_database(cluster.admin_target(), "deploy_baseline"))

        def run_sql(sql: str, con: Any = direct) -> None:
            con.run(sql)

        def forget(table: str, condition: str, con: Any = direct) -> None:
            """Delete a tool's record of the migration, once the tool has made its table."""
            if con.run("SELECT to_regclass(:t)", t=table)[0][0] is not None:
                run_sql(f"DELETE FROM {table} WHERE {condition}", con)

        (work / "migrate.yaml").write_text(PLAN)
        (work / "migrate.sql").write_text(f"BEGIN;\n{MIGRATION}COMMIT;\n")
        migrations = work / "db" / "migrations"
        migrations.mkdir(parents=True)
        (migrations / "20260101000000_create_items.sql").write_text(
            f"-- migrate:up\n{MIGRATION}\n-- migrate:down\nDROP TABLE deploy_items;\n"
        )
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "SQLPLAN_")) and k != "DATABASE_URL"}  # fmt: skip
        base_env["SQLPLAN_CACHE_DIR"] = str(work / "cache")
        print(
            f"PostgreSQL {bin_dir.parent.name} (Debian), TLS + SCRAM, {args.rounds} interleaved "
            f"rounds, whole processes; sqlplan installed as from a wheel; dbmate: {dbmate or 'not installed'}"
        )
        restored = work / "cache-restored"
        for rtt in (float(r) for r in args.rtt.split(",")):
            proxy = LatencyProxy(("127.0.0.1", cluster.port), rtt)
            url = f"postgresql://scram:{ENCODED}@localhost:{proxy.port}/deploy?sslmode=require&channel_binding=require"
            env = {**base_env, "DATABASE_URL": url}

            def drop_table() -> None:
                run_sql("DROP TABLE IF EXISTS deploy_items")

            def forget_sqlplan() -> None:
                drop_table()
                forget("sqlplan.history", "plan = 'create_items'")

            def forget_baseline() -> None:
                run_sql("DROP TABLE IF EXISTS deploy_items", other)
                forget("sqlplan.history", "plan = 'create_items'", other)

            def forget_dbmate() -> None:
                drop_table()
                forget("schema_migrations", "true")

            tools = [
                Tool("sqlplan", [sqlplan, "run", "migrate.yaml"], env, forget_sqlplan),
                Tool(
                    "sqlplan, cache off",
                    [sqlplan, "run", "migrate.yaml"],
                    {**env, "SQLPLAN_NO_CACHE": "1"},
                    forget_sqlplan,
                ),
                Tool(
                    "psql -f", [psql, "-X", "-q", "-d", url, "-f", "migrate.sql"], env, drop_table
                ),
            ]
            # A CI job that restores the cache a previous job saved, onto a fresh checkout and
            # install: the plans' entries hit, sqlplan's own files are digested once (the memo
            # that finds their digest from their stamps is of the old install, so it is dropped).

            def restore_cache() -> None:
                forget_sqlplan()
                shutil.rmtree(restored, ignore_errors=True)
                if (work / "cache").is_dir():
                    shutil.copytree(work / "cache", restored)
                    shutil.rmtree(restored / "code", ignore_errors=True)

            tools.insert(
                2,
                Tool(
                    "sqlplan, restored",
                    [sqlplan, "run", "migrate.yaml"],
                    {**env, "SQLPLAN_CACHE_DIR": str(restored)},
                    restore_cache,
                ),
            )
            if baseline:
                base_url = url.replace("/deploy?", "/deploy_baseline?")
                tools.append(
                    Tool(
                        "baseline",
                        [baseline, "run", "migrate.yaml"],
                        {
                            **base_env,
                            "DATABASE_URL": base_url,
                            "SQLPLAN_CACHE_DIR": str(work / "cache-baseline"),
                        },
                        forget_baseline,
                    )
                )
            if dbmate:
                dbmate_url = url.replace("&channel_binding=require", "")
                tools.append(
                    Tool(
                        "dbmate",
                        [
                            dbmate,
                            "--url",
                            dbmate_url,
                            "--migrations-dir",
                            str(migrations),
                            "--no-dump-schema",
                            "migrate",
                        ],
                        env,
                        forget_dbmate,
                    )
                )
            # warm-up: the history table, dbmate's table, the cache, the OS's page cache
            for tool in tools:
                tool.reset()
                timed(tool.command, work, tool.env)
            apply: dict[str, list[float]] = {t.name: [] for t in tools}
            again: dict[str, list[float]] = {t.name: [] for t in tools}
            for _ in range(args.rounds):
                for tool in tools:
                    tool.reset()
                    apply[tool.name].append(timed(tool.command, work, tool.env))
                    if tool.name != "psql -f":
                        again[tool.name].append(timed(tool.command, work, tool.env))
            trips_apply: dict[str, int] = {}
            trips_again: dict[str, int] = {}
            for tool in tools:
                tool.reset()
                trips_apply[tool.name] = _turns(proxy, tool, work)
                trips_again[tool.name] = _turns(proxy, tool, work)
            psql_apply = statistics.median(apply["psql -f"])
            ours_apply = statistics.median(apply["sqlplan"])
            print(f"\n== RTT {rtt:g} ms")
            print(f"  {'tool':<20} {'apply ms':>9} {'x psql':>7} {'trips':>6} {'applied ms':>11} {'x own apply':>12} {'trips':>6}")  # fmt: skip
            for tool in tools:
                a = statistics.median(apply[tool.name])
                line = f"  {tool.name:<20} {a * 1000:9.1f} {a / psql_apply:7.2f} {trips_apply[tool.name]:6d}"
                if again[tool.name]:
                    b = statistics.median(again[tool.name])
                    own = ours_apply if tool.name.startswith("sqlplan, ") else a
                    line += f" {b * 1000:11.1f} {b / own:12.2f} {trips_again[tool.name]:6d}"
                print(line)
            print(
                "  (psql -f has no history: it cannot tell that a migration is applied; its trips "
                "include the login, as all do)"
            )
        direct.close()
        other.close()
    finally:
        remove_cluster(cluster)
        shutil.rmtree(work, ignore_errors=True)


def _turns(proxy: LatencyProxy, tool: Tool, work: Path) -> int:
    """The client's round trips in one run, login included, as the proxy counts them."""
    before = proxy.turns
    timed(tool.command, work, tool.env)
    time.sleep(0.05)
    return proxy.turns - before


if __name__ == "__main__":
    main()
