"""The GitHub Action: `action.yml` names only what it declares, and its review script runs end to
end in a real git repository with two commits, with the environment GitHub sets, a recorded
pull-request event, a real PostgreSQL to rehearse on, and GitHub's REST API replayed at the HTTP
boundary."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, Database
from github_api import RECORDED, Reply, comment_made, serve
from gitrepo import git

from runner.review.comment import MARKER

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())
TOKEN = "ghs_action_token_never_printed"


def test_action_yml_names_only_what_it_declares() -> None:
    text = (ROOT / "action.yml").read_text()
    assert ACTION["runs"]["using"] == "composite"
    declared = set(ACTION["inputs"])
    used = set(re.findall(r"inputs\.([A-Za-z0-9_-]+)", text))
    assert used <= declared, used - declared
    assert declared <= used, declared - used  # and every input does something
    steps = ACTION["runs"]["steps"]
    ids = {step["id"] for step in steps if "id" in step}
    for step_id, output in re.findall(r"steps\.([A-Za-z0-9_-]+)\.outputs\.([A-Za-z0-9_-]+)", text):
        assert step_id in ids, step_id
        if step_id == "review":
            assert output in ACTION["outputs"]
    for step in steps:
        assert ("uses" in step) != ("run" in step), step
        if "run" in step:
            assert step["shell"] == "bash"
            assert "${{" not in step["run"]  # inputs reach scripts through env, never pasted
            for script in re.findall(r"\$GITHUB_ACTION_PATH/([\w/.-]+)", step["run"]):
                assert (ROOT / script).is_file(), script
        else:
            assert re.fullmatch(r"[\w-]+/[\w/-]+@v\d+", step["uses"]), step["uses"]
    for name, output in ACTION["outputs"].items():
        assert output["value"] == f"${{{{ steps.review.outputs.{name} }}}}"


def test_the_install_script_keys_the_cache_on_the_requirements(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "GITHUB_OUTPUT": str(out), "RUNNER_OS": "Linux"}
    subprocess.run(["bash", str(ROOT / "action" / "install.sh"), "key"], env=env, check=True)
    key = out.read_text().strip()
    assert re.fullmatch(r"key=sqlplan-pip-Linux-py3\.\d+-[0-9a-f]{16}", key), key
    wrong = subprocess.run(
        ["bash", str(ROOT / "action" / "install.sh")], capture_output=True, check=False
    )
    assert wrong.returncode == 2


def repository(root: Path) -> tuple[str, str]:
    """main: a table and its rows; the pull request: an index and a column on it."""
    git(root, "init", "-q", "-b", "main")
    plans = root / "migrations"
    plans.mkdir()
    (plans / "001_items.yaml").write_text(
        "sqlplan: 1\nname: items\nsteps:\n  - batch: |\n"
        "      CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, a int);\n"
        "      INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g ON CONFLICT DO NOTHING;\n"
    )
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "base")
    base = git(root, "rev-parse", "HEAD")
    git(root, "checkout", "-q", "-b", "add-b")
    (plans / "002_index.yaml").write_text(
        "sqlplan: 1\nname: index\nsteps:\n  - name: Index a\n"
        "    batch: CREATE INDEX items_a ON items (a)\n"
    )
    (plans / "003_column.yaml").write_text(
        "sqlplan: 1\nname: column\nlock_timeout: 2s\nsteps:\n  - name: Add b\n"
        "    batch: ALTER TABLE items ADD COLUMN b int\n"
    )
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "index and column")
    return base, git(root, "rev-parse", "HEAD")


def run_review(
    root: Path, api: str, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    base, head = git(root, "rev-parse", "main"), git(root, "rev-parse", "HEAD")
    event = (RECORDED / "pull_request_event.json").read_text()
    event_path = root.parent / "event.json"
    event_path.write_text(event.replace("BASE_SHA", base).replace("HEAD_SHA", head))
    temp = root.parent / "runner-temp"
    temp.mkdir(exist_ok=True)
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_WORKSPACE": str(root),
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_API_URL": api,
        "GITHUB_OUTPUT": str(root.parent / "output"),
        "GITHUB_STEP_SUMMARY": str(root.parent / "summary.md"),
        "GITHUB_ACTION_PATH": str(ROOT),
        "RUNNER_TEMP": str(temp),
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_SERVER_URL": "https://github.example.com",
        "GITHUB_ACTION_REPOSITORY": "acme/sqlplan-fork",
        "GITHUB_ACTION_REF": "v1.2.0",
        "SQLPLAN_CACHE_DIR": str(root.parent / "cache"),
        "SQLPLAN_PATHS": "migrations",
        **{f"SQLPLAN_{k.upper()}": v for k, v in inputs.items()},
    }
    for name in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY"):
        Path(env[name]).write_text("")
    done = subprocess.run(
        [sys.executable, str(ROOT / "action" / "review.py")],
        cwd=root, env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    return done, _outputs(Path(env["GITHUB_OUTPUT"]).read_text())


def _outputs(text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        name, delimiter = line.split("<<", 1)
        value = []
        for item in lines:
            if item == delimiter:
                break
            value.append(item)
        found[name] = "\n".join(value)
    return found


def test_the_review_end_to_end(tmp_path: Path, database: Database) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    repository(root)
    database.query(
        "CREATE TABLE items (id int PRIMARY KEY, a int);"
        "INSERT INTO items SELECT g, g FROM generate_series(1, 1000) g"
    )
    with serve([Reply(200, []), Reply(201, comment_made("posted"))]) as api:
        done, outputs = run_review(
            root, api.url, rehearse_url=database.url, sarif="true", comment="true"
        )
    assert done.returncode == 0, done.stdout + done.stderr  # warnings alone pass
    assert f"::add-mask::{database.url}" in done.stdout
    # graded by the sizes read from the database given: a 1,000-row table's index is small
    assert outputs["errors"] == "0"
    assert outputs["warnings"] == "0"
    assert outputs["plans"] == "3"  # 002 and 003, and 001 which creates the table they use
    assert outputs["verdict"] == "passes: 3 plans, 1 small finding only"
    comment = Path(outputs["comment-file"]).read_text()
    assert "[small: public.items: " in comment.replace("\\", "")
    assert comment.startswith(MARKER)
    rehearsed = sorted((tmp_path / "runner-temp" / "sqlplan-review").glob("rehearsal-*.json"))
    assert [json.loads(p.read_text())["plan"] for p in rehearsed] == ["index", "column"]
    assert "held in the rehearsal" in comment
    assert re.search(r"SHARE on items: \d+\.\d ms", comment)
    assert "ACCESS EXCLUSIVE on items: " in comment
    assert (tmp_path / "summary.md").read_text() == comment
    (posted,) = [r for r in api.requests if r.method == "POST"]
    assert posted.body == {"body": comment}
    assert posted.path == "/repos/acme/shop/issues/42/comments"
    sarif = json.loads(Path(outputs["sarif-file"]).read_text())
    (result,) = sarif["runs"][0]["results"]
    assert (result["ruleId"], result["level"]) == ("create-index", "note")
    rule = sarif["runs"][0]["tool"]["driver"]["rules"][result["ruleIndex"]]
    assert rule["helpUri"] == (
        "https://github.example.com/acme/sqlplan-fork/blob/v1.2.0/docs/"
        "checking-and-locks.md#locks-and-rewrites"
    )
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "migrations/002_index.yaml"
    )
    rehearsal = json.loads(Path(outputs["rehearsal-sarif-file"]).read_text())
    (run,) = rehearsal["runs"]  # both rehearsals' findings in one run
    held = [
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for r in run["results"]
    ]
    assert ("blocks-others", "migrations/002_index.yaml") in held
    assert ("blocks-others", "migrations/003_column.yaml") in held
    assert TOKEN not in done.stdout + done.stderr
    # a rehearsal rolls back: the database is as it was
    assert database.query("SELECT count(*) FROM pg_indexes WHERE indexname = 'items_a'") == [[0]]


def test_strict_fails_and_a_fork_token_only_warns(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    repository(root)
    refused = Reply(403, {"message": "Resource not accessible by integration"})
    with serve([Reply(200, []), refused]) as api:
        done, outputs = run_review(root, api.url, strict="true")
    assert done.returncode == 1
    assert "::warning::the review comment was not posted: " in done.stdout
    assert "HTTP 403" in done.stdout
    assert outputs["sarif-file"] == ""
    assert outputs["verdict"] == "needs a look: 1 warning in 3 plans"


def test_a_shallow_checkout_is_told_what_to_do(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    repository(root)
    done, _ = run_review(
        root, "http://127.0.0.1:9", base="0123456789abcdef0123456789abcdef01234567"
    )
    assert done.returncode == 2
    assert "fetch-depth: 0" in done.stdout


@pytest.mark.parametrize("comment", ["true", "false"])
def test_nothing_changed_adds_no_comment(tmp_path: Path, comment: str) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    repository(root)
    git(root, "checkout", "-q", "main")
    with serve([Reply(200, [])]) as api:
        done, outputs = run_review(root, api.url, comment=comment)
    assert done.returncode == 0, done.stderr
    assert outputs["plans"] == "0"
    assert outputs["verdict"] == "no plans changed"
    assert [r.method for r in api.requests] == (["GET"] if comment == "true" else [])


def test_the_paths_input_takes_lines_or_words() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("review", ROOT / "action" / "review.py")
    assert spec is not None
    assert spec.loader is not None
    review = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(review)
    assert review._paths("migrations plans/seed.yaml") == ["migrations", "plans/seed.yaml"]
    assert review._paths("migrations\nmy plans/a.yaml\n") == ["migrations", "my plans/a.yaml"]
    assert review._paths("'my plans'") == ["my plans"]
    assert review._paths("") == []
