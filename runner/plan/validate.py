"""YAML text -> validated, frozen Plan and Step objects that remember their source positions."""

from __future__ import annotations

import bisect
import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import Diagnostic, PlanInvalid, Position
from . import schema as schema_module
from . import sqlparse, templates
from .cache import read_plan
from .files import FileSource, SourceError
from .model import (
    BULK_CHUNK_ROWS,
    AnyStep,
    BatchStep,
    BulkInsertStep,
    ExecuteStep,
    Locator,
    Message,
    Plan,
    QueryStep,
    SourceText,
    Step,
)

if TYPE_CHECKING:
    from jsonschema import ValidationError

__all__ = [
    "BULK_CHUNK_ROWS",
    "AnyStep",
    "BatchStep",
    "BulkInsertStep",
    "ExecuteStep",
    "Message",
    "Plan",
    "QueryStep",
    "SourceText",
    "Step",
    "load_plan",
    "parse_plan",
    "plan_from_bytes",
]


# --- YAML: one parse, YAML 1.2 core scalars -------------------------------------------------

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PlanLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """A safe loader with YAML 1.2 core scalars.

    PyYAML follows YAML 1.1, where `no`, `off` and `y` are booleans, `1:20` is 80 and `017` is 15:
    a plan's parameter `NO` (Norway) must stay the text NO. Dates stay text too; PostgreSQL
    parses them from the bind parameter.
    """

    yaml_implicit_resolvers: ClassVar[dict[str, list[tuple[str, re.Pattern[str]]]]] = {}


_CORE_RESOLVERS = [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
]
for _tag, _pattern, _first in _CORE_RESOLVERS:
    PlanLoader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)


def _construct_float(loader: yaml.SafeLoader, node: ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith(".inf"):
        return -math.inf if text.startswith("-") else math.inf
    if text == ".nan":
        return math.nan
    return float(text)


def _construct_bool(loader: yaml.SafeLoader, node: ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


PlanLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
PlanLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)
PlanLoader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


# --- Loading ---------------------------------------------------------------------------------


def load_plan(path: str | Path) -> Plan:
    """Read, parse and validate a plan file; raise PlanInvalid with every problem found."""
    return plan_from_bytes(read_plan(path), str(path))


def plan_from_bytes(raw: bytes, display: str) -> Plan:
    """Decode, parse and validate a plan file's contents."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise PlanInvalid(
            [Diagnostic(Position(display, line, column), "the plan is not valid UTF-8", "encoding")]
        ) from e
    return parse_plan(text, display)


def parse_plan(text: str, path: str) -> Plan:
    return _Validator(text, path).run()


class _Validator:
    def __init__(self, text: str, path: str) -> None:
        self.text = text
        self.path = path
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.diagnostics: list[Diagnostic] = []
        self.schema = schema_module.load()

    # positions

    def node_position(self, node: Node) -> Position:
        return Position(self.path, node.start_mark.line + 1, node.start_mark.column + 1)

    def index_position(self, index: int) -> Position:
        line = bisect.bisect_right(self.line_starts, index) - 1
        return Position(self.path, line + 1, index - self.line_starts[line] + 1)

    def source(self, node: ScalarNode) -> SourceText:
        return SourceText(str(node.value), self.node_position(node), self._locator(node))

    def _locator(self, node: ScalarNode) -> Locator:
        """How to find the characters of a scalar's value in the file (see model.Locator)."""
        start = self.line_starts[node.start_mark.line] + node.start_mark.column
        end = self.line_starts[node.end_mark.line] + node.end_mark.column
        if node.style in ("|", ">"):
            start = self.text.find("\n", start) + 1 or end
        elif node.style in ("'", '"'):
            start += 1
        at = self.index_position(start)
        return Locator(str(node.value), self.text[start:end], self.path, at.line, at.column)

    # the pipeline

    def run(self) -> Plan:
        root = self.compose()
        if root is None:
            raise PlanInvalid(self.diagnostics)
        self.check_duplicate_keys(root)
        loader = PlanLoader("")
        data = loader.construct_document(root)
        bad_steps = self.check_schema(root, data)
        # Semantic checks need a well-formed step; they still run on the steps that are.
        plan = self.check_semantics(root, data, bad_steps)
        if self.diagnostics or plan is None:
            raise PlanInvalid(self.diagnostics)
        return plan

    def add(self, position: Position, message: str, code: str) -> None:
        diagnostic = Diagnostic(position, message, code)
        # jsonschema raises one `required` error per missing key, each naming all of them.
        if diagnostic not in self.diagnostics:
            self.diagnostics.append(diagnostic)

    def compose(self) -> Node | None:
        loader = PlanLoader(self.text)
        try:
            node: Node | None = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            where = (
                Position(self.path, mark.line + 1, mark.column + 1)
                if mark
                else Position(self.path, 1, 1)
            )
            problem = e.problem or e.context or "invalid YAML"
            if e.context and e.problem:
                problem = f"{e.problem} ({e.context})"
            self.add(where, f"YAML syntax error: {problem}", "yaml")
            return None
        finally:
            loader.dispose()
        if node is None:
            self.add(Position(self.path, 1, 1), "the plan is empty", "empty")
        return node

    def check_duplicate_keys(self, node: Node) -> None:
        if isinstance(node, MappingNode):
            seen: dict[str, Node] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode):
                    if key.value in seen:
                        first = seen[key.value].start_mark.line + 1
                        self.add(
                            self.node_position(key),
                            f"duplicate key '{key.value}' (first defined on line {first})",
                            "duplicate-key",
                        )
                    else:
                        seen[key.value] = key
                self.check_duplicate_keys(value)
        elif isinstance(node, SequenceNode):
            for item in node.value:
                self.check_duplicate_keys(item)

    # schema

    def check_schema(self, root: Node, data: object) -> set[int]:
        """Validate against the JSON Schema; return the indexes of steps that have errors."""
        bad_steps: set[int] = set()
        for error in self.schema.validator.iter_errors(data):
            for leaf in self.leaf_errors(error):
                self.report_schema_error(root, leaf)
                path = list(leaf.absolute_path)
                if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
                    bad_steps.add(path[1])
        return bad_steps

    def leaf_errors(self, error: ValidationError) -> Iterator[ValidationError]:
        """Resolve a step's oneOf to the branch its kind key selects, like a discriminator."""
        if error.validator != "oneOf":
            yield error
            return
        if not isinstance(error.instance, dict):
            return  # not a mapping: the step's own `type` error says so

        present = [k for k in self.schema.kind_keys if k in error.instance]
        if len(present) != 1:
            yield error  # reported as a missing or ambiguous kind
            return
        branch = self.schema.kind(present[0]).branch
        for sub in error.context or ():
            if sub.relative_schema_path and sub.relative_schema_path[0] == branch:
                yield from self.leaf_errors(sub)

    def report_schema_error(self, root: Node, error: ValidationError) -> None:
        path = list(error.absolute_path)
        node = _node_at(root, path)
        where = self.node_position(node)
        validator = error.validator
        instance = error.instance
        rule: Any = error.validator_value
        sub_schema: Any = error.schema
        subject = _subject(sub_schema, path)

        if validator == "oneOf" and isinstance(instance, dict):
            kinds = self.schema.kind_keys
            present = [k for k in kinds if k in instance]
            if present:
                second = _key_node(node, present[1])
                self.add(
                    self.node_position(second) if second else where,
                    f"a step has exactly one kind, this one has {_quoted_list(present)}",
                    "step-kind",
                )
                return
            self.add(
                where,
                f"the step has no kind: it needs one of the keys {_quoted_list(kinds)}",
                "step-kind",
            )
            allowed = self.schema.all_step_keys
            for key in instance:
                if key not in allowed:
                    self.unknown_key(node, key, allowed, "a step")
            return
        if validator == "additionalProperties" and isinstance(instance, dict):
            allowed = tuple(sub_schema.get("properties", {}))
            for key in instance:
                if key not in allowed:
                    self.unknown_key(node, key, allowed, subject)
            return
        if validator == "required":
            missing = [k for k in rule if isinstance(instance, dict) and k not in instance]
            for key in missing:
                self.add(where, f"{subject} is missing the required key '{key}'", "missing-key")
            return
        if validator == "type":
            expected = rule
            names = [expected] if isinstance(expected, str) else list(expected)
            self.add(
                where,
                f"{subject} must be {_or_list([_article(n) for n in names])}, not {_type_name(instance)}",
                "type",
            )
            return
        if validator == "const":
            self.add(where, f"{subject} must be {rule!r}, not {instance!r}", "value")
            return
        if validator == "enum":
            choices = [str(c) for c in rule]
            hint = _did_you_mean(str(instance), choices) if isinstance(instance, str) else ""
            self.add(
                where,
                f"{subject} must be one of {', '.join(choices)}, not {instance!r}{hint}",
                "value",
            )
            return
        if validator == "uniqueItems":
            self.add(where, f"{subject} lists a value twice", "value")
            return
        if validator in ("minItems", "minLength") and rule == 1:
            self.add(where, f"{subject} must not be empty", "empty")
            return
        self.add(where, f"{subject}: {error.message}", "schema")

    def unknown_key(self, mapping: Node, key: object, allowed: Sequence[str], subject: str) -> None:
        if not isinstance(key, str):
            # `null:`, `true:` or `1:` are not text keys in YAML; find the node by its value
            node = next(
                (
                    k
                    for k, _ in getattr(mapping, "value", [])
                    if isinstance(k, ScalarNode) and PlanLoader("").construct_object(k) == key
                ),
                None,
            )
            raw = node.value if node is not None else str(key)
            where = self.node_position(node) if node is not None else self.node_position(mapping)
            self.add(
                where,
                f"the key {raw!r} in {subject} is not text in YAML; quote it if you meant the name",
                "unknown-key",
            )
            return
        key_node = _key_node(mapping, key)
        where = self.node_position(key_node) if key_node else self.node_position(mapping)
        self.add(
            where, f"unknown key '{key}' in {subject}{_did_you_mean(key, allowed)}", "unknown-key"
        )

    # semantics the schema cannot express

    def check_semantics(self, root: Node, data: Any, bad_steps: set[int]) -> Plan | None:
        if not isinstance(data, dict) or not isinstance(root, MappingNode):
            return None
        null_text = data.get("null_text", "NULL")
        if not isinstance(null_text, str):
            null_text = "NULL"
        on_connect = self.message(root, data, "on_connect", ())
        steps_node = _key_value(root, "steps")
        raw_steps = data.get("steps")
        steps: list[AnyStep] = []
        if isinstance(steps_node, SequenceNode) and isinstance(raw_steps, list):
            for index, (node, raw) in enumerate(zip(steps_node.value, raw_steps, strict=False)):
                if (
                    index in bad_steps
                    or not isinstance(raw, dict)
                    or not isinstance(node, MappingNode)
                ):
                    continue
                step = self.build_step(index + 1, node, raw)
                if step is not None:
                    steps.append(step)
        if self.diagnostics:
            return None
        return Plan(
            path=self.path,
            name=str(data["name"]),
            description=data.get("description"),
            on_connect=on_connect,
            null_text=null_text,
            steps=tuple(steps),
            fingerprint=_fingerprint(data),
        )

    def build_step(self, number: int, node: MappingNode, raw: dict[str, Any]) -> AnyStep | None:
        kind = next(k for k in self.schema.kind_keys if k in raw)
        sql_node = _key_value(node, kind)
        key_node = _key_node(node, kind)
        assert isinstance(sql_node, ScalarNode)
        assert key_node is not None
        sql = self.source(sql_node)
        try:
            facts = sqlparse.parse(sql.text)
        except sqlparse.SqlSyntaxError as e:
            self.add(sql.locate(e.offset), f"SQL syntax error: {e}", "sql-syntax")
            return None
        name = raw.get("name")
        common: dict[str, Any] = {
            "number": number,
            "name": name,
            "position": self.node_position(key_node),
            "sql": sql,
            "statements": facts.statements,
            "allow": frozenset(raw.get("allow", ())),
        }
        params_fields = templates.param_fields(facts.highest_placeholder)
        if not facts.statements:
            self.add(sql.position, "the SQL holds no statement", "no-statement")
            return None

        if kind == "batch":
            for placeholder in facts.placeholders:
                self.add(
                    sql.locate(placeholder.offset),
                    f"a batch step takes no parameters, but its SQL uses ${placeholder.number} "
                    "(use an execute step)",
                    "batch-params",
                )
            return BatchStep(
                **common,
                before=self.message(node, raw, "before", ()),
                after=self.message(node, raw, "after", ()),
            )

        if len(facts.statements) > 1:
            self.add(
                sql.locate(facts.statements[1].offset),
                f"{_article(kind)} step runs exactly one statement, but its SQL has "
                f"{len(facts.statements)} (use a batch step for several)",
                "one-statement",
            )
        self.check_placeholders(sql, facts)

        if kind == "bulk_insert":
            width = facts.highest_placeholder
            rows: list[Any] = raw.get("rows", [])
            rows_node = _key_value(node, "rows")
            source = None
            if ("rows" in raw) == ("rows_from" in raw):
                self.add(
                    self.node_position(node),
                    "a bulk_insert step needs either rows or rows_from (one of them)",
                    "missing-key",
                )
            elif "rows_from" in raw:
                source = self.file_source(_key_value(node, "rows_from"), raw["rows_from"], width)
            assert rows_node is None or isinstance(rows_node, SequenceNode)
            row_nodes = rows_node.value if rows_node is not None else []
            for row_number, (row_node, row) in enumerate(zip(row_nodes, rows, strict=True), 1):
                if len(row) != width:
                    self.add(
                        self.node_position(row_node),
                        f"row {row_number} has {_count(len(row), 'value')}, "
                        f"but the statement takes {_count(width, 'parameter')}{_param_range(width)}",
                        "row-width",
                    )
            # A file's row count is known only once it is read: {rows} cannot go in `before`.
            before_fields = ("rows",) if source is None else ()
            return BulkInsertStep(
                **common,
                rows=tuple(tuple(r) for r in rows),
                row_positions=tuple(self.node_position(n) for n in row_nodes),
                source=source,
                width=width,
                copy_sql=sqlparse.copy_statement(facts.statements[0])
                if len(facts.statements) == 1
                else None,
                before=self.message(node, raw, "before", before_fields),
                after=self.message(node, raw, "after", ("count", "rows")),
                after_no_rows=self.message(node, raw, "after_no_rows", ("count", "rows")),
            )

        params = tuple(raw.get("params", ()))
        if len(params) != facts.highest_placeholder:
            params_node = _key_value(node, "params")
            where = self.node_position(params_node) if params_node else self.node_position(node)
            self.add(
                where,
                f"the SQL takes {_count(facts.highest_placeholder, 'parameter')}"
                f"{_param_range(facts.highest_placeholder)}, but params has {_count(len(params), 'value')}",
                "param-count",
            )
        if kind == "execute":
            return ExecuteStep(
                **common,
                params=params,
                before=self.message(node, raw, "before", params_fields),
                after=self.message(node, raw, "after", ("count", *params_fields)),
                after_no_rows=self.message(node, raw, "after_no_rows", ("count", *params_fields)),
            )
        outer = ("count", *params_fields)
        return QueryStep(
            **common,
            params=params,
            before=None,
            header=self.message(node, raw, "header", outer),
            row=self.message(node, raw, "row", params_fields, open_fields=True),
            empty=self.message(node, raw, "empty", outer),
            footer=self.message(node, raw, "footer", outer),
        )

    def file_source(self, node: Node | None, raw: dict[str, Any], width: int) -> FileSource | None:
        """rows_from: the file must exist; a CSV header must have the fields named."""
        assert isinstance(node, MappingNode)
        file_node = _key_value(node, "file")
        assert file_node is not None
        where = self.node_position(file_node)
        path = Path(self.path).parent / raw["file"]
        fmt = raw.get("format") or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}.get(
            path.suffix.lower()
        )
        if fmt is None:
            self.add(
                where,
                f"cannot tell the format of {raw['file']!r} from its extension: add format: csv or jsonl",
                "rows-from",
            )
            return None
        if not path.is_file():
            self.add(
                where, f"no file {raw['file']!r} beside the plan (looked for {path})", "rows-from"
            )
            return None
        fields = tuple(raw.get("fields", ()))
        fields_node = _key_value(node, "fields")
        if fields and len(fields) != width:
            self.add(
                self.node_position(fields_node) if fields_node else where,
                f"fields names {_count(len(fields), 'field')}, but the statement takes {_count(width, 'parameter')}{_param_range(width)}",
                "row-width",
            )
        quote = raw.get("quote", '"')
        source = FileSource(
            path=path,
            display=str(path),
            format=fmt,
            header=raw.get("header", True),
            delimiter=raw.get("delimiter", ","),
            quote=quote,
            escape=raw.get("escape", quote),
            null=raw.get("null_string", ""),
            fields=fields,
        )
        if fmt == "csv" and source.header:
            try:
                source.check_header(width)
            except SourceError as e:
                self.add(
                    self.node_position(fields_node) if fields_node else where,
                    f"{raw['file']}:{e.line}: {e}",
                    "rows-from",
                )
                return None
        return source

    def check_placeholders(self, sql: SourceText, facts: sqlparse.ParsedSql) -> None:
        used = {p.number for p in facts.placeholders}
        for placeholder in facts.placeholders:
            if placeholder.number == 0:
                self.add(
                    sql.locate(placeholder.offset), "parameters are numbered from $1", "placeholder"
                )
        for missing in sorted(set(range(1, facts.highest_placeholder + 1)) - used):
            self.add(
                sql.position,
                f"the SQL uses ${facts.highest_placeholder} but never ${missing}: "
                "PostgreSQL cannot tell the type of an unused parameter",
                "placeholder",
            )

    def message(
        self,
        mapping: Node,
        raw: dict[str, Any],
        key: str,
        fields: Iterable[str],
        *,
        open_fields: bool = False,
    ) -> Message | None:
        """Parse a template; its fields must be among `fields` (or be columns, when open)."""
        if key not in raw:
            return None
        node = _key_value(mapping, key)
        assert isinstance(node, ScalarNode)
        source = self.source(node)
        try:
            template = templates.parse(source.text)
        except templates.TemplateSyntaxError as e:
            self.add(source.locate(e.offset), f"in '{key}': {e}", "template")
            return None
        known = tuple(fields)
        for f in template.fields:
            if f.name in known or (open_fields and not f.name.startswith("$")):
                continue
            if open_fields:
                extra = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use the query's columns" + (f" and {extra}" if extra else "")
                hint += " (the query takes no parameters)" if not known else ""
            elif not known:
                hint = f"'{key}' has no fields (write {{{{ and }}}} for literal braces)"
            else:
                names = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use {names}{_did_you_mean(f.name, known, braces=True)}"
            self.add(
                source.locate(f.offset), f"unknown field {{{f.name}}}: {hint}", "template-field"
            )
        return Message(template, source)


# --- helpers ---------------------------------------------------------------------------------


def _fingerprint(data: Any) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _key_node(mapping: Node, key: str) -> Node | None:
    if not isinstance(mapping, MappingNode):
        return None
    found = None
    for k, _ in mapping.value:
        if isinstance(k, ScalarNode) and k.value == key:
            found = k
    return found


def _key_value(mapping: Node, key: str) -> Node | None:
    if not isinstance(mapping, MappingNode):
        return None
    found = None
    for k, v in mapping.value:
        if isinstance(k, ScalarNode) and k.value == key:
            found = v
    return found


def _node_at(root: Node, path: Sequence[object]) -> Node:
    node = root
    for part in path:
        if isinstance(node, MappingNode):
            child = _key_value(node, str(part))
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        else:
            child = None
        if child is None:
            break
        node = child
    return node


def _subject(schema: Any, path: Sequence[object]) -> str:
    """How an error names the value it is about: 'the plan', 'a batch step', 'steps[2].params'."""
    if not path:
        return "the plan"
    title = schema.get("title") if isinstance(schema, dict) else None
    if isinstance(title, str) and title.endswith("step"):
        return _article(title)
    rest = list(path)
    owner = ""
    if len(rest) == 2 and rest[0] == "steps" and isinstance(rest[1], int):
        return f"step {rest[1] + 1}"
    if len(rest) >= 3 and rest[0] == "steps" and isinstance(rest[1], int):
        owner = f" of step {rest[1] + 1}"
        rest = rest[2:]
    text = ""
    for part in rest:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"'{text}'{owner}"


def _did_you_mean(word: str, choices: Iterable[str], *, braces: bool = False) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if not match:
        return ""
    return f"; did you mean {{{match[0]}}}?" if braces else f"; did you mean '{match[0]}'?"


def _quoted_list(items: Sequence[str]) -> str:
    quoted = [f"'{i}'" for i in items]
    return ", ".join(quoted[:-1]) + " and " + quoted[-1] if len(quoted) > 1 else quoted[0]


def _or_list(items: Sequence[str]) -> str:
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else items[0]


_TYPE_WORDS = {"object": "a mapping", "array": "a list", "string": "text", "null": "null"}


def _article(word: str) -> str:
    if word in _TYPE_WORDS:
        return _TYPE_WORDS[word]
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _param_range(n: int) -> str:
    return "" if n == 0 else (" ($1)" if n == 1 else f" ($1..${n})")
