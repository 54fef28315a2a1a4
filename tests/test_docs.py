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


CONSOLE_BLOCK = re.compile(r"^```console\n(.*?)^```", re.MULTILINE | re.DOTALL)
MAKEFILE_TARGETS = set(
    re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)
)


def _commands(tool: str) -> list[tuple[str, str]]:
    """Every ``tool ...`` line of the console blocks (comments and continuations dropped)."""
    found = []
    for name, block in _blocks(CONSOLE_BLOCK):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith(f"{tool} "):
                found.append((name, command))
    return found


ADMISSION_LINES = _commands("admission")
MAKE_LINES = _commands("make")


def test_the_docs_show_commands() -> None:
    assert ADMISSION_LINES
    assert MAKE_LINES


@pytest.mark.parametrize(
    ("name", "command"), ADMISSION_LINES, ids=[f"{n}:{c}" for n, c in ADMISSION_LINES]
)
def test_a_shown_admission_command_and_its_options_exist(name: str, command: str) -> None:
    from typer.testing import CliRunner

    from admission.cli import app

    words = command.split()[1:]
    subcommand = words[0]
    result = CliRunner().invoke(app, [subcommand, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, f"{name}: `admission {subcommand}` is not a command"
    for option in (w.split("=", 1)[0] for w in words[1:] if w.startswith("--")):
        assert option in result.output, f"{name}: `admission {subcommand}` has no {option}"


@pytest.mark.parametrize(("name", "command"), MAKE_LINES, ids=[f"{n}:{c}" for n, c in MAKE_LINES])
def test_a_shown_make_target_exists(name: str, command: str) -> None:
    targets = [w for w in command.split()[1:] if "=" not in w and not w.startswith("-")]
    for target in targets:
        assert target in MAKEFILE_TARGETS, f"{name}: the Makefile has no target {target!r}"
