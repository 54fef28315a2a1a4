"""Every Python block in README.md and docs/ runs, so the docs cannot rot.

A block that defines pytest tests is run by pytest (it shows users how to test
their own workers); any other block runs as a script.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from admission.policy import parse_config

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
TOML_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(pattern: re.Pattern[str]) -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for number, match in enumerate(pattern.finditer(text), start=1):
            found.append((f"{document.relative_to(ROOT)}#{number}", match.group(1)))
    return found


BLOCKS = _blocks(BLOCK)
TOML_BLOCKS = _blocks(TOML_BLOCK)


def test_the_docs_have_python_blocks() -> None:
    assert any(name.startswith("README.md") for name, _ in BLOCKS)


@pytest.mark.parametrize(("name", "code"), BLOCKS, ids=[name for name, _ in BLOCKS])
def test_block_runs(name: str, code: str, tmp_path: Path) -> None:
    is_test = re.search(r"^(async )?def test_", code, re.MULTILINE) is not None
    script = tmp_path / ("test_block.py" if is_test else "block.py")
    script.write_text(code, encoding="utf-8")
    command = [sys.executable, str(script)]
    if is_test:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize(("name", "text"), TOML_BLOCKS, ids=[name for name, _ in TOML_BLOCKS])
def test_toml_block_is_a_valid_configuration(name: str, text: str) -> None:
    config = parse_config(tomllib.loads(text))
    assert config.presets, name
