"""The ``admission`` command line: replay, compare, plot, JSON, presets, and its errors."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from admission.cli import app

FIXTURE = Path(__file__).parent / "fixtures" / "rabbitmq-burst.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI reads ADMISSION_CONFIG / ADMISSION_PRESET like a deployment: not here."""
    monkeypatch.delenv("ADMISSION_CONFIG", raising=False)
    monkeypatch.delenv("ADMISSION_PRESET", raising=False)


def run(*args: str | Path) -> Result:
    return runner.invoke(app, [str(a) for a in args])


def assert_error(result: Result, *fragments: str) -> None:
    """Exit 2, one line on stderr naming the problem, no traceback, nothing on stdout."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("admission: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_the_console_script_is_registered() -> None:
    (script,) = entry_points(group="console_scripts", name="admission")
    assert script.value == "admission.cli:main"


def test_replay_prints_the_transitions_and_a_summary() -> None:
    result = run("replay", FIXTURE, "--preset", "balanced")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "preset balanced, 60 ticks of 5s from t=5" in out
    assert "sustained_pressure" in out
    assert "cooldown_elapsed" in out
    assert "messages_ready at or above 120 for 60s (sustained 60s)" in out
    assert "Seconds in each level (of 300s)" in out
    assert "queue files-new_file" in out
    assert "flaps per hour: 48 (queue transitions)" in out
    assert "fail-safe spans: none" in out


def test_replay_with_no_transition_says_so() -> None:
    result = run("replay", FIXTURE, "--preset", "aggressive")
    assert result.exit_code == 0, result.output
    assert "no transition: every level held" in result.stdout
    assert "flaps per hour: 0" in result.stdout


def test_json_schema_is_exact() -> None:
    result = run("replay", FIXTURE, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # ONE object, nothing else on stdout
    assert set(document) == {
        "preset",
        "source",
        "start_t",
        "poll_interval_seconds",
        "ticks",
        "duration_seconds",
        "transitions",
        "seconds_in_level",
        "class_seconds_in_level",
        "fail_safe_spans",
        "flaps_per_hour",
        "warnings",
    }
    assert document["preset"] == "balanced"
    assert (document["ticks"], document["duration_seconds"]) == (60, 300.0)
    for transition in document["transitions"]:
        assert set(transition) == {
            "at_seconds",
            "t",
            "scope",
            "name",
            "from_level",
            "to_level",
            "reason",
            "detail",
            "signal",
        }
    assert document["transitions"][0] == {
        "at_seconds": 95.0,
        "t": 100.0,
        "scope": "queue",
        "name": "files-new_file",
        "from_level": "normal",
        "to_level": "critical",
        "reason": "sustained_pressure",
        "detail": "messages_ready at or above 120 for 60s (sustained 60s)",
        "signal": 143.0,
    }
    assert len(document["transitions"]) == 8
    levels = {"normal", "warning", "critical", "fail_safe"}
    assert set(document["seconds_in_level"]) == {
        "files-new_file",
        "files-document_conversion_input",
        "titus-titus_input",
    }
    for seconds in document["seconds_in_level"].values():
        assert set(seconds) == levels
        assert sum(seconds.values()) == 300.0
    assert set(document["class_seconds_in_level"]) == {"standard", "expensive"}
    assert document["fail_safe_spans"] == []
    assert document["flaps_per_hour"] == 48.0
    assert document["warnings"] == []


def test_json_fail_safe_span_schema(tmp_path: Path) -> None:
    trace = tmp_path / "gap.csv"
    rows = [f"{t},q,1" for t in range(0, 61, 5) if t not in (20, 25, 30)]
    trace.write_text("t,queue,messages_ready\n" + "\n".join(rows) + "\n", encoding="utf-8")
    document = json.loads(run("replay", trace, "--json").stdout)
    (span,) = document["fail_safe_spans"]
    assert set(span) == {"queue", "start", "end", "reason", "ongoing"}
    assert (span["queue"], span["start"], span["end"], span["ongoing"]) == ("q", 30.0, 65.0, True)
    assert [t["to_level"] for t in document["transitions"] if t["scope"] == "queue"] == [
        "fail_safe"
    ]


def test_compare_ranks_every_preset() -> None:
    result = run("replay", FIXTURE, "--compare")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Presets ranked on this trace" in out
    assert out.index("aggressive ") < out.index("balanced ", out.index("ranked on"))
    assert "ranked by: fewest flaps per hour" in out
    document = json.loads(run("replay", FIXTURE, "--compare", "--json").stdout)
    ranking = document["comparison"]["ranking"]
    assert [(r["rank"], r["preset"]) for r in ranking] == [
        (1, "aggressive"),
        (2, "balanced"),
        (3, "conservative"),
    ]
    assert [r["flaps_per_hour"] for r in ranking] == [0.0, 48.0, 48.0]
    assert set(ranking[0]) == {
        "rank",
        "preset",
        "flaps_per_hour",
        "transitions",
        "fail_safe_seconds",
        "throttled_seconds",
        "first_escalation_seconds",
    }


def test_plot_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "replay.png"
    result = run("replay", FIXTURE, "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert f"wrote {out}" in result.stderr
    # With --json the notice stays off stdout, which is the JSON alone.
    out.unlink()
    result = run("replay", FIXTURE, "--plot", out, "--json", "--preset", "conservative")
    assert json.loads(result.stdout)["preset"] == "conservative"
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_config_file_adds_a_preset(tmp_path: Path) -> None:
    config = tmp_path / "admission.toml"
    config.write_text(
        'preset = "fast"\n'
        "[presets.fast]\n"
        'extends = "balanced"\n'
        "sustained_seconds = 5\n"
        '[presets.fast.queues."files-document_conversion_input"]\n'
        "warning_threshold = 0.5\n"
        "critical_threshold = 1\n",
        encoding="utf-8",
    )
    document = json.loads(run("replay", FIXTURE, "--config", config, "--json").stdout)
    assert document["preset"] == "fast"  # the file's preset is the default
    # conversion has 0 ready throughout: still normal.  new_file >= 120 at t=40, 5 s later: 45.
    first = document["transitions"][0]
    assert (first["t"], first["name"], first["to_level"]) == (45.0, "files-new_file", "critical")
    compared = json.loads(run("replay", FIXTURE, "-c", config, "--compare", "--json").stdout)
    assert {r["preset"] for r in compared["comparison"]["ranking"]} == {
        "conservative",
        "balanced",
        "aggressive",
        "fast",
    }
    listing = run("presets", "--config", config)
    assert listing.exit_code == 0, listing.output
    assert "fast (default)" in listing.stdout
    assert "0.5 / 1" in listing.stdout


def test_presets_table() -> None:
    result = run("presets")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for fragment in (
        "balanced (default)",
        "files-new_file",
        "titus-titus_input",
        "50 / 120",  # balanced on files-new_file and other queues
        "30 / 80",  # balanced on files-document_conversion_input
        "8 / 16",  # conservative on titus-titus_input
        "sustained",
        "cooldown",
        "2/1/1",  # aggressive's expensive parallelism normal/warning/critical
    ):
        assert fragment in out, fragment
    document = json.loads(run("presets", "--json").stdout)
    assert document["requested_preset"] == "balanced"
    balanced = document["presets"]["balanced"]
    assert balanced["queues"]["titus-titus_input"]["warning_threshold"] == 20
    assert balanced["default_queue"]["sustained_seconds"] == 60
    assert balanced["classes"]["standard"]["normal"]["parallelism"] == 3


# -- errors: one line, exit 2 ------------------------------------------------------


def test_missing_trace(tmp_path: Path) -> None:
    assert_error(run("replay", tmp_path / "nope.csv"), "nope.csv: no such file")


def test_bad_csv_names_the_line(tmp_path: Path) -> None:
    trace = tmp_path / "bad.csv"
    trace.write_text("t,queue,messages_ready\n5,q,1\n10,q,lots\n", encoding="utf-8")
    assert_error(run("replay", trace), "bad.csv:3:", "messages_ready='lots' is not a number")
    trace.write_text("t,queue,ready\n5,q,1\n", encoding="utf-8")
    assert_error(run("replay", trace), "bad.csv:1:", "lacks the column(s) messages_ready")


def test_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("poll_interval_seconds = \n", encoding="utf-8")
    assert_error(run("replay", FIXTURE, "--config", config), "bad.toml: not valid TOML")
    config.write_text("poll_interval_seconds = -5\n", encoding="utf-8")
    assert_error(run("replay", FIXTURE, "--config", config), "poll_interval_seconds=-5")
    config.write_text("[[queues]]\nname = 'q'\nwarning_threshold = 9\ncritical_threshold = 3\n")
    assert_error(run("presets", "--config", config), "critical_threshold=3")
    assert_error(run("replay", FIXTURE, "--config", tmp_path / "no.toml"), "no.toml: no such file")


def test_unknown_preset() -> None:
    assert_error(
        run("replay", FIXTURE, "--preset", "turbo"),
        "preset='turbo' is not a known preset (known: aggressive, balanced, conservative)",
    )


def test_unwritable_plot(tmp_path: Path) -> None:
    assert_error(
        run("replay", FIXTURE, "--plot", tmp_path / "no" / "dir" / "x.png"), "cannot write it"
    )
    assert_error(run("replay", FIXTURE, "--plot", tmp_path / "x.nope"), "Format 'nope'")
