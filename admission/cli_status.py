"""``admission status --url URL [--json] [--timeout S]``: a running service's policy status.

``URL`` may be the server (``http://127.0.0.1:8000``: the router is looked for
at its default mount, ``/workflows/throughput-policy``), the router's own
prefix wherever it is mounted (``/status`` is added), or the status URL
itself (a path ending in ``/status``, used as is).  The answer is checked
against the status contract (:class:`admission.status.Status`, what the
web_api router serves) before anything is shown.  Every failure (connection
refused, timeout, a non-200 answer, a body that is not the contract) is one
line on stderr naming the URL, and exit status 2.  Needs httpx (in the ``cli``
extra), imported only when the command runs.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from admission._urls import mask_url
from admission.status import ClassStatus, QueueStatus, Status

__all__ = ["DEFAULT_PREFIX", "status_command", "status_url"]

#: Where the router is mounted by default (``integrations.web_api.DEFAULT_PREFIX``,
#: repeated so this command needs no FastAPI; a test keeps the two equal).
DEFAULT_PREFIX = "/workflows/throughput-policy"
EXIT_ERROR = 2
_STYLE = {"normal": "green", "warning": "yellow", "critical": "red", "fail_safe": "bold magenta"}


def status_command(
    url: Annotated[
        str,
        typer.Option(
            "--url",
            "-u",
            help="The service (http://HOST:PORT, router at its default mount), the router's "
            "prefix, or the status URL itself (ending in /status).",
            show_default=False,
        ),
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the status JSON as received (pretty).")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", "-t", help="Seconds to wait for the answer.")
    ] = 5.0,
) -> None:
    """Show a running service's policy status: levels, windows, classes, overrides."""
    if not (math.isfinite(timeout) and timeout > 0):
        _fail(f"--timeout {timeout:g}: must be a positive number of seconds")
    try:
        target = status_url(url)
    except ValueError as exc:
        _fail(str(exc))
    body, status = fetch_status(target, timeout)
    if as_json:
        sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
        return
    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    _print_overview(console, mask_url(target), status)
    _print_queues(console, status)
    _print_classes(console, status)
    _print_overrides(console, status)
    for warning in status.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    if not status.warnings:
        console.print("warnings: none")


def status_url(url: str) -> str:
    """The status URL that ``url`` (server, router prefix or status URL) stands for."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"--url {mask_url(url)!r}: not an http(s) URL (give e.g. http://127.0.0.1:8000)"
        )
    path = parts.path.rstrip("/")
    if not path:
        path = DEFAULT_PREFIX + "/status"
    elif not path.endswith("/status"):
        path += "/status"
    return urlunsplit(parts._replace(path=path, fragment=""))


def fetch_status(url: str, timeout: float) -> tuple[Any, Status]:
    """GET ``url``: the JSON body as received and the contract it was checked against."""
    shown = mask_url(url)
    try:
        import httpx
    except ImportError:
        _fail("admission status needs httpx: pip install 'admission[cli]'")
    try:
        response = httpx.get(
            url, timeout=timeout, follow_redirects=True, headers={"Accept": "application/json"}
        )
    except httpx.ConnectTimeout:
        _fail(f"{shown}: could not connect within {timeout:g}s (timeout)")
    except httpx.TimeoutException:
        _fail(f"{shown}: no answer within {timeout:g}s (timeout)")
    except httpx.ConnectError as exc:
        _fail(f"{shown}: cannot connect ({_one_line(str(exc)) or 'connection failed'})")
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        _fail(f"{shown}: {type(exc).__name__}: {_one_line(str(exc))}")
    if response.status_code != 200:
        _fail(f"{shown}: HTTP {response.status_code} {response.reason_phrase}{_detail(response)}")
    try:
        body = json.loads(response.content)
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        _fail(f"{shown}: the answer is not JSON ({_one_line(kind)})")
    try:
        return body, Status.model_validate(body)
    except ValidationError as exc:
        _fail(f"{shown}: the answer is not the status contract: {_first_problem(exc)}")


# -- tables ---------------------------------------------------------------------


def _print_overview(console: Console, url: str, status: Status) -> None:
    console.print(
        f"Policy status of {escape(url)} at {status.timestamp.isoformat(timespec='seconds')}"
    )
    table = Table(show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("value")
    preset = status.active_preset
    if status.requested_preset != status.active_preset:
        preset = f"{status.active_preset} (requested: {status.requested_preset})"
    cooldown = f"{_s(status.cooldown_seconds)}"
    if status.cooldown_remaining_seconds is not None:
        cooldown += f", {_s(status.cooldown_remaining_seconds)} left"
    rows = [
        ("preset", escape(preset)),
        ("level", _level(status.queue_pressure_level)),
        ("policy active", _yes(status.policy_active)),
        (
            "fail-safe",
            f"[bold magenta]yes[/]: {escape(status.fail_safe_reason or '')}"
            if status.fail_safe
            else "no",
        ),
        ("telemetry stale", _yes(status.telemetry_stale)),
        ("monitor", status.monitor),
        ("sustained", f"{_s(status.sustained_seconds)} of {_s(status.sustained_seconds_required)}"),
        ("cooldown", cooldown),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _print_queues(console: Console, status: Status) -> None:
    levels = Table(title="Queues", title_justify="left")
    levels.add_column("queue", no_wrap=True)
    for column in ("depth", "processing", "consumers", "signal", "warn / crit"):
        levels.add_column(column, justify="right")
    levels.add_column("severity", min_width=9)
    levels.add_column("since")
    windows = Table(title="Windows and telemetry", title_justify="left")
    windows.add_column("queue", no_wrap=True)
    windows.add_column("pending", min_width=9)
    windows.add_column("left", justify="right")
    for column in ("window", "telemetry"):
        windows.add_column(column)
    notes: list[str] = []
    for q in status.queue_states:
        levels.add_row(
            escape(q.queue),
            _n(q.queued_messages),
            _n(q.processing_messages),
            _n(q.consumers),
            f"{escape(q.signal)} {_n(q.signal_value)}",
            f"{q.warning_threshold:g} / {q.critical_threshold:g}",
            _level(q.severity) + (" (pinned)" if q.pinned_by else ""),
            _since(q.level_since, status.timestamp),
        )
        windows.add_row(escape(q.queue), *_window(q), _telemetry(q))
        if q.fail_safe_reason:
            notes.append(f"{escape(q.queue)} fail-safe: {escape(q.fail_safe_reason)}")
        if q.pinned_by:
            notes.append(f"{escape(q.queue)} pinned by override {escape(q.pinned_by)}")
    if not status.queue_states:
        console.print("queues: none watched")
        return
    console.print(levels)
    console.print(windows)
    for note in notes:
        console.print(note)


def _print_classes(console: Console, status: Status) -> None:
    table = Table(title="Workload classes", title_justify="left")
    table.add_column("class", no_wrap=True)
    table.add_column("level", no_wrap=True)
    for column in ("parallelism", "floor", "rate", "burst", "deferred", "in flight", "waiting"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("reason")
    for c in status.class_states:
        table.add_row(
            escape(c.class_name),
            _level(c.level),
            str(c.active_parallelism),
            str(c.minimum_floor),
            f"{c.rate:g}",
            f"{c.burst:g}",
            _deferred(c),
            str(c.in_flight),
            str(c.waiting),
            escape(c.reason),
        )
    if not status.class_states:
        table.add_row("no workload class", *["-"] * 9)
    console.print(table)


def _print_overrides(console: Console, status: Status) -> None:
    if not status.overrides:
        console.print("overrides: none")
        return
    table = Table(title="Overrides", title_justify="left")
    for column in ("id", "scope", "name", "pins", "expires", "left", "reason"):
        table.add_column(column, justify="right" if column == "left" else "left")
    for o in status.overrides:
        pins = _level(o.level) if o.level is not None else f"preset {escape(o.preset or '')}"
        table.add_row(
            escape(o.id),
            o.scope,
            escape(o.name),
            pins,
            o.expires_at.isoformat(timespec="seconds"),
            _s(o.remaining_seconds),
            escape(o.reason) or "-",
        )
    console.print(table)


# -- cells ----------------------------------------------------------------------


def _level(level: str) -> str:
    return f"[{_STYLE.get(level, 'default')}]{escape(level)}[/]"


def _yes(flag: bool) -> str:
    return "[bold]yes[/]" if flag else "no"


def _n(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def _s(seconds: float) -> str:
    return f"{round(seconds, 1):g}s"


def _since(when: datetime, now: datetime) -> str:
    shown = f"{when:%H:%M:%S}" if when.date() == now.date() else f"{when:%Y-%m-%d %H:%M:%S}"
    return f"{shown} ({_s((now - when).total_seconds())} ago)"


def _window(q: QueueStatus) -> tuple[str, str, str]:
    """pending level, time left, and the window leading there."""
    window = q.window
    if window is not None:
        return (
            _level(window.pending_level),
            _s(window.remaining_seconds),
            f"{window.kind}: {_s(window.elapsed_seconds)} of {_s(window.required_seconds)}",
        )
    if q.pending_level is not None:
        return _level(q.pending_level), "-", "-"
    return "-", "-", "-"


def _telemetry(q: QueueStatus) -> str:
    t = q.telemetry
    age = t.last_sample_age_seconds
    text = f"{t.health}, {'no sample yet' if age is None else 'sample ' + _s(age) + ' old'}"
    if t.consecutive_failures:
        text += f", {t.consecutive_failures} failed reads"
    if t.last_error:
        text += f": {t.last_error}"
    return escape(text)


def _deferred(c: ClassStatus) -> str:
    return f"{c.deferred_total} (deferring)" if c.deferred_admission else str(c.deferred_total)


# -- errors ---------------------------------------------------------------------


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _detail(response: Any) -> str:
    """``: <detail>`` of a FastAPI error body, if it has one."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return ""
    return f": {_one_line(detail)}" if isinstance(detail, str) else ""


def _first_problem(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {_one_line(first['msg'])}{more}"


def _fail(message: str) -> NoReturn:
    # The same shape as admission.cli's errors (that module imports this one).
    typer.echo(f"admission: error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)
