"""The tooling gate (STYLE.md "Tooling"): ruff lint and format, mypy strict, as part of the suite.

The tools run from this interpreter's environment (``sys.executable -m ...``), so a fresh clone set up
by ``scripts/test`` checks with the versions its ``test`` extra installed. mypy reads its settings
(strict, the packages, the overrides) from ``pyproject.toml``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ["tracer", "api", "tests", "scripts"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def _report(result: subprocess.CompletedProcess[str]) -> str:
    return f"{' '.join(result.args[2:])} exited {result.returncode}:\n{result.stdout}{result.stderr}"


def test_ruff_check_finds_no_lint_errors() -> None:
    result = _run("ruff", "check", *PATHS)
    assert result.returncode == 0, _report(result)


def test_ruff_format_leaves_every_file_unchanged() -> None:
    result = _run("ruff", "format", "--check", *PATHS)
    assert result.returncode == 0, _report(result)


def test_mypy_strict_finds_no_type_errors() -> None:
    result = _run("mypy")
    assert result.returncode == 0, _report(result)
