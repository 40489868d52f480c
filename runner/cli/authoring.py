"""`sqlplan schema` and `new`: what writing a plan starts from."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import ExitCode, SqlPlanError
from .app import main
from .common import (
    fail,
    notify,
    teach,
)


@main.command()
@teach(
    [
        "sqlplan schema > plan.schema.json",
    ],
    [
        (0, "printed"),
    ],
)
def schema() -> None:
    """Print the plan format's JSON Schema (the file editors and CI can validate plans with)."""
    from ..plan.schema import schema_text

    click.echo(schema_text(), nl=False)


@main.command()
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    default="plans",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to write the plan.",
)
@click.option(
    "--once",
    is_flag=True,
    help="A plan that runs once per database (once: true), its file named with the time (YYYYMMDDHHMMSS_NAME.yaml) so that a directory runs in the order plans were made.",
)
@teach(
    [
        "sqlplan new load-customers",
        "sqlplan new add-email-index --once --dir migrations",
    ],
    [
        (0, "written; its path is printed"),
        (2, "NAME is not a name, or the file exists"),
    ],
)
def new(name: str, directory: str, once: bool) -> None:
    """Write a commented plan skeleton to DIR/NAME.yaml, ready to edit, check and run.

    Its first line points editors at the plan format's JSON Schema: schemas/plan.schema.json
    when the project has one above DIR, else DIR/plan.schema.json, written once (sqlplan
    schema prints it again after an upgrade).
    """
    from ..plan.skeleton import write_skeleton

    try:
        written = write_skeleton(name, Path(directory), once=once)
    except SqlPlanError as e:
        fail(e, ExitCode.USAGE)
    if written.schema is not None:
        notify(f"wrote {written.schema}, for editors")
    click.echo(str(written.path))
