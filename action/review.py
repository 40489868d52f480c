#!/usr/bin/env python3
"""The Action's review step: check the plans the pull request changed, rehearse them on the
database given (in run order, each optionally applied before the next), then write the comment,
the job's summary, SARIF and the step's outputs, and post or update the one comment.

Everything comes from the environment GitHub sets (GITHUB_EVENT_PATH, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY, RUNNER_TEMP, ...) and the Action's inputs as SQLPLAN_* variables, never
from text pasted into the script. The exit code is the check's (1 on errors, or with strict on
warnings), or 1 when a rehearsal failed."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit


def main() -> int:
    env = os.environ
    work = Path(env.get("RUNNER_TEMP") or "/tmp") / "sqlplan-review"
    work.mkdir(parents=True, exist_ok=True)
    event = _event(env.get("GITHUB_EVENT_PATH"))
    paths = _paths(env.get("SQLPLAN_PATHS", "")) or ["plans"]
    url = env.get("SQLPLAN_REHEARSE_URL", "")
    _mask(url)
    base = env.get("SQLPLAN_BASE") or _base(event)
    if base and not _known(base):
        _command("error", f"the base {base} is not in this checkout: check it out with "
                 "`fetch-depth: 0` (actions/checkout), or fetch the base branch first")  # fmt: skip
        return 2
    chosen = [*paths, *(["--changed-since", base] if base else [])]
    chosen += ["--strict"] if _true(env.get("SQLPLAN_STRICT")) else []
    stats = env.get("SQLPLAN_STATS", "")
    if not stats and url:  # the sizes of the database the plans are rehearsed on
        read = _sqlplan("stats", url=url)
        if read.returncode == 0:
            (work / "stats.json").write_text(read.stdout, encoding="utf-8")
            stats = str(work / "stats.json")
        else:
            _command("warning", f"no table sizes to grade by: {_last(read.stderr)}")
    chosen += ["--stats", stats] if stats else []

    checked = _sqlplan("check", *chosen, "--format", "json")
    if checked.returncode not in (0, 1):
        sys.stderr.write(checked.stderr)
        return checked.returncode
    report = json.loads(checked.stdout)
    changed = report.get("changed_since", {}).get("changed", report["files"])

    rehearsals, failed = _rehearse(changed, url, _true(env.get("SQLPLAN_APPLY_BETWEEN")), work)

    comment = work / "comment.md"
    extra = [a for r in rehearsals for a in ("--rehearsal", str(r))]
    made = _sqlplan("check", *chosen, "--format", "markdown", *extra)
    comment.write_text(made.stdout, encoding="utf-8")
    sarif = rehearsal_sarif = ""
    if _true(env.get("SQLPLAN_SARIF")):
        scanned = _sqlplan("check", *chosen, "--format", "sarif")
        (work / "sqlplan.sarif").write_text(scanned.stdout, encoding="utf-8")
        sarif = str(work / "sqlplan.sarif")
        if rehearsals:
            rehearsal_sarif = _merge([r.with_suffix(".sarif") for r in rehearsals], work)

    _append(env.get("GITHUB_STEP_SUMMARY"), made.stdout)
    verdict = made.stdout.splitlines()[1].removeprefix("### sqlplan: ").replace("**", "")
    _outputs(
        env.get("GITHUB_OUTPUT"),
        verdict=verdict,
        errors=str(report["errors"]),
        warnings=str(report["warnings"]),
        plans=str(len(report["files"])),
        **{
            "comment-file": str(comment),
            "sarif-file": sarif,
            "rehearsal-sarif-file": rehearsal_sarif,
        },
    )
    if _true(env.get("SQLPLAN_COMMENT", "true")) and _pull_request(event):
        _post(comment, update_only=not report["files"])
    print(f"sqlplan: {verdict}")
    return 1 if failed or checked.returncode == 1 else 0


def _paths(text: str) -> list[str]:
    """One path a line; on one line, separated by spaces (quote a path that has some)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines if len(lines) > 1 else shlex.split(text)


def _rehearse(files: list[str], url: str, apply: bool, work: Path) -> tuple[list[Path], bool]:
    """Each changed plan rehearsed on `url` in run order; with `apply`, run before the next."""
    done: list[Path] = []
    failed = False
    if not url:
        return done, failed
    for index, file in enumerate(files):
        scanned = work / f"rehearsal-{index + 1}.sarif"
        result = _sqlplan("rehearse", file, "--format", "json", "--sarif", str(scanned), url=url)
        if result.returncode in (4, 5):  # configuration, connection: the others would fail too
            _command("error", f"cannot rehearse on the database given: {_last(result.stderr)}")
            return done, True
        if result.returncode == 3:
            continue  # an invalid plan: the check reports it
        try:
            json.loads(result.stdout)
        except ValueError:
            _command("error", f"rehearsal of {file}: {_last(result.stderr)}")
            failed = True
            continue
        path = work / f"rehearsal-{index + 1}.json"
        path.write_text(result.stdout, encoding="utf-8")
        done.append(path)
        failed = failed or result.returncode != 0
        if apply and index + 1 < len(files):
            ran = _sqlplan("run", file, url=url)
            if ran.returncode != 0:
                _command("error", f"applying {file} before the next rehearsal failed: "
                         f"{_last(ran.stderr)}; the plans after it were not rehearsed")  # fmt: skip
                return done, True
    return done, failed


def _merge(files: list[Path], work: Path) -> str:
    """The rehearsals' SARIF as one run (code scanning takes one run per tool and category)."""
    logs = [json.loads(f.read_text(encoding="utf-8")) for f in files if f.is_file()]
    if not logs:
        return ""
    merged = logs[0]
    run = merged["runs"][0]
    for log in logs[1:]:
        run["results"] += log["runs"][0]["results"]
    path = work / "rehearsal.sarif"
    path.write_text(json.dumps(merged, indent=2), encoding="utf-8")
    return str(path)


def _post(comment: Path, *, update_only: bool) -> None:
    args = ["comment", str(comment)] + (["--update-only"] if update_only else [])
    posted = _sqlplan(*args)
    sys.stderr.write(posted.stderr)
    if posted.returncode != 0:
        # A pull request from a fork gets a read-only token: the review stands without it.
        _command("warning", f"the review comment was not posted: {_last(posted.stderr)}")


def _sqlplan(*args: str, url: str = "") -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("SQLPLAN_REHEARSE_URL", None)
    action, ref = env.get("GITHUB_ACTION_REPOSITORY"), env.get("GITHUB_ACTION_REF")
    if action and ref and not env.get("SQLPLAN_DOCS_URL"):  # the docs of the sqlplan that runs
        server = env.get("GITHUB_SERVER_URL") or "https://github.com"
        env["SQLPLAN_DOCS_URL"] = f"{server}/{action}/blob/{ref}/docs/"
    if url:
        env["DATABASE_URL"] = url  # in the environment, never on a command line
    return subprocess.run(["sqlplan", *args], env=env, capture_output=True, text=True, check=False)


def _event(path: str | None) -> dict[str, Any]:
    if not path or not Path(path).is_file():
        return {}
    event = json.loads(Path(path).read_text(encoding="utf-8"))
    return event if isinstance(event, dict) else {}


def _base(event: dict[str, Any]) -> str:
    """The pull request's base commit, or on a push the commit before it ('' for none)."""
    pull = event.get("pull_request") or {}
    sha = (pull.get("base") or {}).get("sha") or event.get("before") or ""
    return "" if set(sha) <= {"0"} else str(sha)


def _pull_request(event: dict[str, Any]) -> bool:
    return bool(event.get("pull_request") or (event.get("issue") or {}).get("pull_request"))


def _known(ref: str) -> bool:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return found.returncode == 0


def _mask(url: str) -> None:
    """Ask GitHub to hide the URL and its password in the log, were anything to print them."""
    if not url:
        return
    print(f"::add-mask::{url}")
    password = urlsplit(url).password
    if password:
        print(f"::add-mask::{unquote(password)}")


def _outputs(path: str | None, **values: str) -> None:
    lines = []
    for name, value in values.items():
        delimiter = f"sqlplan_{os.urandom(8).hex()}"
        lines += [f"{name}<<{delimiter}", value, delimiter]
    _append(path, "\n".join(lines) + "\n")


def _append(path: str | None, text: str) -> None:
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)


def _command(kind: str, message: str) -> None:
    escaped = message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    print(f"::{kind}::{escaped}")


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


if __name__ == "__main__":
    sys.exit(main())
