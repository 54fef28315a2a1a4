"""The ``admission`` command line (the ``cli`` extra: typer and rich).

- ``admission replay TRACE.csv [--preset NAME] [--config FILE] [--compare]
  [--plot OUT.png] [--json]``: what a preset would have done on a recorded trace
  (see :mod:`admission.simulate` for the rules of virtual time);
- ``admission presets [--config FILE] [--json]``: the presets and their numbers;
- ``admission status --url URL [--json]``: a running service's status
  (:mod:`admission.cli_status`).

The configuration is read as a deployment reads it (:func:`load_config`):
``--config FILE``, else ``ADMISSION_CONFIG``; ``ADMISSION_PRESET`` names the
default preset and ``--preset`` overrides it.  Every error (a missing or bad
trace, a bad configuration, an unknown preset, an unwritable plot) is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from admission.cli_status import status_command
from admission.demo.command import demo_command
from admission.errors import AdmissionError
from admission.policy.config import Preset
from admission.policy.levels import Level
from admission.policy.loader import PolicyConfig, load_config
from admission.simulate import LEVELS, Comparison, ReplayResult, compare, load_trace, replay

__all__ = ["app", "main"]

EXIT_ERROR = 2

app = typer.Typer(
    name="admission",
    help="Adaptive admission control: replay traces through presets, show the presets, "
    "read a running service's status.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The configuration TOML (default: $ADMISSION_CONFIG, else the built-in presets).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead.")]


def main() -> None:
    """The console script ``admission``."""
    app(prog_name="admission")


# -- replay ---------------------------------------------------------------------


@app.command("replay")
def replay_command(
    trace: Annotated[
        Path,
        typer.Argument(
            metavar="TRACE.csv",
            help="A recorded trace: t,queue,messages_ready,messages_unacknowledged,"
            "consumers,publish_rate,deliver_get_rate,ack_rate.",
            show_default=False,
        ),
    ],
    preset: Annotated[
        str | None,
        typer.Option(
            "--preset",
            "-p",
            help="The preset to replay (default: the configuration's, balanced).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    compare_all: Annotated[
        bool, typer.Option("--compare", help="Replay every preset and rank them.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="OUT.png",
            help="Draw queue depth, thresholds and levels to this image (needs matplotlib).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Replay a recorded queue trace through a preset and show what it would have done."""
    with _errors():
        policy = _config(config)
        loaded = load_trace(trace)
        result = replay(loaded, preset=preset, config=policy)
        ranking = compare(loaded, config=policy) if compare_all else None
        if plot is not None:
            _plot(result, plot)
    if as_json:
        document: dict[str, Any] = result.to_dict()
        if ranking is not None:
            document["comparison"] = ranking.to_dict()
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    console = _console()
    _print_transitions(console, result)
    _print_summary(console, result)
    if ranking is not None:
        _print_ranking(console, ranking)


def _plot(result: ReplayResult, path: Path) -> None:
    try:
        from admission.plot import plot_replay

        plot_replay(result, path)
    except ImportError as exc:
        _fail(f"--plot needs matplotlib: pip install 'admission[plot]' ({exc})")
    except OSError as exc:
        _fail(f"--plot {path}: cannot write it ({exc.strerror or exc})")
    except ValueError as exc:
        _fail(f"--plot {path}: {exc}")
    print(f"wrote {path}", file=sys.stderr)


def _print_transitions(console: Console, result: ReplayResult) -> None:
    title = (
        f"{escape(result.source)}: preset {result.preset}, {result.ticks} ticks of "
        f"{result.poll_interval_seconds:g}s from t={result.start_t:g}"
    )
    table = Table(title=title, title_justify="left")
    for column in ("at (s)", "t", "scope", "name", "from", "to", "reason", "detail"):
        table.add_column(column, justify="right" if column in ("at (s)", "t") else "left")
    for tr in result.transitions:
        table.add_row(
            f"{tr.at_seconds:g}",
            f"{tr.t:g}",
            tr.scope,
            escape(tr.name),
            tr.from_level,
            tr.to_level,
            tr.reason,
            escape(tr.detail),
        )
    if not result.transitions:
        table.add_row("-", "-", "-", "-", "-", "-", "-", "no transition: every level held")
    console.print(table)


def _print_summary(console: Console, result: ReplayResult) -> None:
    table = Table(
        title=f"Seconds in each level (of {result.duration_seconds:g}s)", title_justify="left"
    )
    table.add_column("queue or class")
    for level in LEVELS:
        table.add_column(level, justify="right")
    table.add_column("transitions", justify="right")
    counts: dict[str, int] = {}
    for tr in result.transitions:
        counts[tr.name] = counts.get(tr.name, 0) + 1
    for scope, seconds in (
        ("queue", result.seconds_in_level),
        ("class", result.class_seconds_in_level),
    ):
        for name, by_level in seconds.items():
            cells = [f"{by_level[level]:g}" for level in LEVELS]
            table.add_row(f"{scope} {escape(name)}", *cells, str(counts.get(name, 0)))
    console.print(table)
    console.print(f"flaps per hour: {result.flaps_per_hour:.4g} (queue transitions)")
    if result.fail_safe_spans:
        for span in result.fail_safe_spans:
            end = "end of trace" if span.ongoing else f"{span.end:g}s"
            console.print(
                f"fail-safe: {escape(span.queue)} from {span.start:g}s to {end}: "
                f"{escape(span.reason)}"
            )
    else:
        console.print("fail-safe spans: none")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def _print_ranking(console: Console, comparison: Comparison) -> None:
    table = Table(title="Presets ranked on this trace", title_justify="left")
    for column in (
        "rank",
        "preset",
        "flaps/h",
        "transitions",
        "fail-safe s",
        "throttled s",
        "first escalation s",
    ):
        table.add_column(column, justify="left" if column == "preset" else "right")
    for score in comparison.ranking:
        first = score.first_escalation_seconds
        table.add_row(
            str(score.rank),
            escape(score.preset),
            f"{score.flaps_per_hour:.4g}",
            str(score.transitions),
            f"{score.fail_safe_seconds:g}",
            f"{score.throttled_seconds:g}",
            "-" if first is None else f"{first:g}",
        )
    console.print(table)
    console.print(f"ranked by: {escape(comparison.ranked_by)}")


# -- presets --------------------------------------------------------------------


@app.command("presets")
def presets_command(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """Show every preset: thresholds per queue, windows, class parallelism."""
    with _errors():
        policy = _config(config)
    presets = policy.presets
    if as_json:
        document = {
            "requested_preset": policy.requested_preset,
            "presets": {name: p.model_dump(mode="json") for name, p in presets.items()},
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    queues = sorted({q for p in presets.values() for q in p.queues})
    classes = list(dict.fromkeys(c for p in presets.values() for c in p.classes))
    thresholds = Table(
        title="Thresholds: warning / critical on each queue's signal (messages_ready unless noted)",
        title_justify="left",
    )
    windows = Table(
        title="Windows (s) and workload-class parallelism (normal/warning/critical)",
        title_justify="left",
    )
    thresholds.add_column("preset", no_wrap=True)
    for queue in [*queues, "other queues"]:
        thresholds.add_column(escape(queue), justify="right", no_wrap=True)
    windows.add_column("preset", no_wrap=True)
    for column in ("sustained", "cooldown", "exit ratio", "stale after", "failures", "recovery"):
        windows.add_column(column, justify="right")
    for name in classes:
        windows.add_column(escape(name), justify="right")
    for name, preset in presets.items():
        label = f"{escape(name)}{' (default)' if name == policy.requested_preset else ''}"
        default = preset.default_queue
        other = _thresholds(default.warning_threshold, default.critical_threshold, default.signal)
        thresholds.add_row(label, *(_queue_cell(preset, queue) for queue in queues), other)
        windows.add_row(
            label,
            f"{default.sustained_seconds:g}",
            f"{default.cooldown_seconds:g}",
            f"{default.exit_ratio:g}",
            f"{default.stale_after_seconds:g}",
            str(default.failure_threshold),
            f"{default.recovery_seconds:g}",
            *(_parallelism(preset, c) for c in classes),
        )
    console = _console()
    console.print(thresholds)
    console.print(windows)
    for name, preset in presets.items():
        if preset.description:
            console.print(f"{escape(name)}: {escape(preset.description)}")


def _thresholds(warning: float, critical: float, signal: str) -> str:
    suffix = "" if signal == "messages_ready" else f" ({signal})"
    return f"{warning:g} / {critical:g}{suffix}"


def _queue_cell(preset: Preset, queue: str) -> str:
    policy = preset.queue_policy(queue)
    cell = _thresholds(policy.warning_threshold, policy.critical_threshold, policy.signal)
    default = preset.default_queue
    if (policy.sustained_seconds, policy.cooldown_seconds) != (
        default.sustained_seconds,
        default.cooldown_seconds,
    ):
        cell += f" ({policy.sustained_seconds:g}s / {policy.cooldown_seconds:g}s)"
    return cell


def _parallelism(preset: Preset, name: str) -> str:
    policy = preset.classes.get(name)
    if policy is None:
        return "-"
    levels = (Level.NORMAL, Level.WARNING, Level.CRITICAL)
    return "/".join(str(policy.limits(level).parallelism) for level in levels)


app.command("status")(status_command)  # admission/cli_status.py


# -- demo -------------------------------------------------------------------------

# The command's module is light; the demo itself loads when the command runs.
app.command("demo")(demo_command)


# -- shared -----------------------------------------------------------------------


def _config(path: Path | None) -> PolicyConfig:
    if path is not None and not path.is_file():
        what = "is a directory" if path.is_dir() else "no such file"
        _fail(f"--config {path}: {what}")
    return load_config(path)


def _console() -> Console:
    # Rich sizes tables to the terminal; piped or captured output gets a wide,
    # fixed width so rows do not wrap mid-name.
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _fail(message: str) -> NoReturn:
    typer.echo(f"admission: error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


@contextmanager
def _errors() -> Iterator[None]:
    """Our own errors (bad trace, bad configuration, unknown preset) as one line, exit 2."""
    try:
        yield
    except AdmissionError as exc:  # TraceError and ConfigError
        _fail(str(exc))
