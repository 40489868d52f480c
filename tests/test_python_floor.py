"""Nothing depends on a regex feature newer than the oldest Python requires-python admits: no
atomic group and no possessive quantifier (Python 3.11; CPython before 3.11.5 mis-matches
some). CI also runs the fast tier on that Python (.ci/run), where such a pattern would not
even compile."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

_RE_CALLS = {
    "compile",
    "match",
    "fullmatch",
    "search",
    "sub",
    "subn",
    "split",
    "findall",
    "finditer",
}
_CLASS = re.compile(r"\[(?:\\.|[^\]\\])*\]")  # a character class: its * and + are literal
_NEWER = re.compile(r"\(\?>|(?<!\\)[*+?}]\+")


def _patterns(path: Path) -> list[tuple[int, str]]:
    """(line, the literal text) of every pattern given to a `re` function in the module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        if not (
            isinstance(func, ast.Attribute)
            and func.attr in _RE_CALLS
            and isinstance(func.value, ast.Name)
            and func.value.id == "re"
        ):
            continue
        first = node.args[0]
        parts = [first] if isinstance(first, ast.Constant) else getattr(first, "values", [])
        text = "".join(
            p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)
        )
        found.append((node.lineno, text))
    return found


MODULES = sorted((ROOT / "runner").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_regex_feature_newer_than_the_floor(path: Path) -> None:
    newer = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for line, text in _patterns(path)
        if _NEWER.search(_CLASS.sub("C", text))
    ]
    assert newer == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text('import re\nA = re.compile(r"(?>a|b)*+")\nB = re.compile(r"[*+]x")\n')
    texts = [t for _, t in _patterns(probe)]
    assert [bool(_NEWER.search(_CLASS.sub("C", t))) for t in texts] == [True, False]
