"""`check --changed-since REF` in a real git repository made by the test: the plans a branch
changed (files, rows_from data, committed or not) and the earlier plans they stand on."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import ROOT
from gitrepo import git
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.cli import main


def check(cwd: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, ["check", "--format", "json", *args], env={})
    finally:
        os.chdir(previous)
    return result.exit_code, json.loads(result.stdout or "{}"), result.stderr


def plan(name: str, sql: str, extra: str = "") -> str:
    return f"sqlplan: 1\nname: {name}\nsteps:\n  - batch: {sql}\n{extra}"


def repository(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "001_orders.yaml").write_text(
        plan("orders", "CREATE TABLE orders (id int, note text)")
    )
    (migrations / "002_customers.yaml").write_text(
        plan("customers", "CREATE TABLE customers (id int)")
    )
    (migrations / "orders.csv").write_text("id,note\n1,a\n")
    (migrations / "003_load.yaml").write_text(
        "sqlplan: 1\nname: load\nsteps:\n  - bulk_insert: INSERT INTO orders (id, note) VALUES ($1, $2)\n"
        "    rows_from: {file: orders.csv}\n"
    )
    (migrations / "004_index.yaml").write_text(
        plan("index", "CREATE INDEX CONCURRENTLY customers_id ON customers (id)")
    )
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    return migrations


def test_the_branch_own_plans_and_what_they_stand_on(tmp_path: Path) -> None:
    migrations = repository(tmp_path)
    git(tmp_path, "checkout", "-q", "-b", "feature")
    (migrations / "005_note.yaml").write_text(
        plan("note", "ALTER TABLE orders ALTER COLUMN note SET NOT NULL")
    )
    (migrations / "orders.csv").write_text("id,note\n1,a\n2,b\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "feature")
    (migrations / "006_untracked.yaml").write_text(plan("later", "SELECT 1"))
    code, report, stderr = check(tmp_path, "migrations", "--changed-since", "main")
    assert code == 0, stderr
    names = [Path(f).name for f in report["files"]]
    assert names == ["001_orders.yaml", "003_load.yaml", "005_note.yaml", "006_untracked.yaml"]
    assert "3 of 6 plans changed since main, and 1 earlier they stand on" in stderr
    schema = json.loads((ROOT / "schemas" / "check-report.schema.json").read_text())
    assert list(Draft202012Validator(schema).iter_errors(report)) == []
    chosen = report["changed_since"]
    assert [Path(f).name for f in chosen["needed"]] == ["001_orders.yaml"]
    assert chosen["ref"] == "main"
    assert len(chosen["changed"]) == 3
    codes = {d["code"] for d in report["diagnostics"]}
    assert codes == {"set-not-null", "lock-timeout"}
    # main moves on after the branch left it: its new plans are not the branch's
    git(tmp_path, "checkout", "-q", "main")
    (migrations / "004_index.yaml").write_text(
        plan("index", "CREATE INDEX customers_id ON customers (id)")
    )
    git(tmp_path, "commit", "-q", "-am", "main moves")
    git(tmp_path, "checkout", "-q", "feature")
    code, report, stderr = check(tmp_path, "migrations", "--changed-since", "main")
    assert [Path(f).name for f in report["files"]] == names


def test_tables_new_plans_create_are_exempt_in_the_plans_after(tmp_path: Path) -> None:
    """An index on a table a new plan of the same change creates blocks nobody: no one uses the
    table yet. An index on a table an old plan created (in use, in production) still warns, and
    so does one on a table whose plan was only modified (it may have run long ago)."""
    migrations = repository(tmp_path)
    git(tmp_path, "checkout", "-q", "-b", "feature")
    (migrations / "005_fresh.yaml").write_text(plan("fresh", "CREATE TABLE fresh (id int, a int)"))
    (migrations / "006_indexes.yaml").write_text(
        "sqlplan: 1\nname: indexes\nsteps:\n"
        "  - batch: CREATE INDEX fresh_a ON fresh (a)\n"
        "  - batch: CREATE INDEX orders_note ON orders (note)\n"
        "  - batch: CREATE INDEX customers_x ON customers (id)\n"
    )
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "fresh")
    _, report, stderr = check(tmp_path, "migrations", "--changed-since", "main")
    warned = sorted(
        re.findall(r"SHARE lock on (\w+)", d["message"])[0] for d in report["diagnostics"]
    )
    assert warned == ["customers", "orders"], stderr
    # a plan that was only modified: its tables are not new
    (migrations / "002_customers.yaml").write_text(
        plan("customers", "CREATE TABLE customers (id int, name text)")
    )
    _, report, _ = check(tmp_path, "migrations", "--changed-since", "main")
    messages = [d["message"] for d in report["diagnostics"] if d["code"] == "create-index"]
    assert len(messages) == 2
    # without --changed-since every plan is judged alone, as before
    _, report, _ = check(tmp_path, "migrations")
    assert len([d for d in report["diagnostics"] if d["code"] == "create-index"]) == 3


def test_nothing_changed_and_a_bad_ref(tmp_path: Path) -> None:
    repository(tmp_path)
    code, report, stderr = check(tmp_path, "migrations", "--changed-since", "HEAD")
    assert code == 0
    assert report["files"] == []
    assert "0 of 4 plans changed since HEAD" in stderr
    code, _, stderr = check(tmp_path, "migrations", "--changed-since", "no-such-ref")
    assert code == 2
    assert "--changed-since: git merge-base no-such-ref" in stderr


def test_a_new_plan_that_takes_an_old_plan_name_is_caught(tmp_path: Path) -> None:
    migrations = repository(tmp_path)
    (migrations / "001_orders.yaml").write_text(
        plan("orders", "CREATE TABLE orders (id int, note text)").replace(
            "name: orders", "name: orders\nonce: true"
        )
    )
    git(tmp_path, "commit", "-q", "-am", "once")
    (migrations / "007_again.yaml").write_text(
        plan("orders", "SELECT 1").replace("name: orders", "name: orders\nonce: true")
    )
    code, report, _ = check(tmp_path, "migrations", "--changed-since", "HEAD")
    assert code == 1
    assert [d["code"] for d in report["diagnostics"]] == ["once-name"]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    uses=st.lists(st.sets(st.integers(0, 5), max_size=2), min_size=6, max_size=6),
    touched=st.sets(st.integers(0, 5), min_size=1),
)
def test_the_selection_follows_a_model(
    tmp_path_factory: object, uses: list[set[int]], touched: set[int]
) -> None:
    """Plan i creates table t{i} and reads the tables it uses; the branch changes some plans:
    the selection is those, and each earlier plan that creates a table a changed one uses."""
    root = tmp_path_factory.mktemp("repo")  # type: ignore[attr-defined]
    git(root, "init", "-q", "-b", "main")
    for i in range(6):
        reads = "".join(f" SELECT * FROM t{j};" for j in sorted(uses[i]) if j < i)
        (root / f"{i}.yaml").write_text(plan(f"p{i}", f"'CREATE TABLE t{i} (id int);{reads}'"))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    for i in touched:
        (root / f"{i}.yaml").write_text((root / f"{i}.yaml").read_text() + "# changed\n")
    code, report, stderr = check(root, ".", "--changed-since", "main")
    assert code == 0, stderr
    needed = {j for i in touched for j in uses[i] if j < i} - touched
    expected = sorted(touched | needed)
    assert [Path(f).name for f in report["files"]] == [f"{i}.yaml" for i in expected]
