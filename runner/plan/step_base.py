"""What building any step needs: the state of the step being built, its values and their
vars, its messages, and how counts read in a message."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import Position
from . import templates
from .document import Checker, Map, Scalar
from .model import (
    Message,
    Use,
)
from .schema_errors import did_you_mean
from .values import value_problems
from .vars import uses_in


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def param_range(n: int) -> str:
    return "" if n == 0 else (" ($1)" if n == 1 else f" ($1..${n})")


class StepChecker(Checker):
    """A Checker that builds steps: what every part of the builder shares."""

    var_names: tuple[str, ...] = ()  # the vars the plan declares
    source_use: Use | None = None  # a rows_from file named with vars, for the step being built
    own_captures: tuple[str, ...] = ()  # the vars the step being built captures: its messages' too
    expect_uses: tuple[Use, ...] = ()  # the vars an expectation of the step being built uses

    def uses(self, path: list[int | str], value: object) -> list[Use]:
        """The var references in a value at `path` (from the step's mapping), each checked."""
        found = []
        for inner, template in uses_in(value):
            where = [*path, *inner]
            offset = self.document.offset_at(["steps", *where])
            for f in template.fields:
                if f.name not in self.var_names:
                    self.unknown_var(f.name, self.at(self.inside(offset, template.text, f.offset)))
            found.append(Use(tuple(where[1:]), template, self.at(offset)))
        return found

    def inside(self, start: int, value: str, offset: int) -> int:
        """The file offset of a character of a scalar that starts at `start`, where the text
        up to it is written as it reads (no escapes, no folding); else the scalar's start."""
        text = self.document.text
        begin = start + 1 if text[start : start + 1] in ("'", '"') else start
        return begin + offset if text[begin : begin + offset] == value[:offset] else start

    def unknown_var(self, name: str, position: Position) -> None:
        declared = ", ".join("{" + n + "}" for n in self.var_names)
        hint = (
            f"the plan declares {declared}{did_you_mean(name, self.var_names, braces=True)}"
            if self.var_names
            else "declare it under vars:"
        )
        self.add(
            position,
            f"unknown var {{{name}}}: {hint} (write {{{{{name}}}}} for the text {{{name}}})",
            "var-unknown",
        )

    def check_value(self, path: list[object], value: object) -> None:
        """What a value cannot carry: infinities and NaN inside JSON, keys that are not text."""
        for inner, problem, at_key in value_problems(value):
            where = [*path, *inner]
            offset = self.document.key_offset_at(where) if at_key else None
            if offset is None:
                offset = self.document.offset_at(where)
            self.add(self.at(offset), problem, "value")

    def message(
        self,
        mapping: Map,
        raw: dict[str, Any],
        key: str,
        fields: Iterable[str],
        *,
        open_fields: bool = False,
    ) -> Message | None:
        """Parse a template; its fields must be among `fields` (or be columns, when open)."""
        if key not in raw:
            return None
        node = mapping.value(key)
        if not isinstance(node, Scalar) or not isinstance(node.value, str):
            return None  # the schema reports it
        source = self.document.source(node)
        try:
            template = templates.parse(source.text)
        except templates.TemplateSyntaxError as e:
            self.add(source.locate(e.offset), f"in '{key}': {e}", "template")
            return None
        known = (*fields, *self.var_names, *self.own_captures)
        for f in template.fields:
            if f.name in known or (open_fields and not f.name.startswith("$")):
                continue
            name = f.name if len(f.name) <= 60 else f.name[:59] + "…"
            if open_fields:
                extra = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use the query's columns" + (f" and {extra}" if extra else "")
                hint += " (the query takes no parameters)" if not known else ""
            elif not known:
                hint = f"'{key}' has no fields (write {{{{ and }}}} for literal braces)"
            else:
                names = ", ".join("{" + k + "}" for k in known)
                hint = f"'{key}' can use {names}{did_you_mean(f.name, known, braces=True)}"
            self.add(source.locate(f.offset), f"unknown field {{{name}}}: {hint}", "template-field")
        return Message(template, source)
