"""git for tests that build repositories: commits by a fixed author, failures as assertions."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_AUTHOR = {
    "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
}  # fmt: skip


def git(cwd: Path, *args: str) -> str:
    """`git ARGS` in `cwd`; its output, stripped."""
    done = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **_AUTHOR},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
