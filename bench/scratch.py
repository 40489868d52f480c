"""A scratch PostgreSQL for a benchmark: the embedded server in a temporary directory, a fresh
database on it, and everything removed afterwards."""

from __future__ import annotations

import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import Server  # noqa: E402

from runner.connect.connection import connect  # noqa: E402
from runner.connect.embedded import EmbeddedServer  # noqa: E402
from runner.connect.target import Target, with_database  # noqa: E402


@dataclass(frozen=True)
class Scratch:
    work: Path  # the temporary directory: the server's state under state/
    server: Server  # as the tests' fixtures give it (for their Cli)
    database: Target  # the fresh database


@contextmanager
def scratch(prefix: str) -> Iterator[Scratch]:
    work = Path(tempfile.mkdtemp(prefix=f"sqlplan-{prefix}-"))
    work.chmod(0o755)  # the server's user must reach it when run as root
    embedded = EmbeddedServer(work / "state")
    try:
        target = embedded.ensure_running()
        name = f"{prefix[0]}_{uuid.uuid4().hex[:12]}"
        admin = connect(target)
        try:
            admin.run(f"CREATE DATABASE {name}")
        finally:
            admin.close()
        yield Scratch(work, Server(work / "state", embedded, target), with_database(target, name))
    finally:
        embedded.destroy()
        shutil.rmtree(work, ignore_errors=True)
