"""`python -m runner` is the `sqlplan` command."""

from .cli import main

main()
