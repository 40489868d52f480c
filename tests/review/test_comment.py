"""The pull-request comment: `check --format markdown` parsed as GitHub's Markdown (CommonMark
with tables) says every finding as written, folds and fits under GitHub's limit; `sqlplan
comment` finds its comment among a pull request's and edits it, tested against recorded REST
responses at the HTTP boundary."""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import ROOT, Cli, Database
from github_api import RECORDED, Reply, comment_made, recorded, serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from runner.cli import main
from runner.review.comment import LIMIT, MARKER

PLANS = ROOT / "tests" / "plans"
TOKEN = "ghs_test_token_that_must_never_be_printed"


def sqlplan(*args: str, cwd: Path, env: dict[str, str] | None = None, input: str = "") -> Any:
    import os

    previous = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(
            main, list(args), env=env or {}, input=input, catch_exceptions=False
        )
    finally:
        os.chdir(previous)


class _Html(HTMLParser):
    """The rendered comment: its text, its <details> nesting and its tables' shapes."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.depth = 0
        self.details = 0
        self.summaries = 0
        self.rows: list[int] = []  # cells per table row
        self.tables: list[list[int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "details":
            self.depth += 1
            self.details += 1
        elif tag == "summary":
            self.summaries += 1
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1
            self.text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "details":
            self.depth -= 1
            assert self.depth >= 0

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parsed(markdown: str) -> _Html:
    rendered = MarkdownIt("commonmark").enable("table").render(markdown)
    parser = _Html()
    parser.feed(rendered)
    assert parser.depth == 0
    assert parser.details == parser.summaries
    for table in parser.tables:
        assert len(set(table)) == 1, table  # every row as wide as its header
    return parser


def _text(parser: _Html) -> str:
    return " ".join(html.unescape("".join(parser.text)).split())


def test_the_comment_says_every_finding_as_written() -> None:
    result = sqlplan(
        "check", "--format", "markdown", "invalid", "review", "pooler", "valid", cwd=PLANS
    )
    plain = sqlplan("check", "--format", "json", "invalid", "review", "pooler", "valid", cwd=PLANS)
    body = result.stdout
    assert body.splitlines()[0] == MARKER
    assert body.splitlines()[1].startswith("### sqlplan: **fails**: ")
    parser = _parsed(body)
    text = _text(parser)
    document = json.loads(plain.stdout)
    for diagnostic in document["diagnostics"]:
        shown = diagnostic["message"].split(" (if intended, add ")[0]
        if diagnostic["severity"] == "warning":
            shown = shown.split(": ", 1)[1]  # the step is the row's first cell
        assert " ".join(shown.split()) in text, diagnostic
    for file in document["files"]:
        assert file in text
    assert parser.details == len(document["files"])


NAMES = st.text(
    alphabet=st.sampled_from(list("ab|<>&`*_[]~!#\\ \"'")), min_size=1, max_size=12
).filter(lambda s: s.strip() and '"' not in s)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(NAMES, min_size=1, max_size=3, unique=True), step=NAMES)
def test_any_name_reads_as_written(tmp_path: Path, names: list[str], step: str) -> None:
    """Table names and step names full of Markdown's and HTML's characters come out as text."""
    quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
    plan = {
        "sqlplan": 1,
        "name": "odd",
        "steps": [{"name": step, "batch": f"DROP TABLE {quoted}"}],
    }
    (tmp_path / "odd.yaml").write_text(json.dumps(plan))
    body = sqlplan("check", "--format", "markdown", "odd.yaml", cwd=tmp_path).stdout
    text = _text(_parsed(body))
    assert " ".join(f"DROP TABLE {', '.join(names)} deletes".split()) in text
    assert " ".join(step.split()) in text


def test_a_long_report_folds_and_fits_under_the_limit(tmp_path: Path) -> None:
    steps = "".join(
        f"  - name: Drop table {n} of many\n    batch: DROP TABLE t{n}; CREATE INDEX i{n} ON u (a)\n"
        for n in range(60)
    )
    quiet = "sqlplan: 1\nname: quiet{n}\nsteps:\n  - batch: SELECT 1\n"
    for n in range(40):
        (tmp_path / f"loud{n:02}.yaml").write_text(f"sqlplan: 1\nname: loud{n}\nsteps:\n{steps}")
        (tmp_path / f"quiet{n:02}.yaml").write_text(quiet.format(n=n))
    result = sqlplan("check", "--format", "markdown", ".", cwd=tmp_path)
    body = result.stdout
    assert len(body) <= LIMIT
    parser = _parsed(body)
    text = _text(parser)
    cut = int(re.search(r"the details of (\d+) plans", text).group(1))  # type: ignore[union-attr]
    assert 40 <= cut < 80  # the quiet plans' details go first, then what does not fit
    assert parser.details == 80 - cut
    assert parser.tables[0] == [2] * 81  # every plan keeps its verdict
    assert text.count("120 warnings") == 40 + (80 - cut)  # the table, and the kept details


def test_the_rehearsal_times_join_their_steps(cli: Cli, database: Database) -> None:
    database.query("CREATE TABLE items (id int PRIMARY KEY, a int)")
    database.query("INSERT INTO items SELECT g, g FROM generate_series(1, 2000) g")
    cli.write(
        "plan.yaml",
        """\
sqlplan: 1
name: timed
steps:
  - name: Add and fill
    batch: |
      ALTER TABLE items ADD COLUMN b int;
      UPDATE items SET b = a;
  - name: Index
    batch: CREATE INDEX items_b ON items (b)
""",
    )
    rehearsed = cli("rehearse", "plan.yaml", "--database-url", database.url, "--format", "json")
    assert rehearsed.exit_code == 0, rehearsed.stderr
    (cli.cwd / "r.json").write_text(rehearsed.stdout)
    holds = json.loads(rehearsed.stdout)["holds"]
    body = cli("check", "plan.yaml", "--format", "markdown", "--rehearsal", "r.json").stdout
    parser = _parsed(body)
    text = _text(parser)
    assert "held in the rehearsal" in text
    # the analysis as the rehearsal resolved it: items has no partitions, so no "may" on them
    offline = cli("check", "plan.yaml", "--format", "markdown").stdout
    assert "may: SHARE on the partitions of items" in offline
    assert "may: SHARE on the partitions of items" not in body
    assert "SHARE on items, reads every row" in body
    for hold in holds:
        assert f"{hold['mode']} on {hold['relation']}: {hold['seconds'] * 1000:.1f} ms" in text
    assert any(h["mode"] == "ACCESS EXCLUSIVE" and h["first_step"] == 1 for h in holds)
    assert "rehearsed in" in body.splitlines()[5]  # the plan's row in the table of verdicts
    # graded by the table's size: the finding stays in its step's row, with its grade
    (cli.cwd / "stats.json").write_text(cli("stats", "--database-url", database.url).stdout)
    cli.write("sqlplan-review.yaml", "large: 1us\n")  # any size is large: an error
    graded = cli(
        "check", "plan.yaml", "--format", "markdown", "--rehearsal", "r.json",
        "--stats", "stats.json",
    ).stdout  # fmt: skip
    (row,) = [line for line in graded.splitlines() if line.startswith('| 2 "Index"')]
    assert "**`create-index`** " in row
    assert "[large: public.items: " in _text(_parsed(row))
    assert "Instead: `CREATE INDEX CONCURRENTLY`" in row
    assert not [line for line in graded.splitlines() if line.startswith("- line ")]
    assert graded.splitlines()[1].startswith("### sqlplan: **fails**: 1 error, ")
    other = json.loads(rehearsed.stdout) | {"plan": "elsewhere", "fingerprint": "0" * 64}
    (cli.cwd / "other.json").write_text(json.dumps(other))
    left = cli("check", "plan.yaml", "--format", "markdown", "--rehearsal", "other.json")
    assert "the rehearsal of plan 'elsewhere' matches no plan checked; left out" in left.stderr
    assert "held in the rehearsal" not in left.stdout
    bad = cli("check", "plan.yaml", "--format", "markdown", "--rehearsal", "plan.yaml")
    assert bad.exit_code == 2
    assert "--rehearsal plan.yaml" in bad.stderr


def _env(api: str, **extra: str) -> dict[str, str]:
    return {
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_API_URL": api,
        "GITHUB_EVENT_PATH": str(RECORDED / "pull_request_event.json"),
        **extra,
    }


def test_the_comment_is_edited_where_it_is(tmp_path: Path) -> None:
    pages = recorded("issue_comments.json")
    (tmp_path / "body.md").write_text(f"{MARKER}\n### sqlplan: **needs a look**\n")
    replies = [
        Reply(
            200,
            pages[0],
            {
                "Link": '<{api}/repositories/700100/issues/42/comments?per_page=100&page=2>; rel="next"'
            },
        ),
        Reply(
            200,
            pages[1],
            {
                "Link": '<{api}/repositories/700100/issues/42/comments?per_page=100&page=1>; rel="prev"'
            },
        ),
        Reply(200, comment_made("edited", 1003)),
    ]
    with serve(replies) as api:
        result = sqlplan("comment", "body.md", cwd=tmp_path, env=_env(api.url))
    assert result.exit_code == 0, result.output
    assert [(r.method, r.path) for r in api.requests] == [
        ("GET", "/repos/acme/shop/issues/42/comments?per_page=100"),
        ("GET", "/repositories/700100/issues/42/comments?per_page=100&page=2"),
        ("PATCH", "/repos/acme/shop/issues/comments/1003"),
    ]
    assert api.requests[2].body == {"body": (tmp_path / "body.md").read_text()}
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in api.requests)
    assert (
        "comment updated: https://github.com/acme/shop/pull/42#issuecomment-1003" in result.stderr
    )
    assert TOKEN not in result.output


def test_a_first_comment_is_added_and_an_unchanged_one_left(tmp_path: Path) -> None:
    pages = recorded("issue_comments.json")
    (tmp_path / "body.md").write_text("### sqlplan: **passes**: 1 plan, no findings\n")
    with serve([Reply(200, pages[0]), Reply(201, comment_made("new"))]) as api:
        added = sqlplan("comment", "body.md", cwd=tmp_path, env=_env(api.url))
    assert added.exit_code == 0, added.output
    assert [r.method for r in api.requests] == ["GET", "POST"]
    assert api.requests[1].path == "/repos/acme/shop/issues/42/comments"
    assert api.requests[1].body == {"body": f"{MARKER}\n" + (tmp_path / "body.md").read_text()}
    assert "comment created" in added.stderr
    with serve([Reply(200, pages[1]), Reply(200, comment_made("from stdin", 1003))]) as api:
        edited = sqlplan("comment", "-", cwd=tmp_path, env=_env(api.url), input="from stdin\n")
    assert edited.exit_code == 0, edited.output
    assert [r.method for r in api.requests] == ["GET", "PATCH"]
    assert api.requests[1].body == {"body": f"{MARKER}\nfrom stdin\n"}


def test_the_same_body_is_not_written_again(tmp_path: Path) -> None:
    pages = recorded("issue_comments.json")
    (tmp_path / "body.md").write_text(pages[1][0]["body"])
    with serve([Reply(200, pages[1])]) as api:
        result = sqlplan("comment", "body.md", cwd=tmp_path, env=_env(api.url))
    assert result.exit_code == 0
    assert [r.method for r in api.requests] == ["GET"]
    assert "comment unchanged" in result.stderr


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (Reply(401, {"message": "Bad credentials"}), "HTTP 401: Bad credentials"),
        (Reply(404, {"message": "Not Found"}), "HTTP 404: Not Found"),
        (Reply(403, {"message": "Resource not accessible by integration"}), "HTTP 403"),
    ],
)
def test_a_refusal_is_reported_with_exit_code_5(tmp_path: Path, reply: Reply, said: str) -> None:
    (tmp_path / "body.md").write_text("x\n")
    with serve([reply]) as api:
        result = sqlplan("comment", "body.md", cwd=tmp_path, env=_env(api.url))
    assert result.exit_code == 5
    assert said in result.stderr
    assert f"GET {api.url}/repos/acme/shop/issues/42/comments: " in result.stderr
    assert TOKEN not in result.output


def test_an_answer_that_is_not_json_is_reported(tmp_path: Path) -> None:
    (tmp_path / "body.md").write_text("x\n")
    with serve([Reply(200, None, {"X-Raw": "<html>"})]) as api:
        api.raw = b"<html>proxy login</html>"
        result = sqlplan("comment", "body.md", cwd=tmp_path, env=_env(api.url))
    assert result.exit_code == 5
    assert "with something that is not JSON" in result.stderr


def test_what_is_missing_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "body.md").write_text("x\n")
    no_token = sqlplan("comment", "body.md", cwd=tmp_path, env={"GITHUB_TOKEN": "", "GH_TOKEN": ""})
    assert no_token.exit_code == 4
    assert "no GitHub token" in no_token.stderr
    (tmp_path / "push.json").write_text(json.dumps({"ref": "refs/heads/main"}))
    push = sqlplan(
        "comment", "body.md", cwd=tmp_path,
        env=_env("http://127.0.0.1:9", GITHUB_EVENT_PATH=str(tmp_path / "push.json")),
    )  # fmt: skip
    assert push.exit_code == 4
    assert "names no pull request" in push.stderr


def test_a_body_that_is_not_text_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "body.md").write_bytes(b"caf\xe9\n")
    result = sqlplan("comment", "body.md", cwd=tmp_path, env=_env("http://127.0.0.1:9"))
    assert result.exit_code == 2
    assert "BODY is not UTF-8 text" in result.stderr


def test_a_body_over_the_limit_is_cut_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "body.md").write_text("line of a long report\n" * 4000)
    with serve([Reply(200, []), Reply(201, comment_made("cut"))]) as api:
        result = sqlplan("comment", "body.md", "--pr", "7", cwd=tmp_path, env=_env(api.url))
    assert result.exit_code == 0, result.output
    sent = api.requests[1].body["body"]
    assert len(sent) <= LIMIT
    assert sent.startswith(MARKER)
    assert sent.rstrip().endswith("(cut here: GitHub takes at most 65,536 characters in a comment)")
    assert api.requests[1].path == "/repos/acme/shop/issues/7/comments"
    assert "cut to GitHub's limit" in result.stderr
