"""GitHub's REST API at the HTTP boundary, for tests: a local server that answers each request
with the next recorded response and keeps every request it was sent."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDED = Path(__file__).parent / "github"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str  # with its query
    headers: dict[str, str]
    body: Any


class Api:
    """Replies served in order; `requests` holds what sqlplan sent."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []
        self.url = ""
        self.raw: bytes | None = None  # a body to send as it is, instead of the replies' JSON

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        self.requests.append(
            Request(
                handler.command,
                handler.path,
                dict(handler.headers.items()),
                json.loads(raw) if raw else None,
            )
        )
        reply = self.replies.pop(0) if self.replies else Reply(500, {"message": "unexpected"})
        data = json.dumps(reply.body).encode() if reply.body is not None else b""
        if self.raw is not None:
            data = self.raw
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value.replace("{api}", self.url))
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def serve(replies: list[Reply]) -> Iterator[Api]:
    api = Api(replies)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.handle(self)

        do_POST = do_PATCH = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()


def recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def comment_made(body: str, number: int = 2001) -> dict[str, Any]:
    """GitHub's answer to a comment added or edited: the comment, as its API returns it."""
    return {
        "url": f"https://api.github.com/repos/acme/shop/issues/comments/{number}",
        "html_url": f"https://github.com/acme/shop/pull/42#issuecomment-{number}",
        "id": number,
        "user": {"login": "github-actions[bot]", "type": "Bot"},
        "body": body,
    }
