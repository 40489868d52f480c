"""The quickstart's eight runs, through the installed `sqlplan` command, byte for byte."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Server

from runner.plan.validate import load_plan

EXPECTED = ROOT.parent / "shared" / "acceptance" / "expected"


def _sqlplan() -> str:
    beside = Path(sys.executable).parent / "sqlplan"
    found = str(beside) if beside.exists() else shutil.which("sqlplan")
    assert found, "the sqlplan command is not installed (pip install -e .)"
    return found


def test_quickstart_outputs_match_the_guide(server: Server, tmp_path: Path) -> None:
    if not EXPECTED.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{EXPECTED} is missing in CI")
        pytest.skip(f"{EXPECTED} not found (the shared acceptance files sit beside the project)")
    shutil.copytree(ROOT / "plans", tmp_path / "plans")
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["SQLPLAN_DATA_DIR"] = str(server.state_dir)
    runs = sorted(EXPECTED.glob("*.out"))
    assert len(runs) == 8
    for expected in runs:
        plan = f"plans/{expected.stem.split('-', 1)[1]}.yaml"
        result = subprocess.run(
            [_sqlplan(), "run", plan],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        fingerprint = load_plan(tmp_path / plan).short_fingerprint
        line = f"sqlplan: plan {expected.stem.split('-', 1)[1]}, fingerprint {fingerprint}\n"
        assert (result.returncode, result.stderr.decode()) == (0, line), expected.name
        assert result.stdout == expected.read_bytes(), expected.name
