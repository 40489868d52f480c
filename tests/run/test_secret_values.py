"""A secret var's value never appears in any output: generated secrets (quotes, backslashes,
newlines, any Unicode, long enough for the server to clip them) given to plans whose statements
make the server echo them (an error's message, detail and hint, a WARNING, a failing row's
detail, a returned row, a captured value, an expectation's difference, the history's error
column), searched for in every channel: stdout, stderr, --format json and github, JUnit, the
Markdown summary, show, --dry-run, rehearse in each format (SARIF too), status, the history table, and a
usage error. Nothing else is altered: the reports stay valid, their keys and numbers exact.

A secret shorter than four characters is refused before anything runs (secrets.py says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from conftest import Cli, Database
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow  # the fast tier (-m "not slow") leaves it out

_FAST = settings(
    max_examples=5,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)

SETUP = """
CREATE TABLE guarded (v text CHECK (v = 'ok'));
CREATE FUNCTION shout(t text) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  RAISE WARNING 'heard %', t;
  RAISE EXCEPTION 'refused %', t USING DETAIL = 'detail ' || t, HINT = 'hint ' || t;
END$$;
"""

VARS = "vars:\n  pin: {type: text, secret: true, env: SQLPLAN_TEST_PIN}\n"
PLANS = {
    "p1-row.yaml": "  - name: Echo\n    query: SELECT $1 AS v, 7 AS n\n    params: ['{pin}']\n    header: 'asking {$1}'\n    row: 'got {v} and {n}'\n",
    "p2-capture.yaml": "  - execute: SELECT $1 AS c\n    params: ['{pin}']\n    capture: [c]\n  - execute: SELECT 1\n    after: 'captured {c}'\n",
    "p3-cast.yaml": "  - execute: SELECT $1::int\n    params: ['{pin}']\n",
    "p4-row.yaml": "  - execute: INSERT INTO guarded (v) VALUES ($1)\n    params: ['{pin}']\n",
    "p5-raise.yaml": "  - execute: SELECT shout($1)\n    params: ['{pin}']\n",
    "p6-expect.yaml": "  - query: SELECT $1 AS v\n    params: ['{pin}']\n    row: '{v}'\n    expect:\n      rows: [{v: other}]\n",
}
ONCE = "p7-once.yaml"
ONCE_PLAN = f"sqlplan: 1\nname: once\nonce: true\n{VARS}steps:\n" + PLANS["p3-cast.yaml"]

# the middle of a secret: the characters that break quoting and escaping, and any Unicode
_HOSTILE = st.text(
    st.sampled_from([*"'\"\\\n\t;:{}$%&<>`#", "é", "€", "漢", "🙂", "\u200b"])
    | st.characters(exclude_categories=["Cs", "Cc"]),
    max_size=120,
)
# Each secret begins and ends with marks that sqlplan's own text never holds, so that any piece
# of it found in an output is a leak, not a coincidence.
SECRETS = _HOSTILE.map(lambda core: f"Kz{core}Q7")


def _leaks(secret: str, text: str) -> list[str]:
    """Pieces of the secret found in `text`, as written or as JSON, XML or the server quote
    it; and the first dozen characters, which the server's clipping would leave."""
    forms = {
        secret,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        escape(secret),
        secret.replace("'", "''"),
        secret[:12],
        json.dumps(secret[:12], ensure_ascii=False)[1:-1],
    }
    return sorted(f for f in forms if f and f in text)


def write_plans(cli: Cli) -> list[str]:
    names = []
    for name, steps in PLANS.items():
        cli.write(name, f"sqlplan: 1\nname: {name[:-5]}\n{VARS}steps:\n{steps}")
        names.append(name)
    cli.write(ONCE, ONCE_PLAN)
    return names


def search_every_output(
    cli: Cli, con: Any, url: str, names: list[str], secret: str, *, every: bool = True
) -> None:
    """Run the plans with `secret` through every channel and search each output for it.
    Not `every`: the runs' channels only (bench/secret_values.py: the long profile), without `show`,
    `--dry-run` and `rehearse` for each plan, which sqlplan renders itself."""
    env = {"DATABASE_URL": url, "SQLPLAN_TEST_PIN": secret}
    outputs: dict[str, str] = {}

    def keep(label: str, *args: str, codes: tuple[int, ...] = (0,)) -> Any:
        result = cli(*args, env=env)
        assert result.exit_code in codes, (label, result.exit_code, result.stderr)
        outputs[f"{label}: stdout"] = result.stdout
        outputs[f"{label}: stderr"] = result.stderr
        return result

    keep("run", "run", *names, ONCE, "--keep-going", codes=(1,))
    report = keep("json", "run", *names, "--keep-going", "--format", "json", codes=(1,))
    document = json.loads(report.stdout)  # still a valid document: nothing else altered
    assert {"version", "ok", "exit_code", "plans", "error"} <= set(document)
    assert document["exit_code"] == 1
    assert [p["status"] for p in document["plans"]] == [
        "ok", "ok", "failed", "failed", "failed", "failed",
    ]  # fmt: skip
    assert document["plans"][0]["output"] == ["asking ****", "got **** and 7"]
    junit, summary = cli.cwd / "junit.xml", cli.cwd / "summary.md"
    keep(
        "github", "run", *names, "--keep-going", "--format", "github",
        "--junit", str(junit), "--summary", str(summary), codes=(1,),
    )  # fmt: skip
    outputs["junit"] = junit.read_text()
    outputs["summary"] = summary.read_text()
    for name in names if every else names[2:3]:
        keep(f"show {name}", "show", name)
        keep(f"dry-run {name}", "run", name, "--dry-run")
        for fmt in ("text", "json", "markdown", "sarif"):
            keep(f"rehearse {name} {fmt}", "rehearse", name, "--format", fmt, codes=(0, 1))
    keep("status", "status", ONCE)
    keep("status json", "status", ONCE, "--format", "json")
    outputs["history"] = "\n".join(str(row) for row in con.run("SELECT error FROM sqlplan.history"))
    keep("usage", "run", names[0], "--var", f"pin{secret}", codes=(3,))
    leaks = {label: _leaks(secret, text) for label, text in outputs.items()}
    assert {k: v for k, v in leaks.items() if v} == {}, secret
    # what the server echoed is there, masked: the masking happened, nothing was dropped
    assert 'invalid input syntax for type integer: "****"' in outputs["run: stderr"]
    assert "refused ****" in outputs["run: stderr"]


def test_a_secret_is_in_no_output(cli: Cli, database: Database, con: Any) -> None:
    con.run(SETUP)
    names = write_plans(cli)
    checked: list[int] = []

    @_FAST
    @given(secret=SECRETS)
    @example(secret="Kz000000000=Q7")  # '=' in it: `--var pin<secret>` named a var with a piece
    def check(secret: str) -> None:
        search_every_output(cli, con, database.url, names, secret)
        checked.append(len(secret))

    check()
    assert checked


@pytest.mark.parametrize("secret", ["x", "1", "ab", "é€漢"[:3]])
def test_a_secret_too_short_to_mask_is_refused(cli: Cli, secret: str, tmp_path: Path) -> None:
    write_plans(cli)
    result = cli(
        "run", "p3-cast.yaml",
        env={"DATABASE_URL": "postgresql://u@127.0.0.1:9/d", "SQLPLAN_TEST_PIN": secret},
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    assert (
        "var 'pin' is secret, but its value (or an item of it) is shorter than 4" in result.stderr
    )


def test_json_keys_and_numbers_stay_exact_with_a_secret_that_is_in_them(
    cli: Cli, database: Database
) -> None:
    """A secret that sqlplan's own words hold ("exit", "step", "0000") masks only what the
    server says; the report's keys, kinds and numbers are as without it."""
    cli.write(
        "plan.yaml",
        f"sqlplan: 1\nname: p\n{VARS}steps:\n  - execute: SELECT $1::int\n    params: ['{{pin}}']\n",
    )
    plain = cli("run", "plan.yaml", "--format", "json", env={"DATABASE_URL": database.url, "SQLPLAN_TEST_PIN": "exit"})  # fmt: skip
    document = json.loads(plain.stdout)
    assert "exit_code" in document
    assert document["plans"][0]["steps"][0]["kind"] == "execute"
    message = document["plans"][0]["error"]["message"]
    assert message.endswith('invalid input syntax for type integer: "****"'), message
