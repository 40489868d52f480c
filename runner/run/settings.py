"""The settings a step runs with (lock_timeout, statement_timeout), SET LOCAL in its
transaction, with the names and values as bind parameters."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def set_local(settings: Sequence[tuple[str, str]]) -> tuple[str, tuple[object, ...]]:
    """SET LOCAL of the settings, with the names and values as bind parameters."""
    sql = "SELECT " + ", ".join(
        f"set_config(${2 * i + 1}, ${2 * i + 2}, true)" for i in range(len(settings))
    )
    return sql, tuple(v for pair in settings for v in pair)


def reset_local(names: Iterable[str]) -> str:
    """Undo earlier steps' SET LOCAL inside the plan's block, for a step without settings."""
    return "; ".join(f"SET LOCAL {name} TO DEFAULT" for name in sorted(names))
