"""`sqlplan new`: a commented plan skeleton, ready to edit, check and run, and the plan
format's JSON Schema beside it for editors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..errors import SqlPlanError
from .schema import schema_text

_NEW_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_NEW_NAME_MAX = 200  # characters: with the stamp and .yaml, within a file name's 255 bytes

SKELETON = """\
# yaml-language-server: $schema={schema}
# {name}: say here what this plan does, for the people who review it.
# Check it with `sqlplan check {path}`, see what it will send with `sqlplan show {path}`,
# run it with `sqlplan run {path}`.
sqlplan: 1
name: {name}
description: What this plan does, and why.
{once}# vars:                          # values given when it runs: --var region=eu
#   region: {{type: text, default: eu}}

steps:
  # batch: several statements, no parameters
  - name: Create the table
    batch: |
      CREATE TABLE IF NOT EXISTS example_items (
        id serial PRIMARY KEY,
        title text NOT NULL UNIQUE
      );

  # execute: one statement; values go as $1..$n in params, never into the SQL
  - name: Add an item
    execute: INSERT INTO example_items (title) VALUES ($1) ON CONFLICT (title) DO NOTHING
    params: ["First item"]
    after: "{{count}} item added."
    # expect: {{count: 1}}            # what must be true before it commits

  # query: each row printed through a template
  - name: List the items
    query: SELECT id, title FROM example_items ORDER BY id
    row: "{{id}}: {{title}}"
"""


@dataclass(frozen=True)
class Written:
    path: Path  # the plan
    schema: Path | None  # the schema file, when it was written too


def write_skeleton(name: str, directory: Path, *, once: bool) -> Written:
    """Write DIR/NAME.yaml (DIR/YYYYMMDDHHMMSS_NAME.yaml for a `once` plan, one second after
    the latest in DIR if need be). Its first line points editors at the plan format's JSON
    Schema: schemas/plan.schema.json when the project has one above DIR, else
    DIR/plan.schema.json, written once. A bad NAME or an existing file is a SqlPlanError."""
    if len(name) > _NEW_NAME_MAX:
        raise SqlPlanError(
            f"a plan name of {len(name)} characters is too long for a file name: "
            f"{_NEW_NAME_MAX} at most"
        )
    if not re.fullmatch(_NEW_NAME, name):
        raise SqlPlanError(
            f"{name!r} is not a plan name: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit"
        )
    folder = directory
    stem = name
    if once:
        # Migrations run in name order, so each sorts after every one written before it,
        # also within the same second: one second later than the latest, if need be.
        now = int(f"{datetime.now(timezone.utc):%Y%m%d%H%M%S}")
        taken = [
            int(p.name[:14])
            for p in (folder.glob("[0-9]*_*.y*ml") if folder.is_dir() else ())
            if p.name[:14].isdigit() and p.name[14:15] == "_"
        ]
        stamp = max([now, *(t + 1 for t in taken)])
        stem = f"{_next_second(stamp)}_{name}"
    path = folder / f"{stem}.yaml"
    if path.exists():
        raise SqlPlanError(f"{path} already exists")
    folder.mkdir(parents=True, exist_ok=True)
    schema = _schema_for(folder)
    schema_written = None
    if schema is None:
        schema_written = folder / "plan.schema.json"
        schema_written.write_text(schema_text())
        schema = "plan.schema.json"
    text = SKELETON.format(
        schema=schema,
        name=name,
        path=path,
        once="once: true                     # runs once per database: see sqlplan status\n"
        if once
        else "# once: true                   # a migration: run once per database\n",
    )
    with open(path, "x", encoding="utf-8") as file:
        file.write(text)
    return Written(path, schema_written)


def _next_second(stamp: int) -> str:
    """A YYYYMMDDHHMMSS stamp that may have run one second past its minute: a valid time."""
    text = str(stamp)
    if int(text[12:14]) < 60:
        return text
    base = datetime.strptime(text[:12], "%Y%m%d%H%M")
    return f"{base + timedelta(minutes=1):%Y%m%d%H%M}00"


def _schema_for(folder: Path) -> str | None:
    """The plan format's schema as a path relative to `folder`: DIR/plan.schema.json, or a
    schemas/plan.schema.json in DIR or above it (inside the current directory)."""
    if (folder / "plan.schema.json").is_file():
        return "plan.schema.json"
    here = folder.resolve()
    top = Path.cwd().resolve()
    for depth, parent in enumerate([here, *here.parents]):
        if (parent / "schemas" / "plan.schema.json").is_file():
            return "../" * depth + "schemas/plan.schema.json"
        if parent == top:
            break
    return None
