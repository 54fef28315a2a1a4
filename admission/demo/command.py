"""The ``admission demo`` command (registered by :mod:`admission.cli`).

Importing this module is cheap: the demo itself (uvicorn, FastAPI, the
pipeline, rich's live view) loads when the command runs.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

__all__ = ["EXIT_INTERRUPTED", "demo_command"]

#: The exit status after Ctrl-C (the shell's 128 + SIGINT), the summary printed first.
EXIT_INTERRUPTED = 130
EXIT_ERROR = 2


class ViewChoice(StrEnum):
    auto = "auto"
    live = "live"
    plain = "plain"


def demo_command(
    speed: Annotated[
        float | None,
        typer.Option(
            help="Scenario seconds per real second [default: 15, the 10 minutes in 40 s; "
            "2 with --rabbitmq-url, whose management API refreshes every 5 real seconds].",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float,
        typer.Option(
            help="Scenario seconds to play; the phases stretch with it, the policy windows do not."
        ),
    ] = 600.0,
    port: Annotated[
        int, typer.Option(help="Port of the status server on 127.0.0.1 (0: a free one).")
    ] = 0,
    output_dir: Annotated[
        Path,
        typer.Option(help="Where status.json, summary.json, events.jsonl and timeline.png go."),
    ] = Path("demo-output"),
    plot: Annotated[
        bool | None,
        typer.Option(
            "--plot/--no-plot",
            help="Draw timeline.png (default: when matplotlib is installed).",
            show_default=False,
        ),
    ] = None,
    rabbitmq_url: Annotated[
        str | None,
        typer.Option(
            help="Run on this RabbitMQ (amqp://user:pass@host:5672/) instead of in-memory queues; "
            "the demo works in a vhost of its own and deletes it at the end.",
            show_default=False,
        ),
    ] = None,
    management_url: Annotated[
        str | None,
        typer.Option(
            help="The broker's management API (default: http://<rabbitmq host>:15672).",
            show_default=False,
        ),
    ] = None,
    view: Annotated[
        ViewChoice,
        typer.Option(help="live: a table redrawn in place; plain: log lines; auto: live on a TTY."),
    ] = ViewChoice.auto,
) -> None:
    """Watch the library work: a Nemesis-like pipeline through a burst and an outage, live."""
    import anyio

    from admission.demo.broker import DemoError
    from admission.demo.run import Demo, DemoOptions

    try:
        options = DemoOptions(
            speed=speed,
            duration=duration,
            port=port,
            output_dir=output_dir,
            plot=plot,
            rabbitmq_url=rabbitmq_url,
            management_url=management_url,
            view=view.value,
        )
        demo = Demo(options)
    except ValueError as exc:
        _fail(str(exc))
    try:
        anyio.run(demo.run, backend="asyncio")
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except DemoError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    typer.echo(f"admission: error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)
