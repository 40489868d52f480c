"""YAML text -> plain data, and where each part of it is written: one pass over libyaml's events.

PyYAML's own composer keeps a node with two marks for every scalar (a 10 MB plan took 558 MiB)
and walks aliases without bound; this one keeps, for the scalars of a sequence, only their
values and start offsets, builds the data as it goes (YAML 1.2 core scalars, see values.py),
and refuses what a plan never needs: nesting deeper than MAX_DEPTH, aliases that expand to more
than ALIAS_NODES nodes, duplicate or non-scalar keys, several documents, unknown tags. Every
problem is a Problem at a character offset of the text.
"""

from __future__ import annotations

import bisect
import re
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import yaml
from yaml import events

from ..errors import Diagnostic, Position
from .model import Locator, SourceText
from .values import Number, is_number_text, parse_int, resolve_plain

if TYPE_CHECKING:
    from .schema import PlanSchema

MAX_DEPTH = 100  # collections inside collections; a plan needs about 6
ALIAS_NODES = 10_000  # nodes that aliases may add to a plan, in all (see README, "Values")

try:  # libyaml, when PyYAML was built with it (its wheels are)
    from yaml._yaml import CParser as _Parser
except ImportError:  # pragma: no cover - pure-Python PyYAML
    from yaml import SafeLoader as _Parser  # type: ignore[assignment]


class Scalar:
    """A scalar written as a mapping's key or value: its value, its text and where it is."""

    __slots__ = ("end", "start", "style", "text", "value")

    def __init__(self, value: object, text: str, start: int, end: int, style: str | None):
        self.value = value
        self.text = text
        self.start = start  # character offsets in the document
        self.end = end
        self.style = style  # None for plain; "'", '"', "|", ">"


class Seq:
    """A sequence: its data (the list in the plan's data) and where each item starts."""

    __slots__ = ("children", "data", "size", "start", "starts")

    def __init__(self, start: int) -> None:
        self.data: list[Any] = []
        self.starts = array("q")  # offset of each item
        self.children: list[Node | None] | None = None  # nodes of the items that are collections
        self.start = start
        self.size = 1  # nodes, aliases expanded

    def child(self, index: int) -> Node | None:
        return self.children[index] if self.children is not None else None


class Map:
    """A mapping: its data and its entries, each key and value with its place."""

    __slots__ = ("data", "entries", "pending", "size", "start")

    def __init__(self, start: int) -> None:
        self.data: dict[Any, Any] = {}
        self.entries: list[tuple[Scalar, Node]] = []
        self.pending: Scalar | bool | None = False  # the key awaiting its value; None: skipped
        self.start = start
        self.size = 1

    def value(self, key: str) -> Node | None:
        found = None
        for k, v in self.entries:
            if k.value == key:
                found = v
        return found

    def key(self, key: str) -> Scalar | None:
        found = None
        for k, _ in self.entries:
            if k.value == key:
                found = k
        return found


Node = Scalar | Seq | Map


class Checker:
    """A part of validation that reports diagnostics about a document: `at` turns an offset
    into a position, `add` records a diagnostic."""

    def __init__(
        self,
        document: Document,
        schema: PlanSchema,
        add: Callable[[Position, str, str], None],
    ) -> None:
        self.document = document
        self.schema = schema
        self.add = add

    def at(self, offset: int) -> Position:
        return self.document.position(offset)


class Problem(Exception):
    """Why the text is not a plan document, at a character offset."""

    def __init__(self, offset: int, message: str, code: str = "yaml") -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message
        self.code = code


class Document:
    """The plan's text, its data and its nodes, and positions of any offset."""

    def __init__(self, text: str, path: str, root: Node, problems: list[Problem]) -> None:
        self.text = text
        self.path = path
        self.root = root
        self.problems = problems  # found while composing; the data is still usable
        self.line_starts = line_starts(text)

    @property
    def data(self) -> object:
        return self.root.value if isinstance(self.root, Scalar) else self.root.data

    def position(self, offset: int) -> Position:
        return position_in(self.text, self.path, self.line_starts, offset)

    def packed_positions(self, offsets: Iterable[int]) -> tuple[int, ...]:
        """Line and column of each offset, packed as line << 32 | column (model.RowPositions);
        the offsets must increase, as a sequence's items do."""
        starts = self.line_starts
        last = len(starts) - 1
        line = 0
        packed = []
        for offset in offsets:
            while line < last and starts[line + 1] <= offset:
                line += 1
            packed.append((line + 1) << 32 | (offset - starts[line] + 1))
        return tuple(packed)

    def source(self, node: Scalar) -> SourceText:
        """A scalar's text with a locator that maps any offset in its value to the file."""
        start, end = node.start, node.end
        if node.style in ("|", ">"):
            start = self.text.find("\n", start) + 1 or end
        elif node.style in ("'", '"'):
            start += 1
        at = self.position(start)
        value = str(node.value)
        locate = Locator(value, self.text[start:end], self.path, at.line, at.column)
        return SourceText(value, self.position(node.start), locate)

    def node_at(self, path: Sequence[object]) -> Node | None:
        """The node of the value at a data path, if it has one (a sequence's scalars have
        none; `offset_at` finds where they start)."""
        node: Node | None = self.root
        for part in path:
            if isinstance(node, Map):
                node = node.value(part) if isinstance(part, str) else _entry(node, part)
            elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node.starts):
                node = node.child(part)
            else:
                return None
            if node is None:
                return None
        return node

    def key_offset_at(self, path: Sequence[object]) -> int | None:
        """Where the key of the mapping entry at a data path is written."""
        if not path:
            return None
        mapping = self.node_at(path[:-1])
        if not isinstance(mapping, Map):
            return None
        key = path[-1]
        found = [k for k, _ in mapping.entries if k.value == key and type(k.value) is type(key)]
        return found[-1].start if found else None

    def offset_at(self, path: Sequence[object]) -> int:
        """Where the value at a data path starts: the deepest node the path reaches."""
        node: Node = self.root
        offset = node.start
        for part in path:
            if isinstance(node, Map):
                entry = node.value(part) if isinstance(part, str) else _entry(node, part)
                if entry is None:
                    break
                node, offset = entry, entry.start
            elif isinstance(node, Seq) and isinstance(part, int) and 0 <= part < len(node.starts):
                offset = node.starts[part]
                child = node.child(part)
                if child is None:
                    break
                node = child
            else:
                break
        return offset


def _entry(mapping: Map, key: object) -> Node | None:
    found = None
    for k, v in mapping.entries:
        if k.value == key and type(k.value) is type(key):
            found = v
    return found


def line_starts(text: str) -> list[int]:
    return [0, *(m.end() for m in re.finditer("\n", text))]


def position_in(text: str, path: str, starts: list[int], offset: int) -> Position:
    """The 1-based line and column of a character offset; an offset at or past the end of the
    text is the end of its last line (a truncated file's error is on its last line)."""
    if offset >= len(text) and text:
        offset = len(text) - 1 if text.endswith("\n") else len(text)
    offset = max(0, offset)
    line = bisect.bisect_right(starts, offset) - 1
    return Position(path, line + 1, offset - starts[line] + 1)


# --- composing ------------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
_TAGGED_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")


def compose(text: str, path: str) -> Document:
    """Compose the plan's one document; raise Problem for a text that is not one."""
    composer = _Composer(text)
    root = composer.run()
    return Document(text, path, root, composer.problems)


class _Composer:
    def __init__(self, text: str) -> None:
        self.text = text
        self.problems: list[Problem] = []
        self.anchors: dict[str, tuple[object, Node, int]] = {}  # value, node, size
        self.open_anchors: set[str] = set()
        self.expanded = 0  # nodes added by aliases so far

    def run(self) -> Node:
        parser = _Parser(self.text)
        try:
            return self._compose(parser)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            problem = e.problem or e.context or "invalid YAML"
            if e.context and e.problem:
                problem = f"{e.problem} ({e.context})"
            raise Problem(mark.index if mark else 0, f"YAML syntax error: {problem}") from None
        except yaml.reader.ReaderError as e:
            raise Problem(e.position, _reader_message(e)) from None
        finally:
            dispose = getattr(parser, "dispose", None)
            if dispose is not None:
                dispose()

    def _compose(self, parser: Any) -> Node:
        get = parser.get_event
        # Local names: this loop runs once per YAML event, a million times for a large plan.
        scalar_event, alias_event = events.ScalarEvent, events.AliasEvent
        sequence_start, mapping_start = events.SequenceStartEvent, events.MappingStartEvent
        sequence_end, mapping_end = events.SequenceEndEvent, events.MappingEndEvent
        resolve = resolve_plain
        stack: list[Seq | Map] = []
        # The anchor of each open collection, named once its End event comes.
        anchor_of: list[str | None] = []
        root: Node | None = None
        documents = 0
        while True:
            event = get()
            kind = type(event)
            if kind is scalar_event:
                top = stack[-1] if stack else None
                if event.tag is None and not event.style:  # plain (libyaml: '', PyYAML: None)
                    value = resolve(event.value)
                else:
                    value = self._scalar_value(event)
                start = event.start_mark.index
                if type(top) is Seq and not event.anchor:
                    # the bulk of a large plan: no node, only the value and where it starts
                    top.data.append(value)
                    top.starts.append(start)
                    top.size += 1
                    if top.children is not None:
                        top.children.append(None)
                    continue
                node = Scalar(value, event.value, start, event.end_mark.index, event.style or None)
                if event.anchor:
                    self.anchors[event.anchor] = (value, node, 1)
                if top is not None:
                    self._add(top, value, node, start, 1)
                else:
                    root = node
            elif kind is sequence_end or kind is mapping_end:
                done = stack.pop()
                anchor = anchor_of.pop()
                if anchor:
                    self.open_anchors.discard(anchor)
                    self.anchors[anchor] = (done.data, done, done.size)
                if not stack:
                    root = done
                    continue
                parent = stack[-1]
                if type(parent) is Seq:  # a row into its rows: inline, as above
                    parent.data.append(done.data)
                    parent.starts.append(done.start)
                    parent.size += done.size
                    if parent.children is None:
                        parent.children = [None] * (len(parent.data) - 1)
                    parent.children.append(done)
                else:
                    self._add(parent, done.data, done, done.start, done.size)
            elif kind is sequence_start or kind is mapping_start:
                start = event.start_mark.index
                if event.tag is not None:
                    self._check_collection_tag(event, kind is sequence_start)
                if len(stack) >= MAX_DEPTH:
                    raise Problem(
                        start, f"the plan nests collections deeper than {MAX_DEPTH} levels", "depth"
                    )
                stack.append(Seq(start) if kind is sequence_start else Map(start))
                anchor_of.append(event.anchor)
                if event.anchor:
                    self.open_anchors.add(event.anchor)
            elif kind is alias_event:
                if not stack:
                    raise Problem(event.start_mark.index, "a plan cannot be just an alias")
                self._alias(event, stack)
            elif kind is events.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise Problem(
                        event.start_mark.index,
                        "a plan is one YAML document, but the file holds more (a second '---')",
                        "yaml",
                    )
            elif kind is events.StreamEndEvent:
                break
        if root is None:
            raise Problem(0, "the plan is empty", "empty")
        return root

    def _alias(self, event: Any, stack: list[Seq | Map]) -> None:
        offset = event.start_mark.index
        name = event.anchor
        if name in self.open_anchors:
            raise Problem(offset, f"the alias *{name} refers to a collection that contains it")
        if name not in self.anchors:
            raise Problem(offset, f"the alias *{name} names no anchor (&{name}) before it")
        value, node, size = self.anchors[name]
        self.expanded += size
        if self.expanded > ALIAS_NODES:
            raise Problem(
                offset,
                f"aliases expand to more than {ALIAS_NODES:,} nodes; write the values out "
                "(a plan may repeat anchored values only within that bound)",
                "alias",
            )
        if stack:
            self._add(stack[-1], value, node, offset, size)

    def _add(self, parent: Seq | Map, value: object, node: Node, start: int, size: int) -> None:
        parent.size += size
        if type(parent) is Seq:
            parent.data.append(value)
            parent.starts.append(start)
            if type(node) is not Scalar:
                if parent.children is None:
                    parent.children = [None] * (len(parent.data) - 1)
                parent.children.append(node)
            elif parent.children is not None:
                parent.children.append(None)
            return
        assert isinstance(parent, Map)
        if parent.pending is False:  # a key
            if not isinstance(node, Scalar):
                self.problems.append(
                    Problem(start, "a key must be a scalar, not a list or a mapping", "key")
                )
                parent.pending = None
                return
            if isinstance(value, (list, dict)):  # an alias to a collection, as a key
                self.problems.append(Problem(start, "a key must be a scalar", "key"))
                parent.pending = None
                return
            key = Scalar(value, node.text, start, node.end, node.style)
            if value in parent.data and any(
                k.value == value and type(k.value) is type(value) for k, _ in parent.entries
            ):
                first = next(
                    k
                    for k, _ in parent.entries
                    if k.value == value and type(k.value) is type(value)
                )
                self.problems.append(
                    Problem(
                        start,
                        f"duplicate key '{node.text}' (first defined on line "
                        f"{self._line(first.start)})",
                        "duplicate-key",
                    )
                )
            parent.pending = key
            return
        key_scalar = parent.pending
        parent.pending = False
        if key_scalar is None:
            return  # its key was refused
        assert isinstance(key_scalar, Scalar)
        parent.entries.append((key_scalar, node))
        if key_scalar.value not in parent.data:
            parent.data[key_scalar.value] = value

    def _line(self, offset: int) -> int:
        return self.text.count("\n", 0, offset) + 1

    def _scalar_value(self, event: Any) -> object:
        """A tagged or quoted scalar's value; a tag that cannot apply is a problem, and the
        scalar stays text so that composing goes on."""
        tag = event.tag
        text = event.value
        if tag is None:
            return resolve_plain(text) if not event.style else text
        if tag == "!" or tag == _CORE + "str":
            return text
        if tag == _CORE + "int":
            if _TAGGED_INT.fullmatch(text):
                return parse_int(text) if len(text) <= 4000 else Number(text)
            return self._refuse(event, f"!!int {text!r} is not an integer")
        if tag == _CORE + "float":
            if is_number_text(text):
                return Number(text)
            return self._refuse(event, f"!!float {text!r} is not a number")
        if tag == _CORE + "bool":
            if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
                return text.lower() == "true"
            return self._refuse(event, f"!!bool {text!r} is not true or false")
        if tag == _CORE + "null":
            if text in ("", "~", "null", "Null", "NULL"):
                return None
            return self._refuse(event, f"!!null {text!r} is not null")
        return self._refuse(event, f"the tag {_tag_name(tag)} is not supported in a plan")

    def _refuse(self, event: Any, message: str) -> str:
        self.problems.append(Problem(event.start_mark.index, message, "tag"))
        return str(event.value)

    def _check_collection_tag(self, event: Any, sequence: bool) -> None:
        tag = event.tag
        expected = _CORE + ("seq" if sequence else "map")
        if tag is not None and tag not in ("!", expected):
            raise Problem(
                event.start_mark.index,
                f"the tag {_tag_name(tag)} is not supported on a {'list' if sequence else 'mapping'}",
                "tag",
            )


def _tag_name(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _reader_message(error: yaml.reader.ReaderError) -> str:
    character = error.character
    code = character if isinstance(character, int) else ord(str(character)[:1] or "\0")
    return (
        f"the character U+{code:04X} is not allowed in YAML; "
        f'write it as "\\u{code:04X}" inside a double-quoted string'
    )


def walk_scalars(node: Node) -> Iterator[Scalar]:
    """Every Scalar node under `node` (keys and mapping values)."""
    if isinstance(node, Scalar):
        yield node
    elif isinstance(node, Map):
        for key, value in node.entries:
            yield key
            yield from walk_scalars(value)
    else:
        for child in node.children or ():
            if child is not None:
                yield from walk_scalars(child)


def diagnostic(document_text: str, path: str, problem: Problem) -> Diagnostic:
    return Diagnostic(
        position_in(document_text, path, line_starts(document_text), problem.offset),
        problem.message,
        problem.code,
    )
