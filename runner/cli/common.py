"""What the commands share: options, help with examples and exit codes, how a message, a
failure and an exit are written."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..errors import ExitCode, SqlPlanError

if TYPE_CHECKING:
    from ..connect.target import Target

F = TypeVar("F", bound=Callable[..., Any])

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where the embedded PostgreSQL keeps its state [default: $SQLPLAN_DATA_DIR, else ./.sqlplan].",
)
pg_version_option = click.option(
    "--pg-version",
    type=click.IntRange(12, 18),
    help="The PostgreSQL major version the lock and rewrite rules assume [default: the plan's postgres:, else 18].",
)
database_url_option = click.option(
    "--database-url",
    metavar="URL",
    help="PostgreSQL URL; overrides DATABASE_URL and .env; without any, the embedded server. [env: DATABASE_URL]",
)
var_option = click.option(
    "--var",
    "var",
    metavar="NAME=VALUE",
    multiple=True,
    help="A value for one of the plan's vars (repeatable); it travels as a bind parameter, never in the SQL.",
)
vars_option = click.option(
    "--vars",
    "vars_files",
    metavar="FILE",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A YAML file of var values (repeatable); --var wins over it, and it over the environment.",
)
connect_retries_option = click.option(
    "--connect-retries",
    envvar="SQLPLAN_CONNECT_RETRIES",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Retries of a connection that fails transiently (refused, reset, timed out, server starting). [env: SQLPLAN_CONNECT_RETRIES]",
)
connect_timeout_option = click.option(
    "--connect-timeout",
    envvar="SQLPLAN_CONNECT_TIMEOUT",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds each connection attempt may take [default: the URL's connect_timeout, else 15]. [env: SQLPLAN_CONNECT_TIMEOUT]",
)


def teach(examples: list[str], codes: list[tuple[int, str]]) -> Callable[[F], F]:
    """End a command's help with examples and the exit codes it can return (click keeps a
    paragraph that starts with \\b as written)."""

    def add(function: F) -> F:
        lines = ["", "Examples:", "", "\b", *(f"  {e}" for e in examples), "", "Exit codes:", ""]
        lines += ["\b", *(f"  {code:<3} {meaning}" for code, meaning in codes)]
        doc = _cleandoc(function.__doc__ or "")
        function.__doc__ = doc + "\n" + "\n".join(lines)
        return function

    return add


def _cleandoc(text: str) -> str:
    """inspect.cleandoc, without importing inspect (6 ms at every start)."""
    lines = text.expandtabs().splitlines()
    indents = [len(line) - len(line.lstrip()) for line in lines[1:] if line.strip()]
    margin = min(indents, default=0)
    return "\n".join(
        [lines[0].strip() if lines else "", *(line[margin:] for line in lines[1:])]
    ).strip("\n")


def notify(text: str) -> None:
    click.echo(f"sqlplan: {text}", err=True)


def exit_with(code: ExitCode) -> NoReturn:
    sys.stdout.flush()
    sys.exit(int(code))


def failure_text(error: SqlPlanError) -> str:
    from ..report import failure_text as text

    sys.stdout.flush()
    return text(error)


def fail(error: SqlPlanError, code: ExitCode | None = None) -> NoReturn:
    click.echo(failure_text(error), err=True)
    exit_with(code if code is not None else error.exit_code)


def signal_name(signum: int) -> str:
    return "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"


def signal_code(signum: int) -> ExitCode:
    return ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED


def stdout_to_devnull() -> None:
    """Standard output's reader is gone: what is still written goes nowhere, without errors."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def plan_files(paths: Sequence[str]) -> list[str]:
    """The plans to run or check (api.plan_files); a usage error when there are none."""
    from ..api import plan_files as files

    try:
        return files(paths)
    except SqlPlanError as e:
        fail(e)


def state_dir(data_dir: str | None) -> Path:
    from ..connect.where import state_dir as where

    return where(data_dir)


def database_target(database_url: str | None, data_dir: str | None) -> Target:
    """The URL from the flag, the environment or .env; else the embedded server, started."""
    from ..connect.where import open_target

    return open_target(database_url, data_dir, notify=notify)
