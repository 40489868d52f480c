"""`python -m runner` is the `sqlplan` command."""

from .main import entry

entry()
