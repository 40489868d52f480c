"""`sqlplan db`: see and control the embedded PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import ExitCode, SqlPlanError
from .app import main
from .common import (
    data_dir_option,
    database_target,
    database_url_option,
    exit_with,
    fail,
    notify,
    state_dir,
    teach,
)


@main.group()
def db() -> None:
    """See and control the embedded PostgreSQL (used when no DATABASE_URL is set)."""


@db.command()
@data_dir_option
@teach(
    [
        "sqlplan db status",
        "sqlplan db status --data-dir /tmp/project/.sqlplan",
    ],
    [
        (0, "the server runs"),
        (3, "it is stopped (as pg_ctl status says)"),
        (4, "it was never created: no data directory (as pg_ctl status says)"),
    ],
)
def status(data_dir: str | None) -> None:
    """Show whether the embedded server runs, and where its data and socket are."""
    from ..connect.embedded import EmbeddedServer

    info = EmbeddedServer(state_dir(data_dir)).status()
    if info.running:
        click.echo(f"running (pid {info.pid})")
    else:
        click.echo(
            "stopped" if info.initialised else "not initialised (it is created on first use)"
        )
    click.echo(f"data:   {info.data_dir}")
    if info.socket_dir:
        click.echo(f"socket: {info.socket_dir}")
    click.echo(f"log:    {info.log}")
    _note_configured_url()
    # pg_ctl status's codes: 0 running, 3 not running, 4 no data directory
    exit_with(
        ExitCode.OK
        if info.running
        else ExitCode.INVALID_PLAN
        if info.initialised
        else ExitCode.CONFIG
    )


@db.command()
@data_dir_option
@teach(
    [
        "sqlplan db start",
        'psql "$(sqlplan db start)"',
    ],
    [
        (0, "it runs; its URL is printed"),
        (5, "it could not start (the error says why)"),
    ],
)
def start(data_dir: str | None) -> None:
    """Start the embedded server (initialising it on first use) and print its URL."""
    from ..connect.embedded import EmbeddedServer

    try:
        target = EmbeddedServer(state_dir(data_dir)).ensure_running(notify)
    except SqlPlanError as e:
        fail(e)
    click.echo(target.url())


@db.command()
@data_dir_option
@teach(
    [
        "sqlplan db stop",
    ],
    [
        (0, "stopped, or was not running"),
        (5, "it could not be stopped"),
    ],
)
def stop(data_dir: str | None) -> None:
    """Stop the embedded server; its data stays for the next run."""
    from ..connect.embedded import EmbeddedServer

    try:
        stopped = EmbeddedServer(state_dir(data_dir)).stop()
    except SqlPlanError as e:
        fail(e)
    click.echo("stopped" if stopped else "not running")


@db.command()
@data_dir_option
@database_url_option
@teach(
    [
        "sqlplan db url",
        'psql "$(sqlplan db url)"',
    ],
    [
        (0, "printed"),
        (4, "configuration error (a malformed URL)"),
        (5, "the embedded server could not start"),
    ],
)
def url(data_dir: str | None, database_url: str | None) -> None:
    """Print the URL `sqlplan run` connects to, password masked.

    That is --database-url, DATABASE_URL or .env's DATABASE_URL when one is set; otherwise the
    embedded server's, which is started if it is not running (psql "$(sqlplan db url)" works).
    """
    try:
        target = database_target(database_url, data_dir)
    except SqlPlanError as e:
        fail(e)
    click.echo(target.url())


@db.command()
@data_dir_option
@click.confirmation_option(prompt="Delete the embedded database and all its data?")
@teach(
    [
        "sqlplan db destroy",
        "sqlplan db destroy --yes",
    ],
    [
        (0, "deleted, or there was nothing"),
        (1, "not confirmed"),
        (5, "it could not be stopped or deleted"),
    ],
)
def destroy(data_dir: str | None) -> None:
    """Stop the embedded server and delete its data."""
    from ..connect.embedded import EmbeddedServer

    try:
        existed = EmbeddedServer(state_dir(data_dir)).destroy()
    except SqlPlanError as e:
        fail(e)
    click.echo("deleted" if existed else "nothing to delete")


def _note_configured_url() -> None:
    from ..connect.target import resolve_target

    try:
        target = resolve_target(None, os.environ, Path.cwd())
    except SqlPlanError:
        return
    if target is not None:
        click.echo(
            f"note: {target.source} is set, so `sqlplan run` uses {target.url()}, not this server"
        )
