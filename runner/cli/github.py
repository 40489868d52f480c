"""`sqlplan comment`: the pull request's one comment, posted or edited in place."""

from __future__ import annotations

from typing import Any

import click

from ..errors import SqlPlanError, UsageError
from .app import main
from .common import fail, notify, teach


@main.command()
@click.argument("body_file", metavar="BODY", type=click.File("r", encoding="utf-8"))
@click.option("--repo", help="owner/name [default: $GITHUB_REPOSITORY].")
@click.option(
    "--pr",
    "number",
    type=click.IntRange(min=1),
    help="The pull request's number [default: from the event payload at $GITHUB_EVENT_PATH].",
)
@click.option(
    "--update-only",
    is_flag=True,
    help="Edit the comment if there is one, but add none (for a run that has nothing to say).",
)
@teach(
    [
        "sqlplan comment comment.md",
        "sqlplan comment - --repo acme/shop --pr 42 < comment.md",
    ],
    [
        (0, "the comment was added, updated, or already said this"),
        (2, "usage error"),
        (4, "configuration error: no token, repository or pull request"),
        (5, "GitHub could not be reached, or refused"),
    ],
)
def comment(body_file: Any, repo: str | None, number: int | None, update_only: bool) -> None:
    """Post BODY (a file, or - for stdin) as the pull request's sqlplan comment: the comment
    that carries the hidden marker of `check --format markdown` is edited, or added once, so a
    pull request keeps one comment however many times its workflow runs. The token is
    $GITHUB_TOKEN (or $GH_TOKEN); the API is $GITHUB_API_URL [default: https://api.github.com].
    A body longer than GitHub's 65,536 characters is cut, and says so."""
    import os

    from ..review import github

    try:
        body = body_file.read()
    except UnicodeDecodeError as e:
        fail(UsageError(f"BODY is not UTF-8 text: {e.reason} at byte {e.start}"))
    try:
        posted = github.post(body, github.target(os.environ, repo, number), update_only=update_only)
    except SqlPlanError as e:
        fail(e)
    cut = " (cut to GitHub's limit)" if posted.cut else ""
    notify(f"comment {posted.action}{cut}" + (f": {posted.url}" if posted.url else ""))
