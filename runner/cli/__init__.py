"""The `sqlplan` command: click declarations that turn options into calls of the library
(runner/api/) and render what those return. app.py holds the group and the console script;
each other module, the commands of one concern; common.py, what they share."""

from . import authoring, db, github, history, review, run, stats  # noqa: F401  (each registers its commands)
from .app import entry, main

__all__ = ["entry", "main"]
