"""Static analysis of the contracts in the suite: slither (no unexplained high or medium finding) and solhint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tracer.chain.compiler import NODE_ADAPTER
from tracer.config import PROJECT_ROOT

TRIAGE = PROJECT_ROOT / "contracts" / "slither-triage.md"
SOLHINT = PROJECT_ROOT / "node_modules" / ".bin" / "solhint"


def _triaged() -> set[tuple[str, str]]:
    rows = re.findall(r"^\| ([a-z-]+) \| ([A-Za-z0-9_.]+) \|", TRIAGE.read_text(encoding="utf-8"), re.MULTILINE)
    return {(check, where) for check, where in rows if check != "check"}


def _slither_binary() -> Path:
    path = Path(sys.executable).parent / "slither"
    if not path.exists():
        pytest.fail("slither is not installed in the venv: run scripts/test (it installs slither-analyzer)")
    return path


@pytest.fixture(scope="module")
def slither_findings(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    output = tmp_path_factory.mktemp("slither") / "slither.json"
    subprocess.run(
        [
            str(_slither_binary()),
            "contracts",
            "--solc",
            str(NODE_ADAPTER),
            "--solc-standard-json",
            "--solc-remaps",
            "@openzeppelin/=node_modules/@openzeppelin/",
            "--exclude-informational",
            "--exclude-low",
            "--json",
            str(output),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,  # slither exits non-zero when it finds anything; the JSON says whether it ran
    )
    report = json.loads(output.read_text(encoding="utf-8"))
    assert report["success"], report.get("error")
    return report["results"].get("detectors", [])


def test_slither_leaves_no_unexplained_high_or_medium_finding(slither_findings):
    triaged = _triaged()
    unexplained = [
        (finding["check"], finding["description"].split("(")[0], finding["impact"])
        for finding in slither_findings
        if (finding["check"], finding["description"].split("(")[0]) not in triaged
    ]
    assert unexplained == [], f"triage these in {TRIAGE.name} or fix them: {unexplained}"


def test_slither_triage_lists_no_stale_finding(slither_findings):
    found = {(finding["check"], finding["description"].split("(")[0]) for finding in slither_findings}
    assert _triaged() - found == set()


def test_solhint_is_clean():
    if not SOLHINT.exists() or shutil.which("node") is None:
        pytest.fail("solhint is not installed: run `npm install` at the project root")
    result = subprocess.run(
        [str(SOLHINT), "--max-warnings", "0", "contracts/**/*.sol"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
