"""`python -m runner` is the `sqlplan` command."""

from .cli import entry

entry()
