"""Message templates: `{field}` substitution with `{{`/`}}` escapes, and nothing else.

There is no attribute access, indexing, format specification or expression: a field name is
looked up in a mapping of ready-made strings, so a plan can never run code through a template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .values import message_text


class TemplateSyntaxError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


@dataclass(frozen=True)
class Field:
    name: str
    offset: int  # 0-based offset of the `{` in the template text


@dataclass(frozen=True)
class Template:
    text: str
    parts: tuple[str | Field, ...]

    @property
    def fields(self) -> tuple[Field, ...]:
        return tuple(p for p in self.parts if isinstance(p, Field))

    def render(self, values: Mapping[str, str]) -> str:
        """Substitute every field; a missing field raises KeyError with its name."""
        return "".join(p if isinstance(p, str) else values[p.name] for p in self.parts)


def parse(text: str) -> Template:
    parts: list[str | Field] = []
    literal: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif c == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif c == "{":
            close = text.find("}", i + 1)
            nested = text.find("{", i + 1)
            if close < 0 or (0 <= nested < close):
                raise TemplateSyntaxError(
                    "'{' opens a field that is never closed (write {{ for a literal brace)", i
                )
            name = text[i + 1 : close]
            if not name:
                raise TemplateSyntaxError("empty field '{}' (write {{}} for literal braces)", i)
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(Field(name, i))
            i = close + 1
        elif c == "}":
            raise TemplateSyntaxError("'}' closes no field (write }} for a literal brace)", i)
        else:
            literal.append(c)
            i += 1
    if literal:
        parts.append("".join(literal))
    return Template(text, tuple(parts))


def param_fields(count: int) -> tuple[str, ...]:
    return tuple(f"${i}" for i in range(1, count + 1))


def param_values(params: Iterable[object], null_text: str) -> dict[str, str]:
    """The {$n} fields of a message: each parameter as it is sent (values.message_text)."""
    return {f"${i}": message_text(v, null_text) for i, v in enumerate(params, start=1)}
