"""The README's plan is valid, uses every step kind, and prints what the README says it prints."""

from __future__ import annotations

import re

from conftest import ROOT, Cli, Database

from runner.plan.validate import parse_plan

README = (ROOT / "README.md").read_text()


def _example() -> tuple[str, str]:
    match = re.search(
        r"## A plan\n\n```yaml\n(.*?)```\n\n`sqlplan run library.yaml` prints:\n\n```text\n(.*?)```",
        README,
        re.S,
    )
    assert match, "the README's example plan and its output were not found"
    return match.group(1), match.group(2)


def test_readme_plan_is_valid_and_uses_every_step_kind() -> None:
    plan = parse_plan(_example()[0], "README.md")
    kinds = {type(s).__name__ for s in plan.steps}
    assert kinds == {"BatchStep", "ExecuteStep", "BulkInsertStep", "QueryStep"}


def test_readme_plan_prints_what_the_readme_shows(cli: Cli, database: Database) -> None:
    plan, output = _example()
    cli.write("library.yaml", plan)
    result = cli("run", "library.yaml", env={"DATABASE_URL": database.url})
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == output


def test_the_first_two_commands_make_their_own_virtual_environment() -> None:
    """A fresh Debian or Ubuntu refuses `pip install` outside a venv (PEP 668); .ci/run runs
    the second command as the README writes it."""
    blocks = re.findall(
        r"\*\*Install and run (the quickstart|the tests)\*\*.*?```sh\n(.*?)\n```", README, re.S
    )
    assert [name for name, _ in blocks] == ["the quickstart", "the tests"]
    for _, command in blocks:
        assert command.startswith(
            "python3 -m venv .venv && . .venv/bin/activate && pip install -e "
        )
    assert blocks[0][1].endswith(
        "sqlplan run plans/create_table.yaml && sqlplan run plans/read_data.yaml"
    )
    assert blocks[1][1].endswith("&& pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "**Install and run the tests**" in ci.replace("\\*", "*")
