"""SQL as PostgreSQL's parser reads it (placeholders, statements, errors) and the message templates."""

from __future__ import annotations

import pytest

from runner.plan import sqlparse, templates
from runner.plan.values import Number


@pytest.mark.parametrize(
    ("sql", "numbers"),
    [
        ("SELECT $1, $2", [1, 2]),
        ("SELECT '$1', $2", [2]),
        ('SELECT "$1", $2', [2]),
        ("SELECT $1 -- $2\n, $3", [1, 3]),
        ("SELECT /* $1 /* $2 */ $3 */ $4", [4]),
        ("SELECT $$ $1 $$, $fn$ $2 $fn$, $3", [3]),
        ("SELECT E'\\' $1', $2", [2]),
        ("SELECT 'it''s $1', $2", [2]),
        ("SELECT a$1 FROM t", []),
        ("SELECT $10", [10]),
    ],
)
def test_placeholders_outside_literals(sql: str, numbers: list[int]) -> None:
    assert [p.number for p in sqlparse.parse(sql).placeholders] == numbers


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; SELECT 2", 2),
        ("SELECT ';'; -- ; \n", 1),
        ("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; SELECT 2; $$ LANGUAGE sql;", 1),
        ("-- nothing\n/* at all */", 0),
        (";;", 0),
    ],
)
def test_statement_count(sql: str, count: int) -> None:
    assert len(sqlparse.parse(sql).statements) == count


def test_template_fields_and_escapes() -> None:
    template = templates.parse("ID: {id}, {{literal}} {$1}")
    assert [(f.name, f.offset) for f in template.fields] == [("id", 4), ("$1", 22)]
    assert template.render({"id": "7", "$1": "x"}) == "ID: 7, {literal} x"


@pytest.mark.parametrize(
    ("text", "offset", "message"),
    [
        ("a {b", 2, "never closed"),
        ("a {b {c}", 2, "never closed"),
        ("a } b", 2, "closes no field"),
        ("a {} b", 2, "empty field"),
    ],
)
def test_template_syntax_errors(text: str, offset: int, message: str) -> None:
    with pytest.raises(templates.TemplateSyntaxError, match=message) as raised:
        templates.parse(text)
    assert raised.value.offset == offset


def test_templates_cannot_reach_attributes_or_code() -> None:
    template = templates.parse("{x.__class__} {x[0]} {x!r:>10}")
    assert [f.name for f in template.fields] == ["x.__class__", "x[0]", "x!r:>10"]
    with pytest.raises(KeyError):
        template.render({"x": "value"})


def test_parameters_read_in_messages_as_they_are_sent() -> None:
    values = (None, True, False, 3, Number("1.50"), "s", [1, None], {"a": Number("1e3")})
    assert list(templates.param_values(values, "NULL").values()) == [
        "NULL", "true", "false", "3", "1.50", "s", "{1,NULL}", '{"a": 1e3}',
    ]  # fmt: skip


def test_offsets_are_characters_even_after_non_ascii_text() -> None:
    sql = "SELECT 'éé', $2 FROM t WHERE a = $1;\n  SELECT 'ü' AS x"
    parsed = sqlparse.parse(sql)
    assert [(p.number, p.offset) for p in parsed.placeholders] == [(2, 13), (1, 33)]
    assert [s.offset for s in parsed.statements] == [0, 39]
    assert parsed.statements[1].text == "SELECT 'ü' AS x"
    with pytest.raises(sqlparse.SqlSyntaxError) as raised:
        sqlparse.parse("SELECT 'é' AS a FORM t")
    assert raised.value.offset == 16  # a character index, though é takes two bytes
    assert str(raised.value) == 'syntax error at or near "FORM"'
