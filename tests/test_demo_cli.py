"""``admission demo`` as a user runs it: Ctrl-C, bad options, and ``make demo`` from scratch."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from admission.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def demo(*args: str) -> Result:
    return runner.invoke(app, ["demo", *args])


def assert_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("admission: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--speed", "0"], ["--speed must be a finite number > 0, got 0.0"]),
        (["--speed", "inf"], ["--speed must be a finite number > 0"]),
        (["--duration", "-5"], ["--duration must be a finite number > 0, got -5.0"]),
        (["--management-url", "http://x:15672"], ["--management-url goes with --rabbitmq-url"]),
        (["--rabbitmq-url", "http://127.0.0.1"], ["--rabbitmq-url must be amqp://"]),
        (
            ["--rabbitmq-url", "amqp://guest:secret@127.0.0.1/prod"],
            ["leave the vhost out", "guest:***@"],
        ),
        (
            ["--rabbitmq-url", "amqp://127.0.0.1", "--management-url", "ftp://x"],
            ["--management-url must be http(s)://"],
        ),
    ],
)
def test_a_bad_option_is_one_line_naming_it(args: list[str], fragments: list[str]) -> None:
    result = demo(*args)
    assert_error(result, *fragments)
    assert "secret" not in result.output


def test_a_taken_port_is_named_before_anything_runs(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = demo("--port", str(port), "--output-dir", str(tmp_path / "out"))
    assert_error(result, f"--port {port}: cannot listen on 127.0.0.1: already in use")
    assert not (tmp_path / "out" / "summary.json").exists()


def test_ctrl_c_stops_it_cleanly_with_the_summary(tmp_path: Path) -> None:
    output = tmp_path / "out"
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from admission.cli import main; main()",
            "demo",
            "--speed",
            "60",
            "--view",
            "plain",
            "--no-plot",
            "--output-dir",
            str(output),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # Python turns SIGINT into KeyboardInterrupt only if it starts with the default
        # disposition (a background job of a non-interactive shell inherits "ignore").
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.startswith("t=") and " drain " in line:  # the drop is being worked on
                process.send_signal(signal.SIGINT)
                break
        rest, errors = process.communicate(timeout=60)
    finally:
        watchdog.cancel()
    printed = "".join(seen) + rest
    assert process.returncode == 130, printed + errors
    assert "Traceback" not in errors
    assert "admission demo interrupted" in printed
    assert "nothing lost" in printed
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is True
    assert summary["played_seconds"] < 600
    accounting = summary["accounting"]
    assert accounting["nothing_lost"] is True
    new_file = accounting["queues"][0]
    # Stopped mid-drain: work in flight went back to the queue, not lost.
    assert new_file["still_queued"] > 0
    assert new_file["published"] == new_file["processed"] + new_file["still_queued"]
    assert (output / "status.json").is_file()


@pytest.mark.skipif(
    os.environ.get("CI") != "true",
    reason="CI only (CI=true): copies the repository, builds a fresh venv and pip-installs "
    "every extra, which takes minutes and needs the package index",
)
def test_make_demo_sets_itself_up_in_a_clean_copy(tmp_path: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    copy = tmp_path / "repo"
    for raw in filter(None, listed):
        name = os.fsdecode(raw)
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is gone
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    assert not (copy / ".venv").exists()
    # Nothing of this checkout's virtualenv may leak into the copy's set-up.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(
        part for part in env.get("PATH", "").split(os.pathsep) if not part.startswith(str(ROOT))
    )
    result = subprocess.run(
        ["make", "demo", "DEMO_ARGS=--speed 400 --view plain"],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert (copy / ".venv" / "bin" / "admission").is_file()
    summary = json.loads((copy / "demo-output" / "summary.json").read_text(encoding="utf-8"))
    assert summary["interrupted"] is False
    assert summary["accounting"]["nothing_lost"] is True
    assert summary["levels_seen"][-1] == "normal"
    assert (copy / "demo-output" / "timeline.png").is_file()
