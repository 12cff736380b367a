"""The layers hold (pyproject's [tool.importlinter]), and a wrong-way import breaks them.

`make lint` runs the same contracts; these tests show they bite: a copy of the package
with one import the wrong way is refused by the real configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "matih_ml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the project's contracts, on the package found under ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    done = lint_imports(ROOT / "src", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken"),
    [
        # A lower layer reaching up to the composition root.
        ("store/wrong_way.py", "import matih_ml.services\n", "Layers"),
        # A domain package reaching up to the REST API.
        ("registry/wrong_way.py", "from matih_ml.api import app\n", "Layers"),
        # Two independent domain packages, one importing the other.
        ("tracking/wrong_way.py", "from matih_ml.monitoring import stats\n", "Layers"),
        # The core importing a domain package (appended to validation itself).
        ("validation.py", "import matih_ml.runtime.files\n", "Layers"),
        # The HTTP client carrying the server with it.
        ("client/wrong_way.py", "import mlflow\n", "The HTTP client"),
        ("contracts/wrong_way.py", "from matih_ml.registry import service\n", "The HTTP client"),
    ],
)
def test_a_wrong_way_import_is_refused(
    tmp_path: Path, module: str, source: str, broken: str
) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        PACKAGE, src / "matih_ml", ignore=shutil.ignore_patterns("__pycache__", "static")
    )
    target = src / "matih_ml" / module
    target.write_text((target.read_text() if target.exists() else "") + source)
    done = lint_imports(src, tmp_path)
    assert done.returncode != 0, done.stdout
    assert f"{broken}" in done.stdout and "BROKEN" in done.stdout, done.stdout
