"""The `sqlplan` command group: what every command shares when it runs (secrets forgotten,
signals handled, a bug reported as one), and the console script's exit."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, NoReturn

import click

from .. import __version__, secrets
from ..errors import ExitCode, internal_error
from .common import exit_with, signal_code, signal_name, stdout_to_devnull


class _Commands(click.Group):
    """The command group; an exception no command expected is reported as a bug in sqlplan,
    with exit code 70, rather than as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from ..connect import early
        from ..run import interrupts

        secrets.use(())  # no secret until the command's vars are bound
        try:
            # Ctrl-C and SIGTERM: before `run` connects (initdb, connecting), they stop at once;
            # either way sqlplan says so and exits 130 or 143, never click's "Aborted!".
            with interrupts.install():
                try:
                    return super().invoke(ctx)
                finally:
                    early.discard()  # a connection opened early that nobody took
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `sqlplan show plan.yaml | head`: the reader has what it wanted. As a shell reports
            # a command SIGPIPE stopped, and without a word (`run` goes on instead: see
            # _reader_left).
            stdout_to_devnull()
            exit_with(ExitCode.READER_LEFT)
        except (interrupts.Abandoned, KeyboardInterrupt) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            sys.stdout.flush()
            click.echo(
                f"sqlplan: interrupted ({signal_name(signum)}); no step had started", err=True
            )
            exit_with(signal_code(signum))
        except Exception as e:
            sys.stdout.flush()
            click.echo(f"sqlplan: {internal_error(e)}", err=True)
            exit_with(ExitCode.INTERNAL)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sqlplan")
def main() -> None:
    """Run declarative SQL plans (YAML) against PostgreSQL.

    With no DATABASE_URL (environment, ./.env or --database-url) plans run on an embedded
    PostgreSQL kept in ./.sqlplan. Exit codes: 0 ok, 1 a step failed, 2 usage error,
    3 invalid plan, 4 configuration error, 5 cannot connect, 6 in doubt, 7 an expectation
    failed, 8 refused by the history, 9 a backfill to resume, 70 internal error, 130
    interrupted, 143 terminated.
    """


def entry() -> NoReturn:
    """The `sqlplan` console script: the command, then an exit that skips the interpreter's
    teardown (about 20 ms of freeing what the process is about to drop anyway). It is safe
    because by then everything sqlplan writes is written: the connection closed, files closed
    by their `with` blocks, the cache entry renamed into place; only the standard streams are
    left, and they are flushed here. The exit code is the command's."""
    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")  # as Python does for a message given to sys.exit
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (`| head`) before the last of the output
        code = code or int(ExitCode.READER_LEFT)
    except ValueError:  # a closed stream
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(int(code or 0))
