"""The machine line, the Markdown report (printed and written) and the JSON results."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench._common import Cell, Check, Section

__all__ = ["machine", "render", "to_json"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' (uncommitted changes)' if dirty else ''}"


def machine() -> dict[str, Cell]:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "admission": _version("admission"),
        "aiolimiter": _version("aiolimiter"),
        "git": _git_commit(),
    }


def _cell(value: Cell, spec: str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec or ".4g")
    if isinstance(value, int):
        return f"{value:,}"
    return value


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return text == "-"
    return True


def _table(header: list[str], body: list[list[str]]) -> list[str]:
    right = [all(_numeric(row[i]) for row in body) for i in range(len(header))]
    widths = [max([len(h), *(len(row[i]) for row in body)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + (":" if r else "-") for w, r in zip(widths, right, strict=True)]
    return [line(header), "| " + " | ".join(rule) + " |", *(line(row) for row in body)]


def _checks(checks: list[Check]) -> list[str]:
    body = [[c.name, f"{c.value:.4g}", c.target, c.verdict] for c in checks]
    return _table(["ratio", "value", "target", "verdict"], body)


def render(sections: list[Section], info: dict[str, Cell], quick: bool) -> str:
    out = ["# admission benchmarks", ""]
    if quick:
        out += ["**Quick mode: sizes too small for the figures or targets to mean anything.**", ""]
    out += [
        f"Machine: {info['python']} on {info['platform']}; CPU {info['cpu']}, "
        f"{info['cores']} cores ({info['usable_cores']} usable), load average "
        f"{info['load_average_1m']} at start; admission {info['admission']} "
        f"(git {info['git']}), aiolimiter {info['aiolimiter']}; {info['date']}.",
        "",
        f"Date: {info['date']}",
        "",
        "Every contender runs in the same process, interleaved, on the asyncio event loop. "
        "Wall spans are time.perf_counter, CPU is time.process_time; absolute figures on a "
        "shared machine are noise, so the ratios against the targets are the result. "
        "Regenerate with `make bench` (`python -m bench`); profile admission's side of a "
        "benchmark with `python -m bench.profile fastpath|contended|waiters|policy|replay`.",
        "",
        "## Targets",
        "",
    ]
    targeted = [(s, c) for s in sections for c in s.checks if c.met is not None]
    met = sum(1 for _, c in targeted if c.met)
    out += [f"{met} of {len(targeted)} targets met.", ""]
    body = [
        [s.title.split(":")[0], c.name, f"{c.value:.4g}", c.target, c.verdict] for s, c in targeted
    ]
    out += [*_table(["benchmark", "ratio", "value", "target", "verdict"], body), ""]
    for section in sections:
        out += [f"## {section.title}", "", section.method, ""]
        header = list(section.columns)
        rows = [[_cell(r.get(c), section.formats.get(c)) for c in header] for r in section.rows]
        out += [*_table(header, rows), "", *_checks(section.checks), ""]
        out += [f"- {note}" for note in section.notes]
        if section.notes:
            out.append("")
    return "\n".join(out)


def to_json(sections: list[Section], info: dict[str, Cell], quick: bool) -> str:
    def section(s: Section) -> dict[str, Any]:
        data = dataclasses.asdict(s)
        data.pop("formats")
        data["checks"] = [
            {"name": c.name, "value": c.value, "target": c.target, "met": c.met} for c in s.checks
        ]
        return data

    document = {
        "machine": info,
        "mode": "quick" if quick else "full",
        "sections": [section(s) for s in sections],
    }
    return json.dumps(document, indent=2, allow_nan=True) + "\n"
