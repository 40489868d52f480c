"""Every CLI path and its exit code; configuration precedence; help text; no password leaks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import Cli, Database

from runner.cli import main
from runner.errors import ExitCode

OK_PLAN = """\
sqlplan: 1
name: ok
on_connect: connected
steps:
  - query: SELECT current_database() AS db
    row: "{db}"
"""


def test_exit_codes_are_the_documented_ones() -> None:
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0,
        "STEP_FAILED": 1,
        "USAGE": 2,
        "INVALID_PLAN": 3,
        "CONFIG": 4,
        "CONNECTION": 5,
        "IN_DOUBT": 6,
        "EXPECTATION": 7,
        "HISTORY": 8,
        "UNFINISHED": 9,
        "INTERNAL": 70,
        "INTERRUPTED": 130,
        "TERMINATED": 143,
        "READER_LEFT": 141,
    }


def test_a_bug_is_reported_with_exit_70_not_a_traceback(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.plan import cache

    def broken(path: object) -> object:
        raise RuntimeError("something sqlplan did not expect")

    monkeypatch.setattr(cache, "load_plan", broken)
    cli.write("ok.yaml", OK_PLAN)
    for command in ("run", "show"):
        result = cli(command, "ok.yaml")
        assert result.exit_code == 70
        assert result.stderr == (
            "sqlplan: internal error: RuntimeError: something sqlplan did not expect "
            "(a bug in sqlplan; please report it with the plan that caused it)\n"
        )


def test_check_of_many_files_reports_every_file_when_one_hits_a_bug(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runner.review import warnings as review

    real = review.warnings

    def sometimes_broken(plan: Any, version: int | None = None, **options: Any) -> Any:
        if plan.name == "second":
            raise RecursionError("deep")
        return real(plan, version, **options)

    monkeypatch.setattr(review, "warnings", sometimes_broken)
    cli.write("a.yaml", OK_PLAN.replace("name: ok", "name: first"))
    cli.write("b.yaml", OK_PLAN.replace("name: ok", "name: second"))
    cli.write("c.yaml", "sqlplan: 1\nname: third\nsteps:\n  - batch: DROP TABLE t\n")
    result = cli("check", "a.yaml", "b.yaml", "c.yaml")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "b.yaml:1:1: error: internal error: RecursionError: deep (a bug in sqlplan; please "
        "report it with the plan that caused it) [internal]",
        "c.yaml:4:12: warning: step 1: DROP TABLE t deletes it and all its data (if intended, "
        "add 'drop' to the step's allow list) [drop]",
    ]
    assert result.stderr == "3 plans checked: 1 error, 1 warning\n"


def test_run_ok_exits_0(cli: Cli, database: Database) -> None:
    cli.write("ok.yaml", OK_PLAN)
    result = cli("run", "ok.yaml", env={"DATABASE_URL": database.url})
    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        f"connected\n{database.target.database}\n",
        "",
    )


def test_step_failure_exits_1(cli: Cli, database: Database) -> None:
    cli.write("bad.yaml", OK_PLAN.replace("current_database()", "no_such_function()"))
    result = cli("run", "bad.yaml", env={"DATABASE_URL": database.url})
    assert result.exit_code == 1
    assert result.stdout == "connected\n"
    assert "function no_such_function() does not exist [42883]" in result.stderr


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("run").exit_code == 2
    assert cli("run", "missing.yaml").exit_code == 2
    assert cli("run", "--no-such-option", "x.yaml").exit_code == 2


def test_invalid_plan_exits_3(cli: Cli) -> None:
    cli.write("invalid.yaml", "sqlplan: 1\nname: x\n")
    result = cli("run", "invalid.yaml")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "invalid.yaml:1:1: error: the plan is missing the required key 'steps' [missing-key]"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:pw@h/db", "the URL must start with postgresql:// or postgres://"),
        ("postgresql://u:pw@h/db?sslmod=require", "unknown connection parameter 'sslmod'"),
        ("postgresql://u:pw@h/db?sslmode=sometimes", "invalid sslmode 'sometimes'"),
        ("postgresql://u:pw@h:port/db", "invalid port 'port'"),
    ],
)
def test_configuration_errors_exit_4_and_mask_the_password(
    cli: Cli, url: str, message: str
) -> None:
    cli.write("ok.yaml", OK_PLAN)
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url})
    assert result.exit_code == 4
    assert message in result.stderr
    assert "pw" not in result.stderr.replace("postgresql", "").replace("sslmode", "")


def test_unreachable_server_exits_5_without_the_password(cli: Cli) -> None:
    cli.write("ok.yaml", OK_PLAN)
    password = "s3cr@t:/%pass"
    url = "postgresql://me:s3cr%40t%3A%2F%25pass@127.0.0.1:9/db?connect_timeout=2"
    result = cli("run", "ok.yaml", env={"DATABASE_URL": url})
    assert result.exit_code == 5
    assert result.stdout == ""
    assert "cannot connect to database 'db' as 'me' on 127.0.0.1:9" in result.stderr
    assert password not in result.stderr
    assert "s3cr" not in result.stderr


def test_database_url_precedence_flag_then_environment_then_dotenv(
    cli: Cli, database: Database
) -> None:
    cli.write("ok.yaml", OK_PLAN)
    broken = "postgresql://x:y@127.0.0.1:9/broken?connect_timeout=1"
    # .env alone is used
    cli.write(".env", f'DATABASE_URL="{database.url}"\n')
    assert cli("run", "ok.yaml").stdout.endswith(f"{database.target.database}\n")
    # the environment beats .env
    cli.write(".env", f'DATABASE_URL="{broken}"\n')
    assert cli("run", "ok.yaml", env={"DATABASE_URL": database.url}).exit_code == 0
    # the flag beats both
    result = cli("run", "ok.yaml", "--database-url", database.url, env={"DATABASE_URL": broken})
    assert result.exit_code == 0


def test_no_url_anywhere_uses_the_embedded_server(cli: Cli) -> None:
    cli.write("ok.yaml", OK_PLAN)
    result = cli("run", "ok.yaml")
    assert (result.exit_code, result.stdout) == (0, "connected\npostgres\n")


def test_db_url_prints_the_configured_url_masked(cli: Cli) -> None:
    result = cli("db", "url", env={"DATABASE_URL": "postgresql://me:hunter2@db.example:6543/app"})
    assert (result.exit_code, result.stdout) == (0, "postgresql://me:****@db.example:6543/app\n")


def test_db_status_names_a_configured_url_that_takes_precedence(cli: Cli) -> None:
    cli.write(".env", 'DATABASE_URL="postgresql://me:hunter2@db.example/app"\n')
    result = cli("db", "status")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("running (pid ")
    assert (
        "note: .env DATABASE_URL is set, so `sqlplan run` uses postgresql://me:****@db.example/app"
        in result.stdout
    )
    assert "hunter2" not in result.stdout


def test_check_exit_codes(cli: Cli) -> None:
    cli.write("good.yaml", OK_PLAN)
    result = cli("check", "good.yaml")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "1 plan checked: 0 errors, 0 warnings\n",
    )  # fmt: skip
    (cli.cwd / "plans" / "nested").mkdir(parents=True)
    cli.write("plans/nested/bad.yml", "sqlplan: 1\n")
    cli.write("plans/good.yaml", OK_PLAN)
    # what `run` would run: a directory's own plans, not its subdirectories'
    result = cli("check")
    assert (result.exit_code, result.stderr) == (0, "1 plan checked: 0 errors, 0 warnings\n")
    result = cli("check", "plans", "plans/nested")
    assert result.exit_code == 1
    assert result.stdout.startswith("plans/nested/bad.yml:1:1: error:")
    assert result.stderr == "2 plans checked: 2 errors, 0 warnings\n"
    # where `run` would find no plan, `check` says so as `run` does: a usage error
    (cli.cwd / "empty").mkdir()
    for args in (["empty"], ["--strict", "empty"], ["--strict", "plans/../empty"]):
        result = cli("check", *args)
        assert result.exit_code == 2, args
        assert result.stderr.endswith("no plan files (*.yaml, *.yml) in " + args[-1] + "\n")
    run = cli("run", "empty")
    assert run.exit_code == 2
    # two `once` plans of one name: `run` refuses them before anything runs, `check` reports them
    (cli.cwd / "once").mkdir()
    for name in ("a", "b"):
        cli.write(
            f"once/{name}.yaml", "sqlplan: 1\nname: same\nonce: true\nsteps:\n  - batch: SELECT 1\n"
        )
    result = cli("check", "once")
    assert result.exit_code == 1
    assert (
        "once/b.yaml:1:1: error: plan name 'same' is also the name of once/a.yaml" in result.stdout
    )


def test_warnings_fail_only_with_strict(cli: Cli) -> None:
    cli.write("wipe.yaml", "sqlplan: 1\nname: wipe\nsteps:\n  - execute: DELETE FROM t\n")
    result = cli("check", "wipe.yaml")
    assert result.exit_code == 0
    assert result.stdout == (
        "wipe.yaml:4:14: warning: step 1: DELETE without WHERE deletes every row "
        "(if intended, add 'delete-without-where' to the step's allow list) [delete-without-where]\n"
    )
    assert cli("check", "--strict", "wipe.yaml").exit_code == 1
    cli.write(
        "wipe.yaml",
        "sqlplan: 1\nname: wipe\nsteps:\n  - execute: DELETE FROM t\n    allow: [delete-without-where]\n",
    )
    result = cli("check", "--strict", "wipe.yaml")
    assert (result.exit_code, result.stdout) == (0, "")


def _commands(group: click.Group, prefix: str = "") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix}{name}", command))
        if isinstance(command, click.Group):
            found.extend(_commands(command, f"{prefix}{name} "))
    return found


@pytest.mark.parametrize(("name", "command"), _commands(main), ids=[n for n, _ in _commands(main)])
def test_every_command_has_help(cli: Cli, name: str, command: click.Command) -> None:
    assert command.help
    assert len(command.help) > 20
    result = cli(*name.split(), "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")


def test_readme_documents_every_command_and_exit_code() -> None:
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text()
    for name, _ in _commands(main):
        assert f"sqlplan {name}" in readme, name
    for code in ExitCode:
        assert f"| {code.value} |" in readme, code


def test_db_url_from_pg_variables_masks_the_password(cli: Cli) -> None:
    env = {"PGHOST": "db.example", "PGPORT": "6432", "PGUSER": "app", "PGPASSWORD": "hunter2",
           "PGDATABASE": "shop", "PGSSLMODE": "verify-full", "PGSSLROOTCERT": "system"}  # fmt: skip
    result = cli("db", "url", env=env)
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "postgresql://app:****@db.example:6432/shop?sslmode=verify-full&sslrootcert=system\n"
    )


def test_bad_pg_variable_is_a_configuration_error_naming_it(cli: Cli) -> None:
    cli.write("ok.yaml", OK_PLAN)
    result = cli("run", "ok.yaml", env={"PGHOST": "db.example", "PGCONNECT_TIMEOUT": "soon"})
    assert result.exit_code == 4
    assert (
        result.stderr
        == "sqlplan: error: PGCONNECT_TIMEOUT: invalid connect_timeout 'soon' (whole seconds)\n"
    )


def test_the_command_s_quick_exit_keeps_every_line_and_the_exit_code(
    tmp_path: Path, database: Any
) -> None:
    """`sqlplan` skips the interpreter's teardown once done: what it wrote is all there, and
    the exit code is the command's."""
    import subprocess
    import sys

    plan = tmp_path / "many.yaml"
    plan.write_text(
        "sqlplan: 1\nname: many\nsteps:\n"
        "  - query: SELECT n FROM generate_series(1, 50000) AS n\n    row: 'line {n}'\n"
        "  - batch: SELECT 1/0\n"
    )
    env = {**os.environ, "DATABASE_URL": database.url}
    with open(tmp_path / "out.txt", "w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "runner", "run", str(plan)],
            stdout=out, stderr=subprocess.PIPE, text=True, env=env, check=False,
        )  # fmt: skip
    lines = (tmp_path / "out.txt").read_text().splitlines()
    assert len(lines) == 50000
    assert lines[-1] == "line 50000"
    assert done.returncode == 1
    assert "division by zero" in done.stderr


def test_a_reader_that_leaves_does_not_stop_the_plan(tmp_path: Path, database: Any) -> None:
    """`sqlplan run plan.yaml | head -1`: the plan goes on to its end; its later lines are
    dropped, and stderr says so."""
    import subprocess
    import sys

    plan = tmp_path / "many.yaml"
    plan.write_text(
        "sqlplan: 1\nname: many\nsteps:\n"
        "  - query: SELECT n FROM generate_series(1, 200000) AS n\n    row: 'line {n}'\n"
        "  - batch: CREATE TABLE after_the_reader_left (n int)\n"
    )
    env = {**os.environ, "DATABASE_URL": database.url}
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", "run", str(plan)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.readline() == b"line 1\n"
    process.stdout.close()  # the reader leaves
    with process.stderr:
        stderr = process.stderr.read().decode()
    assert process.wait(60) == 0, stderr
    assert "standard output was closed by its reader" in stderr
    assert "internal error" not in stderr
    assert database.query("SELECT to_regclass('after_the_reader_left') IS NOT NULL") == [[True]]


def test_a_reader_that_leaves_a_printing_command_ends_it_quietly(tmp_path: Path) -> None:
    """`sqlplan show plan.yaml | head -1`, the reader gone before the output: exit 141
    without a word, never an internal error."""
    import subprocess
    import sys

    plan = tmp_path / "p.yaml"
    plan.write_text("sqlplan: 1\nname: p\nsteps:\n  - batch: SELECT 1\n")
    for command in (["show", str(plan)], ["run", "--dry-run", str(plan)], ["schema"]):
        read, write = os.pipe()
        os.close(read)  # the reader has left
        try:
            done = subprocess.run(
                [sys.executable, "-m", "runner", *command],
                stdout=write, stderr=subprocess.PIPE, text=True, check=False,
            )  # fmt: skip
        finally:
            os.close(write)
        assert (done.returncode, done.stderr) == (141, ""), command
