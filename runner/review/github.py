"""One pull-request comment that updates itself: find the comment that carries the marker and
edit it, or add it once; through GitHub's REST API, with the token GitHub Actions provides."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, ConnectError
from .comment import LIMIT, MARKER

_TIMEOUT = 30.0  # seconds for one request: a silent API does not hang a workflow
_ATTEMPTS = 3  # a 502, 503 or a timeout is tried again, after 1 s and then 2 s
_PAGES = 50  # comments are read 100 to a page: 5,000 comments at most


@dataclass(frozen=True)
class Target:
    api: str  # https://api.github.com, or a GitHub Enterprise server's /api/v3
    repository: str  # owner/name
    number: int  # the pull request's (an issue's) number
    token: str


@dataclass(frozen=True)
class Posted:
    action: str  # "created", "updated", "unchanged" or "not added" (update_only)
    url: str
    cut: bool  # the body was cut to GitHub's limit


def target(
    environ: Mapping[str, str], repository: str | None = None, number: int | None = None
) -> Target:
    """Where to comment: the options, else what GitHub Actions sets (GITHUB_REPOSITORY, the
    event payload at GITHUB_EVENT_PATH, GITHUB_API_URL, GITHUB_TOKEN or GH_TOKEN)."""
    token = environ.get("GITHUB_TOKEN") or environ.get("GH_TOKEN")
    if not token:
        raise ConfigError("no GitHub token: set GITHUB_TOKEN (in a workflow: ${{ github.token }})")
    repository = repository or environ.get("GITHUB_REPOSITORY")
    if not repository or not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ConfigError("no repository: pass --repo owner/name or set GITHUB_REPOSITORY")
    if number is None:
        number = _event_number(environ.get("GITHUB_EVENT_PATH"))
    api = (environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
    return Target(api, repository, number, token)


def _event_number(path: str | None) -> int:
    if not path:
        raise ConfigError("no pull request: pass --pr N, or run in a pull_request workflow")
    try:
        with open(path, encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read the event payload {path}: {e}") from None
    for key in ("pull_request", "issue"):
        number = (event.get(key) or {}).get("number") if isinstance(event, dict) else None
        if isinstance(number, int):
            return number
    raise ConfigError(
        f"the event payload {path} names no pull request: pass --pr N, or run on pull_request"
    )


def post(body: str, where: Target, marker: str = MARKER, *, update_only: bool = False) -> Posted:
    """Edit the comment that carries `marker`, or add one (unless `update_only`); nothing when
    it already says this."""
    if marker not in body:
        body = f"{marker}\n{body}"
    body, cut = _fit(body)
    base = f"{where.api}/repos/{where.repository}"
    existing = _find(f"{base}/issues/{where.number}/comments?per_page=100", where, marker)
    if existing is None and update_only:
        return Posted("not added", "", cut)
    if existing is None:
        made = _request("POST", f"{base}/issues/{where.number}/comments", where, {"body": body})
        return Posted("created", str(made.get("html_url", "")), cut)
    if existing.get("body") == body:
        return Posted("unchanged", str(existing.get("html_url", "")), cut)
    edited = _request("PATCH", f"{base}/issues/comments/{existing['id']}", where, {"body": body})
    return Posted("updated", str(edited.get("html_url", "")), cut)


def _fit(body: str) -> tuple[str, bool]:
    if len(body) <= LIMIT:
        return body, False
    note = "\n\n(cut here: GitHub takes at most 65,536 characters in a comment)\n"
    kept = body[: LIMIT - len(note)]
    kept = kept[: kept.rfind("\n")] if "\n" in kept else kept
    return kept + note, True


def _find(url: str | None, where: Target, marker: str) -> dict[str, Any] | None:
    for _ in range(_PAGES):
        if url is None:
            return None
        page, url = _get(url, where)
        for item in page:
            if isinstance(item, dict) and marker in str(item.get("body") or ""):
                return item
    return None


def _get(url: str, where: Target) -> tuple[list[Any], str | None]:
    response, headers = _send("GET", url, where, None)
    found = re.search(r'<([^>]+)>;\s*rel="next"', headers.get("Link") or "")
    return (response if isinstance(response, list) else []), (found.group(1) if found else None)


def _request(method: str, url: str, where: Target, payload: dict[str, str]) -> dict[str, Any]:
    response, _ = _send(method, url, where, payload)
    return response if isinstance(response, dict) else {}


def _send(
    method: str, url: str, where: Target, payload: dict[str, str] | None
) -> tuple[Any, Mapping[str, str]]:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/vnd.github+json")
    request.add_header("Authorization", f"Bearer {where.token}")
    request.add_header("X-GitHub-Api-Version", "2022-11-28")
    request.add_header("User-Agent", "sqlplan")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for attempt in range(_ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:
                raw = response.read()
                headers = response.headers
            try:
                return (json.loads(raw.decode("utf-8")) if raw else None), headers
            except (UnicodeDecodeError, ValueError):
                raise ConnectError(
                    f"GitHub answered {method} {_path(url)} with something that is not JSON "
                    f"({len(raw)} bytes): is GITHUB_API_URL the API's address?"
                ) from None
        except urllib.error.HTTPError as e:
            if e.code in (502, 503, 504) and attempt + 1 < _ATTEMPTS:
                time.sleep(2**attempt)
                continue
            raise ConnectError(f"GitHub refused {method} {_path(url)}: {_said(e)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            if attempt + 1 < _ATTEMPTS:
                time.sleep(2**attempt)
                continue
            reason = getattr(e, "reason", e)
            raise ConnectError(f"cannot reach GitHub at {_path(url)}: {reason}") from None
    raise AssertionError("unreachable")


def _said(error: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(error.read().decode("utf-8")).get("message", "")
    except (ValueError, AttributeError, OSError):
        message = ""
    return f"HTTP {error.code}" + (f": {message}" if message else "")


def _path(url: str) -> str:
    """The URL as it may be printed: without its query."""
    return url.split("?", 1)[0]
