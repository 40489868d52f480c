"""Bulk loads and the quickstart plans: sqlplan against psql and the seed's loop, side by side.

Starts the embedded PostgreSQL in a temporary directory and a loopback TCP proxy in front of it
that delays every chunk by half the round-trip time each way (RTT 0 and 20 ms). Then, in the
same run, for N rows:

- the seed's pattern: pg8000, one INSERT per row inside a transaction (measured on a sample of
  rows when the whole would take minutes; the rate is per row);
- psql's \\copy of the same CSV (the practical limit), with the embedded package's psql;
- psycopg 3's COPY, if psycopg is installed;
- `sqlplan run` of a plan whose bulk_insert reads the CSV (the whole process).

It prints rows/s, the ratio to psql, and each process's peak RSS. Then each quickstart plan via
`sqlplan run` against `psql -f` of the same SQL: with the validated plan cached (every run of an
unchanged plan after its first), without the cache, and with --no-pipeline. sqlplan's modules
are byte-compiled first, as an installed package's are. Figures only; nothing is asserted.

    python bench/bulk_load.py [--rows 1000,10000,100000] [--rtt 0,20] [--runs 5] [--million]
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import functools
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from runner.connect.connection import connect
from runner.connect.embedded import EmbeddedServer, _wheel_install
from runner.connect.target import Target

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = "title, author, publication_year, in_stock"
TABLE = f"CREATE TABLE books (id SERIAL PRIMARY KEY, title TEXT NOT NULL, author TEXT, publication_year INT, in_stock BOOLEAN); -- {COLUMNS}"
QUICKSTART_SQL = {
    "create_table": """DROP TABLE IF EXISTS books;
CREATE TABLE books (id SERIAL PRIMARY KEY, title VARCHAR(255) NOT NULL, author VARCHAR(255), publication_year INT, in_stock BOOLEAN DEFAULT TRUE);
INSERT INTO books (title, author, publication_year, in_stock) VALUES ('The Catcher in the Rye', 'J.D. Salinger', 1951, true);
BEGIN;
INSERT INTO books (title, author, publication_year, in_stock) VALUES ('The Hobbit', 'J.R.R. Tolkien', 1937, true);
INSERT INTO books (title, author, publication_year, in_stock) VALUES ('1984', 'George Orwell', 1949, true);
INSERT INTO books (title, author, publication_year, in_stock) VALUES ('Dune', 'Frank Herbert', 1965, false);
COMMIT;
""",
    "read_data": "SELECT * FROM books ORDER BY publication_year;\n",
    "update_data": "UPDATE books SET in_stock = true WHERE title = 'Dune';\n",
    "delete_data": "DELETE FROM books WHERE title = '1984';\n",
}


class LatencyProxy:
    """127.0.0.1:port -> the server (a unix socket, or a TCP (host, port)), each chunk held
    back rtt/2 in each direction. `turns` counts the client's round trips: bursts of data from
    the client with an answer from the server between them, over all connections."""

    def __init__(self, upstream: str | tuple[str, int], rtt_ms: float) -> None:
        self.upstream = upstream
        self.delay = rtt_ms / 2000
        self.turns = 0
        self._client_spoke_last: dict[int, bool] = {}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        # a client that hangs up mid-stream is expected (psql exits; Terminate races the proxy)
        self.loop.set_exception_handler(lambda loop, context: None)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if isinstance(self.upstream, tuple):
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        else:
            up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
        key = id(writer)
        await asyncio.gather(
            self._pipe(reader, up_writer, key, True), self._pipe(up_reader, writer, key, False)
        )

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        key: int = 0,
        from_client: bool = False,
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = self.loop.create_task(deliver())
        while data := await reader.read(1 << 16):
            if from_client and not self._client_spoke_last.get(key, False):
                self.turns += 1
            self._client_spoke_last[key] = from_client
            queue.put_nowait((self.loop.time() + self.delay, data))
        queue.put_nowait((0.0, b""))
        await sender


# Linux keeps a forked child's high-water RSS across exec, so a child of this (growing) process
# would report this process's size. Children are started by a small spawner, started first.
_SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    command, cwd, env = json.loads(line)
    start = time.perf_counter()
    p = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - start
    error = p.stderr.read().decode()[-500:] if os.waitstatus_to_exitcode(status) else ""
    print(json.dumps([elapsed, usage.ru_maxrss, error]), flush=True)
"""
_spawner: list[subprocess.Popen[str]] = []


def run_process(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    """(seconds, peak RSS in KiB) of one process."""
    if not _spawner:
        _spawner.append(
            subprocess.Popen(
                [sys.executable, "-c", _SPAWNER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    spawner = _spawner[0]
    assert spawner.stdin is not None
    assert spawner.stdout is not None
    spawner.stdin.write(json.dumps([command, str(cwd), env]) + "\n")
    spawner.stdin.flush()
    elapsed, rss, error = json.loads(spawner.stdout.readline())
    if error:
        raise RuntimeError(f"{command[0]} failed: {error}")
    return float(elapsed), int(rss)


def seed_loop(target: Target, rows: int, csv: Path) -> float:
    """The seed's pattern through pg8000: BEGIN, one INSERT per row, COMMIT; seconds."""
    lines = csv.read_text().splitlines()[1 : rows + 1]
    con = connect(target)
    try:
        start = time.perf_counter()
        con.run("BEGIN")
        for line in lines:
            title, author, year, stock = line.split(",")
            con.run(
                f"INSERT INTO books ({COLUMNS}) VALUES (:t, :a, :y, :s)",
                t=title, a=author, y=int(year), s=stock == "true",
            )  # fmt: skip
        con.run("COMMIT")
        return time.perf_counter() - start
    finally:
        con.close()


def reset(server: Target) -> None:
    """An empty books table, straight through the socket (not timed)."""
    con = connect(server)
    try:
        con.run("DROP TABLE IF EXISTS books")
        con.run(TABLE)
    finally:
        con.close()


def timed(server: Target, command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int]:
    reset(server)
    return run_process(command, cwd, env)


def median_of(runs: int, measure: Callable[[], tuple[float, int]]) -> tuple[float, int]:
    results = [measure() for _ in range(runs)]
    return statistics.median(r[0] for r in results), max(r[1] for r in results)


def csv_paths(
    megabytes: int, runs: int, work: Path, server: Target, *, psql: str, base_env: dict[str, str]
) -> None:
    """A CSV of `megabytes` (a quarter of its titles quoted, with a delimiter and a doubled
    quote inside, one in fifty across two lines), loaded over the socket: by psql's \\copy,
    by sqlplan sent whole (the server parses it), parsed by sqlplan and sent as COPY (fields
    in another order), and parsed and sent row by row (a statement COPY cannot do). Runs are
    interleaved; seconds are medians."""
    csv = work / "big.csv"
    rows = 0
    with csv.open("w") as f:
        f.write("title,author,publication_year,in_stock\n")
        while f.tell() < megabytes * 1_000_000:
            title = f'"Book, {rows} ""the"" one"' if rows % 4 == 0 else f"Book {rows}"
            if rows % 50 == 1:
                title = f'"Book\n{rows}"'
            year = "" if rows % 7 == 0 else str(1900 + rows % 120)
            f.write(f"{title},Author {rows % 977},{year},{'true' if rows % 3 else 'false'}\n")
            rows += 1
    insert = "INSERT INTO books (title, author, publication_year, in_stock) VALUES"
    plans = {
        "sqlplan, sent whole": f"{insert} ($1, $2, $3, $4)",
        "sqlplan, parsed, as COPY": f"{insert} ($2, $1, $3, $4)",
        "sqlplan, parsed, row by row": f"{insert} ($1, $2, $3::int + 0, $4)",
    }
    fields = {"sqlplan, parsed, as COPY": "\n      fields: [author, title, publication_year, in_stock]"}  # fmt: skip
    for number, (name, statement) in enumerate(plans.items()):
        (work / f"csv{number}.yaml").write_text(
            f"sqlplan: 1\nname: csv {number}\nsteps:\n  - bulk_insert: {statement}\n"
            f"    rows_from:\n      file: big.csv{fields.get(name, '')}\n"
        )
    url = server.url()
    env = {**base_env, "DATABASE_URL": url}
    copy = f"\\copy books ({COLUMNS}) FROM '{csv}' WITH (FORMAT csv, HEADER)"
    commands = {"psql \\copy": [psql, "-X", "-q", "-d", url, "-c", copy]}
    for number, name in enumerate(plans):
        commands[name] = [sys.executable, "-m", "runner", "run", f"csv{number}.yaml"]
        timed(server, commands[name], work, env)  # validated once: the cache holds it
    times: dict[str, list[float]] = {name: [] for name in commands}
    peaks: dict[str, int] = dict.fromkeys(commands, 0)
    for _ in range(runs):
        for name, command in commands.items():
            seconds, rss = timed(server, command, work, env)
            times[name].append(seconds)
            peaks[name] = max(peaks[name], rss)
    size = csv.stat().st_size / 1e6
    print(f"\n== A {size:.0f} MB CSV ({rows:,} rows), over the socket: seconds, median of {runs}")
    floor = statistics.median(times["psql \\copy"])
    print(f"  {'method':<30} {'seconds':>8} {'MB/s':>7} {'x psql':>7} {'peak RSS':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<30} {median:8.2f} {size / median:7.1f} {median / floor:7.2f} {peaks[name] / 1024:7.1f} MiB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,10000,100000")
    parser.add_argument("--rtt", default="0,20", help="round-trip times to inject, in ms")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--million", action="store_true", help="also load 1M rows, for peak RSS")
    parser.add_argument("--csv-mb", type=int, default=0,
                        help="also load a CSV of this many MB through each path sqlplan has")  # fmt: skip
    args = parser.parse_args()
    sizes = [int(n) for n in args.rows.split(",")]
    rtts = [float(r) for r in args.rtt.split(",")]

    run_process(
        [sys.executable, "-c", "pass"], Path.cwd(), dict(os.environ)
    )  # the spawner, while small
    compileall.compile_dir(ROOT / "runner", quiet=1)
    work = Path(tempfile.mkdtemp(prefix="sqlplan-bulk-bench-"))
    work.chmod(0o755)  # ours; the server's user must reach it when run as root
    embedded = EmbeddedServer(work / ".sqlplan")
    try:
        server = embedded.ensure_running()
        psql = str(_wheel_install() / "bin" / "psql")
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PG", "SQLPLAN_")) and k != "DATABASE_URL"
        }
        base_env["SQLPLAN_CACHE_DIR"] = str(work / "cache")
        for n in sorted(set(sizes + ([1_000_000] if args.million else []))):
            csv = work / f"books{n}.csv"
            with csv.open("w") as f:
                f.write("title,author,publication_year,in_stock\n")
                for i in range(n):
                    f.write(
                        f"Book {i},Author {i % 977},{1900 + i % 120},{'true' if i % 3 else 'false'}\n"
                    )
            (work / f"load{n}.yaml").write_text(
                f"sqlplan: 1\nname: load {n}\nsteps:\n  - bulk_insert: INSERT INTO books ({COLUMNS}) VALUES ($1, $2, $3, $4)\n"
                f"    rows_from:\n      file: books{n}.csv\n    after: 'loaded {{count}}'\n"
            )
        print(
            f"PostgreSQL 18 (embedded), loopback proxy; median of {args.runs} runs; RSS is each process's peak"
        )
        if args.csv_mb:
            csv_paths(args.csv_mb, args.runs, work, server, psql=psql, base_env=base_env)
        for rtt in rtts:
            proxy = LatencyProxy(server.socket_path, rtt)
            target = Target(host="127.0.0.1", port=proxy.port, user="postgres", password=None,
                            database="postgres", sslmode="disable")  # fmt: skip
            url = target.url()
            env = {**base_env, "DATABASE_URL": url}

            print(f"\n== RTT {rtt:g} ms: bulk insert")
            print(
                f"  {'rows':>8}  {'method':<34} {'rows/s':>10} {'x psql':>7} {'x seed':>8} {'peak RSS':>10}"
            )
            for n in sizes:
                csv = work / f"books{n}.csv"
                results: dict[str, tuple[float, int, int]] = {}  # method: (seconds, rows, rss)

                copy = f"\\copy books ({COLUMNS}) FROM '{csv}' WITH (FORMAT csv, HEADER)"
                seconds, rss = median_of(
                    args.runs,
                    functools.partial(
                        timed, server, [psql, "-X", "-q", "-d", url, "-c", copy], work, env
                    ),
                )
                results["psql \\copy"] = (seconds, n, rss)
                reset(server)
                run_process([sys.executable, "-m", "runner", "run", f"load{n}.yaml"], work, env)
                seconds, rss = median_of(
                    args.runs,
                    functools.partial(
                        timed,
                        server,
                        [sys.executable, "-m", "runner", "run", f"load{n}.yaml"],
                        work,
                        env,
                    ),
                )
                results["sqlplan run (rows_from CSV)"] = (seconds, n, rss)
                if importlib.util.find_spec("psycopg") is not None:
                    probe = (
                        f"import psycopg\nwith psycopg.connect({url!r}) as c, c.cursor() as cur:\n"
                        f"    with cur.copy('COPY books ({COLUMNS}) FROM STDIN WITH (FORMAT csv, HEADER)') as cp:\n"
                        f"        cp.write(open({str(csv)!r}, 'rb').read())\n"
                    )
                    seconds, rss = median_of(
                        args.runs,
                        functools.partial(timed, server, [sys.executable, "-c", probe], work, env),
                    )
                    results["psycopg 3 COPY"] = (seconds, n, rss)
                # The seed's loop: three round trips a row; a sample when the whole would take long.
                sample = min(n, 10_000 if rtt == 0 else max(50, int(20_000 / max(rtt, 1))))
                reset(server)
                results[f"seed loop (pg8000, {sample:,} rows sampled)" if sample < n else "seed loop (pg8000, row by row)"] = (
                    seed_loop(target, sample, csv), sample, 0)  # fmt: skip
                psql_rate = results["psql \\copy"][1] / results["psql \\copy"][0]
                seed_rate = next(r[1] / r[0] for k, r in results.items() if k.startswith("seed"))
                for method, (seconds, rows, rss) in results.items():
                    rate = rows / seconds
                    memory = f"{rss / 1024:7.1f} MiB" if rss else "   (in-process)"
                    print(
                        f"  {n:>8,}  {method:<34} {rate:>10,.0f} {rate / psql_rate:>7.2f} {rate / seed_rate:>8.1f} {memory}"
                    )
            if args.million:
                reset(server)
                _, rss_small = run_process(
                    [
                        sys.executable,
                        "-m",
                        "runner",
                        "run",
                        f"load{sizes[1] if len(sizes) > 1 else sizes[0]}.yaml",
                    ],
                    work,
                    env,
                )
                reset(server)
                seconds, rss_big = run_process(
                    [sys.executable, "-m", "runner", "run", "load1000000.yaml"], work, env
                )
                print(f"  1,000,000 rows via sqlplan: {1_000_000 / seconds:,.0f} rows/s, peak RSS {rss_big / 1024:.1f} MiB "
                      f"= {rss_big / rss_small:.2f} x that of {sizes[1] if len(sizes) > 1 else sizes[0]:,} rows")  # fmt: skip

            print(f"\n== RTT {rtt:g} ms: quickstart plans, whole process (ms)")
            shutil.copytree(ROOT / "plans", work / "plans", dirs_exist_ok=True)
            for name, sql in QUICKSTART_SQL.items():
                (work / f"{name}.sql").write_text(sql)
            print(
                f"  {'plan':<14} {'psql -f':>8} {'sqlplan':>8} {'ratio':>6} {'no cache':>9} {'no pipeline':>12}"
            )
            for name in QUICKSTART_SQL:
                command = [sys.executable, "-m", "runner", "run", f"plans/{name}.yaml"]

                def whole(command: list[str], env: dict[str, str]) -> float:
                    return median_of(args.runs, functools.partial(run_process, command, work, env))[
                        0
                    ]

                run_process(command, work, env)  # validates the plan once: the cache holds it
                theirs = whole([psql, "-X", "-q", "-d", url, "-f", f"{name}.sql"], env)
                ours = whole(command, env)
                uncached = whole(command, {**env, "SQLPLAN_NO_CACHE": "1"})
                alone = whole([*command, "--no-pipeline"], env)
                print(
                    f"  {name:<14} {theirs * 1000:8.1f} {ours * 1000:8.1f} {ours / theirs:6.2f} "
                    f"{uncached * 1000:9.1f} {alone * 1000:12.1f}"
                )
    finally:
        embedded.destroy()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
