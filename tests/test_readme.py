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
