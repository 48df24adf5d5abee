"""docs/testing.md, run as it stands: each code block whose first line names a file
(``# myapp.py``) is written to that file, and pytest runs the tests among them in a
process of their own, as a user's test run would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "docs" / "testing.md"
BLOCK = re.compile(r"^```[a-z]*\n# ([\w.]+)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
RUN_LIMIT = 120  # seconds: a hung teardown fails the test instead of blocking the suite


def recipe_files() -> dict[str, str]:
    files = {name: body for name, body in BLOCK.findall(RECIPE.read_text())}
    assert {"myapp.py", "conftest.py", "test_myapp.py", "pytest.ini"} <= files.keys()
    return files


def test_the_documented_recipe_passes(tmp_path: Path) -> None:
    files = recipe_files()
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    expected = sum(body.count("\nasync def test_") for body in files.values())
    parametrized = 2  # test_factory.py's fixture has two params: each test runs twice
    expected += sum(body.count("\nasync def test_") for name, body in files.items()
                    if name == "test_factory.py") * (parametrized - 1)

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=RUN_LIMIT)

    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(rf"\b{expected} passed\b", done.stdout), done.stdout
    assert "TimeoutError" not in done.stdout + done.stderr
