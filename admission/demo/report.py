"""The demo's closing summary, printed with rich (plain text when not on a terminal)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from admission._replay_result import LEVELS
from admission.demo.summary import OVERALL, DemoSummary

__all__ = ["print_summary"]


def _levels_table(summary: DemoSummary) -> Table:
    table = Table(
        title=f"Time in each level (scenario seconds, of {summary.played_seconds:.0f})",
        title_justify="left",
    )
    table.add_column("")
    for level in LEVELS:
        table.add_column(level, justify="right")
    table.add_column("transitions", justify="right")
    counts = Counter(t.name for t in summary.transitions)
    counts[OVERALL] = len(summary.levels_seen) - 1
    rows = [
        (f"queue {name}" if name != OVERALL else OVERALL, name, seconds)
        for name, seconds in summary.seconds_in_level.items()
    ]
    rows += [(f"class {name}", name, s) for name, s in summary.class_seconds_in_level.items()]
    for label, name, seconds in rows:
        cells = [f"{seconds[level]:.0f}" for level in LEVELS]
        table.add_row(escape(label), *cells, str(counts.get(name, 0)))
    return table


def _transitions_table(summary: DemoSummary) -> Table:
    table = Table(title="Queue transitions (the classes follow)", title_justify="left")
    for column in ("t", "queue", "from", "to", "why"):
        table.add_column(column, justify="right" if column == "t" else "left")
    queue_changes = [t for t in summary.transitions if t.scope == "queue"]
    for change in queue_changes:
        table.add_row(
            f"{change.t:.0f}s",
            escape(change.name),
            change.from_level,
            change.to_level,
            escape(f"{change.reason}: {change.detail}"),
        )
    if not queue_changes:
        table.add_row("-", "-", "-", "-", "no transition: every queue stayed normal")
    return table


def _work_table(summary: DemoSummary) -> Table:
    table = Table(title="Work", title_justify="left")
    for column in (
        "stage",
        "delivered",
        "processed",
        "admitted standard",
        "admitted expensive",
        "deferred",
        "timed out",
        "redelivered",
    ):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in summary.stages:
        admitted = summary.admitted.get(str(stage["stage"]), {})
        handed = stage["handed_back"]
        table.add_row(
            escape(str(stage["stage"])),
            str(stage["delivered"]),
            str(stage["processed"]),
            str(admitted.get("standard", "-")),
            str(admitted.get("expensive", "-")),
            str(handed.get("deferred", 0)),
            str(handed.get("timeout", 0)),
            str(stage["redelivered"]),
        )
    return table


def _accounting_table(summary: DemoSummary) -> Table:
    table = Table(title="Accounting: published = processed + still queued", title_justify="left")
    for column in ("queue", "published", "processed", "still queued", "lost"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for account in summary.accounts:
        table.add_row(
            escape(account.queue),
            str(account.published),
            str(account.processed),
            str(account.still_queued),
            str(account.lost),
        )
    return table


def print_summary(console: Console, summary: DemoSummary) -> None:
    """Print ``summary``: levels, transitions, work, accounting and the files written."""
    how = "interrupted" if summary.interrupted else "finished"
    console.print(
        f"\nadmission demo {how}: {summary.played_seconds:.0f}s of scenario in "
        f"{summary.real_seconds:.1f}s ({summary.speed:g}x), {escape(summary.mode)}, "
        f"preset {escape(summary.preset)}",
        highlight=False,
    )
    console.print("levels: " + " -> ".join(summary.levels_seen), highlight=False)
    console.print(_levels_table(summary))
    console.print(_transitions_table(summary))
    console.print(_work_table(summary))
    console.print(_accounting_table(summary))
    if not summary.accounts:
        console.print("[yellow]accounting: the queues could not be counted[/yellow]")
    elif summary.nothing_lost:
        console.print(
            f"nothing lost: all {summary.produced} files produced, and every message passed on, "
            "are processed or still queued",
            highlight=False,
        )
    else:
        lost = sum(a.lost for a in summary.accounts)
        console.print(f"[bold red]LOST: {lost} message(s) unaccounted for[/bold red]")
    for label, path in (
        ("status JSON", summary.status_path),
        ("summary JSON", summary.summary_path),
        ("timeline", summary.plot_path),
    ):
        if path is not None:
            console.print(f"{label}: {escape(str(path))}", highlight=False)
    if summary.plot_error is not None:
        console.print(f"[yellow]timeline not drawn: {escape(summary.plot_error)}[/yellow]")
