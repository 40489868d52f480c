"""A fleet's targets: named databases, each with its URL or the environment variable that
holds it, and labels; from a file (plain lines or YAML), from `--target` options or from a
query's rows; selected by labels (`--only region=eu`) and by shard (`--shard I/N`), in the
order they were given. A YAML file:

    targets:
      - name: tenant-001
        url: $TENANT_001_URL
        labels: {region: eu, tier: free}

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
from typing import Any

from ..errors import ExitCode, Position, SqlPlanError

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@-]*")
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)=(\S*)")
_KEYS = ("name", "url", "labels")  # a target's fields in a YAML targets file
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
    """The targets of a file: YAML (a name ending .yaml or .yml) or plain lines, `NAME URL
    [label=value ...]`, where URL may be `$VAR` (the environment variable holding it) and `#`
    starts a comment."""
    env = os.environ if environ is None else environ
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise TargetsError(f"cannot read the targets file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise TargetsError(f"the targets file {path} is not UTF-8") from None
    if path.endswith((".yaml", ".yml")):
        return _read_yaml(path, text, env)
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
        check_name(name, seen, where)
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


def check_name(name: str, seen: dict[str, Position], where: Position | None) -> None:
    """A target's name: its characters, and named once (`seen`: those before it)."""
    if not _NAME.fullmatch(name):
        raise TargetsError(f"{name!r} is not a target name (letters, digits, _ . : @ -)", where)
    if name in seen:
        first = seen[name]
        said = f" (first at line {first.line})" if first.line else ""
        raise TargetsError(f"target {name} is named twice{said}", where)
    seen[name] = where or Position("", 0, 0)


def from_options(
    specs: Sequence[str], environ: Mapping[str, str] | None = None
) -> list[FleetTarget]:
    """Repeated `--target NAME=URL` (or NAME=$VAR); a URL alone is named by its host and
    database."""
    env = os.environ if environ is None else environ
    targets: list[FleetTarget] = []
    seen: dict[str, Position] = {}
    for spec in specs:
        if spec.startswith(("postgres://", "postgresql://")):
            name, source = _named(spec), spec
        else:
            name, _, source = spec.partition("=")
        try:
            check_name(name, seen, None)
            url = _url(source, env, None)
        except TargetsError as e:
            raise TargetsError(f"--target {name}: {e.message}") from None
        targets.append(FleetTarget(name, url))
    return targets


def _named(url: str) -> str:
    """A name for a target given by its URL alone: host, port and database, as written."""
    match = re.match(r"[a-z]+://(?:[^@/]*@)?([^/?#]*)(?:/([^?#]*))?", url)
    if match is None:
        return url
    return re.sub(r"[^A-Za-z0-9_.:@-]", "_", f"{match[1]}/{match[2] or ''}".strip("/")) or "_"


def from_rows(rows: Sequence[Sequence[object]], source: str) -> list[FleetTarget]:
    """The targets a query returned (`--targets-from`): a name and a URL per row, then labels,
    as key=value words or a JSON object."""
    import json

    targets: list[FleetTarget] = []
    seen: dict[str, Position] = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2 or not all(isinstance(v, str) for v in row[:2]):
            raise TargetsError(
                f"{source}: row {number} is not a name and a URL (text), then labels"
            )
        name, url = str(row[0]), str(row[1])
        try:
            check_name(name, seen, None)
        except TargetsError as e:
            raise TargetsError(f"{source}: row {number}: {e.message}") from None
        if not url.startswith(("postgres://", "postgresql://")):
            raise TargetsError(f"{source}: row {number} ({name}): the URL is not postgresql://")
        labels: list[tuple[str, str]] = []
        for value in row[2:]:
            if value is None:
                continue
            if isinstance(value, dict) or (
                isinstance(value, str) and value.lstrip().startswith("{")
            ):
                try:
                    pairs = value if isinstance(value, dict) else json.loads(str(value))
                except ValueError:
                    pairs = None
                if not isinstance(pairs, dict):
                    raise TargetsError(f"{source}: row {number} ({name}): labels are not an object")
                labels += [(str(k), "" if v is None else str(v)) for k, v in pairs.items()]
                continue
            for word in str(value).split():
                match = _LABEL.fullmatch(word)
                if match is None:
                    raise TargetsError(
                        f"{source}: row {number} ({name}): {word!r} is not key=value"
                    )
                labels.append((match[1], match[2]))
        targets.append(FleetTarget(name, url, tuple(sorted(labels))))
    return targets


def url_of(source: str, env: Mapping[str, str], where: Position | None) -> str:
    """A target's URL as written, or from the environment variable it names ($VAR, ${VAR})."""
    return _url(source, env, where)


def _url(source: str, env: Mapping[str, str], where: Position | None) -> str:
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


def _read_yaml(path: str, text: str, env: Mapping[str, str]) -> list[FleetTarget]:
    """A YAML targets file: a list (or `targets:` holding one) of {name, url, labels}."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = Position(path, mark.line + 1, mark.column + 1) if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise TargetsError(f"the targets file is not valid YAML: {problem}", where) from None
    if root is None:
        return []
    if isinstance(root, yaml.MappingNode):
        found = {key.value: value for key, value in root.value}
        if set(found) != {"targets"}:
            raise TargetsError(
                "a targets file holds `targets:` (a list), and nothing else", _at(path, root)
            )
        root = found["targets"]
    if not isinstance(root, yaml.SequenceNode):
        raise TargetsError("the targets are a list of {name, url, labels}", _at(path, root))
    targets: list[FleetTarget] = []
    seen: dict[str, Position] = {}
    for item in root.value:
        where = _at(path, item)
        if not isinstance(item, yaml.MappingNode):
            raise TargetsError("a target is a mapping of name, url and labels", where)
        fields = {}
        for key, value in item.value:
            if key.value not in _KEYS:
                raise TargetsError(
                    f"{key.value!r} is not a target's field (name, url, labels)", _at(path, key)
                )
            fields[key.value] = value
        for required in ("name", "url"):
            node = fields.get(required)
            if node is None:
                raise TargetsError(f"a target needs a {required}", where)
            if not isinstance(node, yaml.ScalarNode) or not node.value:
                raise TargetsError(f"a target's {required} is text", _at(path, node))
        name_node = fields["name"]
        check_name(name_node.value, seen, _at(path, name_node))
        url = _url(fields["url"].value, env, _at(path, fields["url"]))
        targets.append(
            FleetTarget(name_node.value, url, _labels(path, fields.get("labels")), where)
        )
    return targets


def _labels(path: str, node: Any) -> tuple[tuple[str, str], ...]:
    if node is None:
        return ()
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise TargetsError("a target's labels are a mapping (region: eu)", _at(path, node))
    labels = []
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or not isinstance(value, yaml.ScalarNode):
            raise TargetsError("a label is a key and a plain value", _at(path, key))
        labels.append((key.value, value.value))
    return tuple(sorted(labels))


def _at(path: str, node: Any) -> Position:
    return Position(path, node.start_mark.line + 1, node.start_mark.column + 1)
