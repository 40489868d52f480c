"""The cache of validated plans: used only while nothing validation read has changed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, Database

from runner.errors import PlanInvalid
from runner.plan import cache as plan_cache
from runner.plan.model import BulkInsertStep
from runner.plan.validate import load_plan as validate

LOAD = """\
sqlplan: 1
name: load
steps:
  - name: Load
    bulk_insert: >-
      INSERT INTO books (title, year)
      VALUES ($1, $2)
    rows_from:
      file: books.csv
    after: "{count} books"
  - execute: "UPDATE books SET year = $1 WHERE title = $2 -- a comment"
    params: [1965, 'Dune', ]
"""


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "plans").glob("*.json")) if (cache / "plans").is_dir() else []


@pytest.mark.parametrize(
    "name",
    ["create_table", "read_data", "update_data", "delete_data", "valid/values", "valid/literals"],
)
def test_a_cached_plan_equals_the_validated_one(cache: Path, name: str) -> None:
    folder = ROOT / "tests" / "plans" if "/" in name else ROOT / "plans"
    path = folder / f"{name}.yaml"
    fresh = validate(path)
    assert plan_cache.load_plan(path) == fresh  # a miss: validated and stored
    assert len(_entries(cache)) == 1
    cached = plan_cache.load_plan(path)  # a hit
    assert cached == fresh
    for step_cached, step_fresh in zip(cached.steps, fresh.steps, strict=True):
        for offset in range(0, len(step_fresh.sql.text), 7):
            assert step_cached.sql.locate(offset) == step_fresh.sql.locate(offset)


def test_a_cache_hit_needs_none_of_the_parsers(cache: Path) -> None:
    probe = (
        "import sys\n"
        "from runner.plan.cache import load_plan\n"
        "load_plan(sys.argv[1])\n"
        # and what `run` imports besides: the engine, the history, the reports, the connection
        "import runner.cli, runner.run.engine, runner.run.history, runner.report\n"
        "import runner.connect.connection, runner.connect.early\n"
        # nor what only a report or a message needs: XML escaping (--junit), "did you mean"
        "print(sorted(m for m in ('yaml', 'jsonschema', 'pglast', 'xml.sax', 'difflib') if m in sys.modules))\n"
    )
    plan = str(ROOT / "plans" / "create_table.yaml")

    def loaded() -> str:
        env = {**os.environ, "SQLPLAN_CACHE_DIR": str(cache)}
        run = subprocess.run([sys.executable, "-c", probe, plan], env=env, capture_output=True, text=True, check=True)  # fmt: skip
        return run.stdout

    # validating: YAML and SQL parsed; the compiled schema check passes it without jsonschema,
    # which only an invalid plan's errors need
    assert loaded() == "['pglast', 'yaml']\n"
    assert loaded() == "[]\n"


def test_a_cache_carried_to_a_fresh_checkout_and_install_hits(cache: Path, tmp_path: Path) -> None:
    """What a CI job sees: the cache directory restored, the checkout and sqlplan's files
    written anew at the same paths (new inodes and times, the same bytes). Entries hit; an
    edit to sqlplan's code or to the rows_from file misses."""
    checkout = tmp_path / "checkout"
    probe = (
        "import sys\n"
        "from runner.plan.cache import load_plan\n"
        "load_plan(sys.argv[1])\n"
        "print('validated' if 'pglast' in sys.modules else 'cached')\n"
    )

    def fresh_checkout() -> None:
        shutil.rmtree(checkout, ignore_errors=True)
        shutil.copytree(ROOT / "runner", checkout / "runner", ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        (checkout / "books.csv").write_text("title,year\nDune,1965\n")
        (checkout / "load.yaml").write_text(LOAD)

    def run() -> str:
        env = {**os.environ, "SQLPLAN_CACHE_DIR": str(cache), "PYTHONPATH": str(checkout)}
        done = subprocess.run([sys.executable, "-c", probe, "load.yaml"], cwd=checkout, env=env, capture_output=True, text=True, check=True)  # fmt: skip
        return done.stdout.strip()

    fresh_checkout()
    assert run() == "validated"
    assert run() == "cached"
    fresh_checkout()
    assert run() == "cached"
    with (checkout / "runner" / "plan" / "model.py").open("a") as handle:
        handle.write("# changed\n")
    assert run() == "validated"
    assert run() == "cached"
    (checkout / "books.csv").write_text("title,year\nDune,1966\n")
    assert run() == "validated"


def test_an_edited_plan_is_validated_again(cache: Path, tmp_path: Path) -> None:
    (tmp_path / "books.csv").write_text("title,year\nDune,1965\n")
    plan = tmp_path / "load.yaml"
    plan.write_text(LOAD)
    first = plan_cache.load_plan(plan)
    assert isinstance(first.steps[0], BulkInsertStep)
    where = first.steps[0].sql.locate(32)  # VALUES, on the folded scalar's second line
    assert (where.line, where.column) == (7, 7)
    plan.write_text(LOAD.replace("$2)", "$3)"))
    with pytest.raises(PlanInvalid) as raised:
        plan_cache.load_plan(plan)
    assert "the SQL uses $3 but never $2" in str(raised.value.diagnostics[0])
    assert len(_entries(cache)) == 1


def test_a_changed_rows_from_file_is_validated_again(cache: Path, tmp_path: Path) -> None:
    csv = tmp_path / "books.csv"
    csv.write_text("title,year\nDune,1965\n")
    plan = tmp_path / "load.yaml"
    plan.write_text(LOAD)
    plan_cache.load_plan(plan)
    csv.write_text("name,year,extra\nDune,1965,x\n")  # a header that no longer matches
    with pytest.raises(PlanInvalid) as raised:
        plan_cache.load_plan(plan)
    assert "books.csv:1:" in str(raised.value.diagnostics[0])
    csv.unlink()
    with pytest.raises(PlanInvalid) as raised:
        plan_cache.load_plan(plan)
    assert "no file 'books.csv' beside the plan" in str(raised.value.diagnostics[0])


def test_the_path_a_plan_is_named_by_is_part_of_the_key(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "books.csv").write_text("title,year\nDune,1965\n")
    (tmp_path / "load.yaml").write_text(LOAD)
    monkeypatch.chdir(tmp_path)
    relative = plan_cache.load_plan("load.yaml")
    absolute = plan_cache.load_plan(tmp_path / "load.yaml")
    assert relative.steps[0].position.path == "load.yaml"
    assert absolute.steps[0].position.path == str(tmp_path / "load.yaml")
    assert plan_cache.load_plan("load.yaml") == relative


def _body(entry: Path) -> dict[str, Any]:
    digest, body = entry.read_bytes().split(b"\n", 1)
    assert hashlib.sha256(body).hexdigest().encode() == digest
    stored: dict[str, Any] = json.loads(body)
    return stored


def _sealed(body: str) -> str:
    """An entry as sqlplan writes one: the digest of its content, then the content."""
    return hashlib.sha256(body.encode()).hexdigest() + "\n" + body


def test_a_damaged_entry_is_ignored_and_replaced(cache: Path) -> None:
    path = ROOT / "plans" / "read_data.yaml"
    fresh = plan_cache.load_plan(path)
    (entry,) = _entries(cache)
    good = entry.read_text().split("\n", 1)[1]
    for damage in (
        "{",
        "not a digest\n" + good,
        _sealed("{"),
        _sealed(json.dumps({"key": 1})),
        _sealed(good.replace('"C": "Plan"', '"C": "Path"')),
        # well-formed JSON, sealed, but a field of the wrong type: strict decoding refuses it
        _sealed(good.replace('"name": "read_data"', '"name": 7')),
        _sealed(good.replace('"null_text": "NULL"', '"null_text": {"L": []}')),
    ):
        entry.write_text(damage)
        assert plan_cache.load_plan(path) == fresh
        assert _body(entry)["plan"]["C"] == "Plan"


def test_sql_edited_in_an_entry_never_runs(cache: Path, tmp_path: Path) -> None:
    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    plan_cache.load_plan(plan)
    (entry,) = _entries(cache)
    entry.write_text(entry.read_text().replace("SELECT 1", "DROP TABLE important"))
    assert "DROP" not in plan_cache.load_plan(plan).steps[0].sql.text
    assert "DROP" not in entry.read_text()  # replaced by the validated plan


@pytest.mark.parametrize(
    "case",
    [("execute", "after", "count"), ("execute", "before", "$1"),
     ("query", "header", "count"), ("query", "row", "$1")],
)  # fmt: skip
def test_a_resealed_entry_whose_message_names_a_missing_field_is_a_miss(
    cache: Path, cli: Cli, database: Database, case: tuple[str, str, str]
) -> None:
    """The digest tells damage, not an edit sealed again (whoever can write the entry can
    compute it); what validation guarantees of messages is checked again on decoding, so such
    an entry is validated from the plan instead of failing to render after its step ran."""
    kind, message, field = case
    sql = "SELECT $1::int AS v" if kind == "query" else "SELECT $1::int"
    plan = cli.write(
        "p.yaml",
        f"sqlplan: 1\nname: p\nsteps:\n  - {kind}: {sql}\n    params: [1]\n"
        f"    {message}: 'got {{{field}}}'\n",
    )
    fresh = plan_cache.load_plan(plan)
    (entry,) = _entries(cache)
    body = entry.read_text().split("\n", 1)[1]
    missing = "$9" if field.startswith("$") else "nothere"
    forged = body.replace(f'"name": "{field}"', f'"name": "{missing}"')
    assert forged != body
    entry.write_text(_sealed(forged))
    assert plan_cache.load_plan(plan) == fresh
    assert f'"{missing}"' not in entry.read_text()  # replaced by the validated plan
    entry.write_text(_sealed(forged))
    result = cli("run", "p.yaml", env={"DATABASE_URL": database.url})
    assert result.exit_code == 0, result.stderr
    assert "got 1" in result.stdout


def test_a_rows_from_file_rewritten_with_the_same_size_and_times_is_validated_again(
    cache: Path, tmp_path: Path
) -> None:
    (tmp_path / "data.csv").write_text("a,b\n1,2\n")
    plan = tmp_path / "p.yaml"
    plan.write_text(
        "sqlplan: 1\nname: p\nsteps:\n  - bulk_insert: INSERT INTO t (a, b) VALUES ($1, $2)\n"
        "    rows_from: {file: data.csv, fields: [a, b]}\n"
    )
    plan_cache.load_plan(plan)
    before = os.stat(tmp_path / "data.csv")
    (tmp_path / "data.csv").write_text("a,c\n1,2\n")  # same size; header now wrong
    os.utime(tmp_path / "data.csv", ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p does
    with pytest.raises(PlanInvalid):
        plan_cache.load_plan(plan)


def test_a_cache_directory_others_can_write_to_is_not_used(cache: Path, tmp_path: Path) -> None:
    cache.mkdir(mode=0o700)
    cache.chmod(0o777)
    plan_cache.load_plan(ROOT / "plans" / "read_data.yaml")
    assert _entries(cache) == []


def test_a_symlink_to_another_users_directory_is_not_used(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to make a directory of another user")
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)  # nobody
    link = tmp_path / "link"
    link.symlink_to(theirs)
    monkeypatch.setenv("SQLPLAN_CACHE_DIR", str(link))
    plan_cache.load_plan(ROOT / "plans" / "read_data.yaml")
    assert list(theirs.iterdir()) == []
    monkeypatch.setenv("SQLPLAN_CACHE_DIR", str(theirs))  # the directory itself, not ours
    plan_cache.load_plan(ROOT / "plans" / "read_data.yaml")
    assert list(theirs.iterdir()) == []


def test_an_entry_of_another_user_is_not_read(cache: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a file to another user")
    path = ROOT / "plans" / "read_data.yaml"
    fresh = plan_cache.load_plan(path)
    (entry,) = _entries(cache)
    entry.write_text(entry.read_text().replace("Connection established", "Hello from nobody"))
    body = entry.read_text().split("\n", 1)[1]
    entry.write_text(_sealed(body))
    os.chown(entry, 65534, 65534)
    assert plan_cache.load_plan(path) == fresh


def test_the_cache_is_private_whatever_the_umask(cache: Path) -> None:
    previous = os.umask(0)
    try:
        plan_cache.load_plan(ROOT / "plans" / "read_data.yaml")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert stat.S_IMODE((cache / "plans").stat().st_mode) == 0o700
    (entry,) = _entries(cache)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def test_no_cache_when_turned_off_or_unwritable(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = ROOT / "plans" / "read_data.yaml"
    monkeypatch.setenv("SQLPLAN_NO_CACHE", "1")
    plan_cache.load_plan(path)
    assert not cache.exists()
    monkeypatch.delenv("SQLPLAN_NO_CACHE")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("SQLPLAN_CACHE_DIR", str(blocker / "cache"))  # under a file: unwritable
    assert plan_cache.load_plan(path) == validate(path)


def test_entries_are_private(cache: Path) -> None:
    plan_cache.load_plan(ROOT / "plans" / "read_data.yaml")
    (entry,) = _entries(cache)
    assert (entry.stat().st_mode & 0o777, entry.parent.stat().st_mode & 0o777) == (0o600, 0o700)
