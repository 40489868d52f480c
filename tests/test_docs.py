"""The documentation is held to the code: the site builds strictly (a broken link or anchor
fails), the architecture page names every module, every plan example is valid, every command
example is one the command accepts, and the examples that run shipped plans print what they
show."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from conftest import ROOT, Cli, Database

from runner.cli import main
from runner.errors import PlanInvalid
from runner.plan.validate import load_plan, parse_plan

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
TEXTS = [ROOT / "README.md", *PAGES]


def _blocks(language: str) -> list[tuple[str, str]]:
    """(where, body) of every fenced block in that language, README and docs."""
    return [(where, body) for where, body, _ in _blocks_after(language)]


def _blocks_after(language: str) -> list[tuple[str, str, str]]:
    """(where, body, the paragraph's last line before it) of every block in that language."""
    found = []
    for path in TEXTS:
        text = path.read_text()
        for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found.append((f"{path.relative_to(ROOT)}:{line}", match.group(1), before))
    return found


def test_the_readme_is_one_screen_or_two() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    if importlib.util.find_spec("mkdocs") is None:
        if os.environ.get("CI"):
            pytest.fail("mkdocs is missing in CI (pip install -e '.[test]')")
        pytest.skip("mkdocs is not installed")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "architecture" / "index.html").is_file()


def test_the_site_build_fails_on_a_broken_anchor(tmp_path: Path) -> None:
    """The check above can fail: the same configuration over a page with a dead anchor."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed")
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\n[gone](vars.md#no-such-heading)\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no-such-heading" in done.stderr


def _architecture_modules() -> set[str]:
    """The module paths the architecture page's tree names, folders followed by indentation."""
    text = (DOCS / "architecture.md").read_text()
    tree = re.search(r"```text\nrunner/\n(.*?)```", text, re.S)
    assert tree, "the architecture page has no runner/ tree"
    named = set()
    folder = ""
    for line in tree.group(1).splitlines():
        entry = line.strip().split()[0] if line.strip() else ""
        depth = (len(line) - len(line.lstrip())) // 2
        if entry.endswith("/"):
            folder = entry
        elif entry.endswith(".py"):
            named.add(f"{folder}{entry}" if depth > 1 else entry)
    return named


def test_the_architecture_page_names_every_module() -> None:
    modules = {str(p.relative_to(ROOT / "runner")) for p in (ROOT / "runner").rglob("*.py")}
    modules -= {p for p in modules if p.endswith("/__init__.py")}
    assert _architecture_modules() == modules


def _plan_text(body: str) -> str | None:
    """A plan to validate from an example: the plan itself, or its steps (a list) or its top
    level (with steps) completed into one; None for YAML that is not a plan (a workflow)."""
    if re.search(r"^sqlplan: 1$", body, re.M):
        return body
    if body.lstrip().startswith("- "):
        indented = "".join(f"  {line}\n" for line in body.splitlines())
        return f"sqlplan: 1\nname: example\nsteps:\n{indented}"
    if re.search(r"^steps:", body, re.M) or re.search(r"^vars:", body, re.M):
        return f"sqlplan: 1\nname: example\n{body}"
    return None


def _excerpt_of(before: str) -> str | None:
    """The shipped plan an example is an excerpt of, named just before it: `plans/....yaml`:"""
    match = re.fullmatch(r"`(plans/[\w/.-]+\.ya?ml)`:", before.strip())
    return match.group(1) if match else None


PLAN_EXAMPLES = [
    (where, text)
    for where, body, before in _blocks_after("yaml")
    if (text := _plan_text(body)) and not _excerpt_of(before)
]
EXCERPTS = [
    (where, body, shipped)
    for where, body, before in _blocks_after("yaml")
    if (shipped := _excerpt_of(before))
]


def test_the_docs_show_plans() -> None:
    assert len(PLAN_EXAMPLES) + len(EXCERPTS) >= 8


@pytest.mark.parametrize(("where", "text"), PLAN_EXAMPLES, ids=[w for w, _ in PLAN_EXAMPLES])
def test_every_plan_example_is_valid(where: str, text: str, tmp_path: Path) -> None:
    plan = tmp_path / "example.yaml"
    plan.write_text(text)
    for name, fields in re.findall(r"file: (\S+).*\n\s*fields: \[(.*?)\]", text):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(fields.replace(" ", "") + "\n")  # the file it reads
    try:
        parse_plan(text, str(plan))
    except PlanInvalid as e:
        pytest.fail(f"{where}: " + "; ".join(str(d) for d in e.diagnostics))


@pytest.mark.parametrize(("where", "body", "shipped"), EXCERPTS, ids=[w for w, _, _ in EXCERPTS])
def test_every_excerpt_is_in_its_shipped_plan_which_is_valid(
    where: str, body: str, shipped: str
) -> None:
    """Steps shown from a shipped plan are its steps (comments aside; steps may be left out)."""
    steps = yaml.safe_load((ROOT / shipped).read_text())["steps"]
    shown = yaml.safe_load(body)
    assert isinstance(shown, list), where
    for step in shown:
        assert step in steps, f"{where}: a step {shipped} does not have (any more): {step}"
    load_plan(ROOT / shipped)


def test_other_yaml_examples_are_yaml() -> None:
    others = [(w, b) for w, b in _blocks("yaml") if _plan_text(b) is None]
    for where, body in others:
        assert isinstance(yaml.safe_load(body), dict), where


def _commands() -> list[tuple[str, list[str]]]:
    """Every `sqlplan ...` command the README and the docs show, as arguments."""
    found = []
    for language in ("sh", "console"):
        for where, body in _blocks(language):
            for shown in body.splitlines():
                for part in shown.removeprefix("$ ").split("&&"):
                    words = shlex.split(part, comments=True)
                    for at, word in enumerate(words):
                        if word in (">", ">>", "|", "2>"):  # what the shell does with the output
                            words = words[:at]
                            break
                    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
                        words.pop(0)  # REGION=us sqlplan ...
                    if words[:1] == ["sqlplan"]:
                        found.append((where, words[1:]))
    return found


COMMANDS = _commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 8


@pytest.mark.parametrize(("where", "args"), COMMANDS, ids=[" ".join(a) for _, a in COMMANDS])
def test_every_command_example_is_one_the_command_takes(where: str, args: list[str]) -> None:
    """Its command exists and takes those options and that many arguments (values are the
    example's own: files a reader would have)."""
    ctx = main.make_context("sqlplan", ["--help"], resilient_parsing=True)
    group: click.Command = main
    rest = list(args)
    while isinstance(group, click.Group):
        name, command, rest = group.resolve_command(ctx, rest)
        assert command is not None, f"{where}: no command {name}"
        group = command
    sub = click.Context(group, info_name=group.name, parent=ctx)
    parser = group.make_parser(sub)
    _, extra, _ = parser.parse_args(rest)
    assert extra == [] or any(
        isinstance(p, click.Argument) and p.nargs == -1 for p in group.params
    ), f"{where}: too many arguments {extra}"
    taken = {name for p in group.params for name in p.opts}
    for word in rest:
        if word.startswith("--"):
            assert word.split("=")[0] in taken, f"{where}: {group.name} has no {word}"


def _shown(body: str) -> list[tuple[list[str], list[str]]]:
    """(command, lines it shows) of each `$ sqlplan` example."""
    found: list[tuple[list[str], list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((shlex.split(line[2:]), []))
        elif found and line != "...":
            found[-1][1].append(line)
    return found


def _pattern(line: str) -> re.Pattern[str]:
    """A shown line, with what differs from run to run (times, fingerprints, dates) open."""
    text = re.escape(line)
    text = re.sub(r"\\?\d{4}\\-\d\d\\-\d\dT[\d:]+Z", r".+", text)
    text = re.sub(r"[0-9a-f]{16}", "[0-9a-f]{16}", text)
    text = re.sub(r"\d+(\\\.\d+)?\\ ms", r"[0-9.]+\\ ms", text)
    text = text.replace(r"\ by\ app", r"\ by\ \S+")
    return re.compile(text)


RUNNABLE = [
    (where, command, lines)
    for where, body in _blocks("console")
    for command, lines in _shown(body)
    if command and any((ROOT / w).exists() and w.startswith("plans/") for w in command)
]


@pytest.mark.parametrize(
    ("where", "command", "lines"), RUNNABLE, ids=[" ".join(c) for _, c, _ in RUNNABLE]
)
def test_examples_on_shipped_plans_print_what_they_show(
    where: str, command: list[str], lines: list[str], cli: Cli, database: Database
) -> None:
    shutil.copytree(ROOT / "plans", cli.cwd / "plans")
    env = {"DATABASE_URL": database.url}
    while re.fullmatch(r"[A-Z_]+=.*", command[0]):
        name, _, value = command.pop(0).partition("=")
        env[name] = value
    assert command[0] == "sqlplan"
    if command[1] == "status":  # it shows a history with the first plan applied
        first = sorted((cli.cwd / command[2]).glob("*.yaml"))[0]
        assert cli("run", str(first.relative_to(cli.cwd)), env=env).exit_code == 0
    result = cli(*command[1:], env=env)
    assert result.exit_code == 0, f"{where}: {result.stderr}"
    printed = (result.stdout + result.stderr).splitlines()
    for line in lines:
        pattern = _pattern(line)
        assert any(pattern.fullmatch(p) for p in printed), f"{where}: {line!r} not in {printed}"
