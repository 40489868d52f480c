"""Help that teaches: every command's --help ends with examples and the exit codes it can
return, and the examples name real options; `sqlplan new` writes a plan that checks and runs."""

from __future__ import annotations

import re
from collections.abc import Iterator

import click
import pytest
from conftest import Cli, Database

from runner.cli import main


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


COMMANDS = [name for name, command in _commands(main) if not isinstance(command, click.Group)]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_help_has_examples_and_exit_codes(cli: Cli, name: str) -> None:
    result = cli(*name.split(), "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "Examples:" in text, text
    examples = text.split("Examples:", 1)[1].split("Exit codes:", 1)[0]
    lines = [line.strip() for line in examples.splitlines() if line.strip().startswith("sqlplan ")]
    assert lines, f"no example command in {name} --help"
    for line in lines:
        assert line.startswith(f"sqlplan {name}"), line
        command = dict(_commands(main))[name]
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for option in re.findall(r"(?<!\S)(--[a-z-]+)", line):
            assert option in known, f"{name} --help shows {option}, which it does not take"
    assert "Exit codes:" in text
    codes = text.split("Exit codes:", 1)[1]
    assert re.search(r"\b0\b", codes), codes


def test_database_url_shows_its_variable(cli: Cli) -> None:
    for name in ("run", "rehearse", "status", "db url"):
        text = " ".join(cli(*name.split(), "--help").stdout.split())  # as wrapped, unwrapped
        assert "[env: DATABASE_URL]" in text, name


def test_db_status_exit_code_says_whether_it_runs(cli: Cli, tmp_path: object) -> None:
    result = cli("db", "status", "--data-dir", "never-made")
    assert result.exit_code == 4  # no data directory yet, as pg_ctl status says
    assert cli("db", "status").exit_code == 0  # the session's server runs


def test_new_writes_a_plan_that_checks_and_runs(cli: Cli, database: Database) -> None:
    result = cli("new", "first-plan")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "plans/first-plan.yaml\n"
    text = (cli.cwd / "plans" / "first-plan.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=plan.schema.json\n")
    assert (cli.cwd / "plans" / "plan.schema.json").read_text() == cli("schema").stdout
    assert "name: first-plan\n" in text
    checked = cli("check", "plans/first-plan.yaml")
    assert checked.exit_code == 0, checked.stdout + checked.stderr
    ran = cli("run", "plans/first-plan.yaml", env={"DATABASE_URL": database.url})
    assert ran.exit_code == 0, ran.stderr
    assert ran.stdout == "1 item added.\n1: First item\n"
    again = cli("new", "first-plan")
    assert again.exit_code == 2
    assert "plans/first-plan.yaml already exists" in again.stderr


def test_new_once_names_the_file_in_creation_order(cli: Cli, database: Database) -> None:
    (cli.cwd / "schemas").mkdir()
    (cli.cwd / "schemas" / "plan.schema.json").write_text("{}")
    result = cli("new", "add-index", "--once", "--dir", "migrations")
    assert result.exit_code == 0, result.stderr
    path = result.stdout.strip()
    assert re.fullmatch(r"migrations/\d{14}_add-index\.yaml", path), path
    text = (cli.cwd / path).read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/plan.schema.json\n")
    assert re.search(r"^once: true\b", text, re.M)
    assert not (cli.cwd / "migrations" / "plan.schema.json").exists()
    ran = cli("run", "migrations", env={"DATABASE_URL": database.url})
    assert ran.exit_code == 0, ran.stderr
    assert cli("run", "migrations", env={"DATABASE_URL": database.url}).stdout == ""


def test_new_once_plans_made_in_one_second_sort_as_they_were_made(cli: Cli) -> None:
    names = ["zeta", "alpha", "mid", "beta", "omega"]  # in well under a second, mostly
    made = [cli("new", n, "--once", "--dir", "m").stdout.strip() for n in names]
    assert sorted(made) == made
    assert [p.rsplit("_", 1)[1][:-5] for p in sorted(str(p.relative_to(cli.cwd)) for p in (cli.cwd / "m").glob("*.yaml"))] == names  # fmt: skip


@pytest.mark.parametrize("name", ["", "a/b", "../x", "-x", "x y", "x" * 201, "y" * 300])
def test_new_refuses_a_name_that_is_not_one(cli: Cli, name: str) -> None:
    result = cli("new", name)
    assert result.exit_code == 2
    assert "Error" in result.stderr or "error" in result.stderr
