"""A fleet's targets: named databases read from a file of plain lines, each with its URL or
the environment variable that holds it, and labels; selected by labels (`--only region=eu`)
and by shard (`--shard I/N`), in the file's order. (The first part of fleets: the rollout that
uses them is not built yet.)

A URL is never shown: a target is named by its name, and `display` gives its URL with the
password masked. The URLs themselves stay in the Target, for connecting.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ExitCode, Position, SqlPlanError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]*")
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S*)")
_ENV = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TargetsError(SqlPlanError):
    """A targets file or selection that cannot be used: where, and why (exit 4)."""

    exit_code = ExitCode.CONFIG

    def __init__(self, message: str, position: Position | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __str__(self) -> str:
        return f"{self.position}: error: {self.message}" if self.position else self.message


@dataclass(frozen=True)
class FleetTarget:
    name: str
    url: str = field(repr=False)
    labels: tuple[tuple[str, str], ...] = ()
    position: Position | None = None  # where the file names it

    @property
    def display(self) -> str:
        """The URL with its password masked (the only form that is ever shown)."""
        return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1****@", self.url)


def read(path: str, environ: Mapping[str, str] | None = None) -> list[FleetTarget]:
    """The targets of a file of plain lines: `NAME URL [label=value ...]`, where URL may be
    `$VAR` (the environment variable holding it); `#` starts a comment."""
    env = os.environ if environ is None else environ
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise TargetsError(f"cannot read the targets file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TargetsError(f"the targets file {path} is not UTF-8") from None
    targets: list[FleetTarget] = []
    seen: dict[str, Position] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = re.sub(r"(^|\s)#.*", "", line).split()  # a # after a space starts a comment
        if not words:
            continue
        where = Position(path, number, len(line) - len(line.lstrip()) + 1)
        if len(words) < 2:
            raise TargetsError(
                f"a target is a name and a URL (or $VAR), not {words[0]!r} alone", where
            )
        name, source, *rest = words
        if not _NAME.fullmatch(name):
            raise TargetsError(f"{name!r} is not a target name (letters, digits, _ . : @ -)", where)
        if name in seen:
            raise TargetsError(
                f"target {name} is named twice (first at line {seen[name].line})", where
            )
        seen[name] = where
        labels = []
        for word in rest:
            match = _LABEL.fullmatch(word)
            if match is None:
                column = line.find(word) + 1
                raise TargetsError(
                    f"{word!r} is not a label (key=value)", Position(path, number, column)
                )
            labels.append((match[1], match[2]))
        targets.append(FleetTarget(name, _url(source, env, where), tuple(sorted(labels)), where))
    return targets


def _url(source: str, env: Mapping[str, str], where: Position) -> str:
    match = _ENV.fullmatch(source)
    if match is not None:
        var = match[1] or match[2]
        if not env.get(var):
            raise TargetsError(f"the environment variable {var} is not set", where)
        source = env[var]
    if not source.startswith(("postgres://", "postgresql://")):
        raise TargetsError(
            "a target's URL starts with postgresql:// (or names the variable holding it: $VAR)",
            where,
        )
    return source


def select(
    targets: Sequence[FleetTarget], only: Sequence[str] = (), shard: str | None = None
) -> list[FleetTarget]:
    """The targets with every `only` label (key=value), in the shard I/N (1-based) if one is
    given: a stable share, by a hash of each name, so that N jobs cover the fleet once; in
    the file's order."""
    wanted = []
    for spec in only:
        match = _LABEL.fullmatch(spec)
        if match is None:
            raise TargetsError(f"--only {spec!r}: a label is key=value")
        wanted.append((match[1], match[2]))
    chosen = [t for t in targets if all(pair in t.labels for pair in wanted)]
    if shard is None:
        return chosen
    match = re.fullmatch(r"([0-9]+)/([0-9]+)", shard)
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise TargetsError(f"--shard {shard!r}: I/N, with 1 <= I <= N")
    index, count = int(match[1]) - 1, int(match[2])
    return [t for t in chosen if shard_of(t.name, count) == index]


def shard_of(name: str, count: int) -> int:
    """The shard (0-based) of a target among `count`: from its name alone, so that adding or
    removing other targets never moves it."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count
