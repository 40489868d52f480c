"""Files that are not what they claim: a plan or a rows_from that is a FIFO, a device or a
directory, names longer than the system allows. Each gets a diagnostic at its position and a
documented exit code; nothing blocks, nothing reads forever."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import Cli

PLAN = """\
sqlplan: 1
name: hostile
steps:
  - bulk_insert: INSERT INTO t (a) VALUES ($1)
    rows_from: {{file: {file}, format: csv}}
"""


def _make(kind: str, directory: Path) -> str:
    if kind == "fifo":
        os.mkfifo(directory / "data.csv")
    elif kind == "directory":
        (directory / "data.csv").mkdir()
    else:
        return "/dev/zero"
    return "data.csv"


@pytest.mark.parametrize(
    ("kind", "what"),
    [
        ("fifo", "is a FIFO (named pipe), not a regular file"),
        ("device", "is a character device, not a regular file"),
        ("directory", "is a directory, not a regular file"),
    ],
)
def test_rows_from_must_be_a_regular_file(cli: Cli, kind: str, what: str) -> None:
    name = _make(kind, cli.cwd)
    cli.write("plan.yaml", PLAN.format(file=name))
    for command in ("check", "run", "show"):
        result = cli(command, "plan.yaml", env={"DATABASE_URL": "postgresql://x@127.0.0.1:9/x"})
        diagnostic = f"plan.yaml:5:23: error: '{name}' {what} [rows-from]"
        assert result.exit_code == (1 if command == "check" else 3)
        assert diagnostic in (result.stdout + result.stderr)


def test_a_file_name_too_long_for_the_system(cli: Cli) -> None:
    name = "a" * 10_000 + ".csv"
    cli.write("plan.yaml", PLAN.format(file=name))
    result = cli("check", "plan.yaml")
    assert result.exit_code == 1
    assert result.stdout.startswith("plan.yaml:5:23: error: cannot read 'aaaa")
    assert result.stdout.endswith("…': File name too long [rows-from]\n")
    assert len(result.stdout) < 300


@pytest.mark.parametrize("spelling", ['"a\\0b.csv"', '"\\0"', '"data.csv\\0.txt"'])
def test_a_file_name_with_a_nul_character(cli: Cli, spelling: str) -> None:
    """YAML can spell a NUL; no file system can hold one: a diagnostic, not a crash, on every
    command that reads the plan."""
    (cli.cwd / "a").write_text("1\n")
    cli.write("plan.yaml", PLAN.format(file=spelling))
    for command in ("check", "run", "show"):
        result = cli(command, "plan.yaml", env={"DATABASE_URL": "postgresql://x@127.0.0.1:9/x"})
        assert result.exit_code == (1 if command == "check" else 3), result.stdout + result.stderr
        output = result.stdout + result.stderr
        assert "plan.yaml:5:23: error: " in output
        assert "holds a NUL character, which no file name can [rows-from]" in output
        assert "Traceback" not in output


@pytest.mark.parametrize("kind", ["fifo", "device", "directory-in-a-list"])
def test_a_plan_that_is_not_a_regular_file(cli: Cli, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(cli.cwd / "plan.yaml")
        args, where = ["check", "plan.yaml"], "plan.yaml"
        what = "a FIFO (named pipe)"
    elif kind == "device":
        args, where, what = ["check", "/dev/zero"], "/dev/zero", "a character device"
    else:
        os.mkfifo(cli.cwd / "pipe.yaml")
        cli.write("good.yaml", "sqlplan: 1\nname: good\nsteps:\n  - batch: SELECT 1\n")
        args, where, what = ["check", "."], "./pipe.yaml", "a FIFO (named pipe)"
    result = cli(*args)
    assert result.exit_code == 1
    assert (
        result.stdout
        == f"{where}:1:1: error: cannot read the plan: it is {what}, not a regular file [io]\n"
    )


def test_run_and_show_refuse_a_device_as_the_plan(cli: Cli) -> None:
    for command in ("run", "show"):
        result = cli(command, "/dev/zero")
        assert result.exit_code == 3
        assert result.stderr.startswith(
            "/dev/zero:1:1: error: cannot read the plan: it is a character device, not a regular file [io]\n"
        )


def test_an_unreadable_rows_from_file(cli: Cli, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    (cli.cwd / "data.csv").write_text("a\n1\n")
    (cli.cwd / "data.csv").chmod(0)
    cli.write("plan.yaml", PLAN.format(file="data.csv"))
    result = cli("check", "plan.yaml")
    assert (
        result.stdout
        == "plan.yaml:5:23: error: cannot read 'data.csv': Permission denied [rows-from]\n"
    )
