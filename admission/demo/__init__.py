"""``admission demo``: a Nemesis-like pipeline through a burst, live, on a scaled clock.

The modules, one job each: :mod:`~admission.demo.scenario` (the script, pure),
:mod:`~admission.demo.broker` (in-memory queues; :mod:`~admission.demo.rabbitmq`
for a real broker), :mod:`~admission.demo.pipeline` (producers, workers behind
the integrations, the monitor), :mod:`~admission.demo.timeline` (the recorder),
:mod:`~admission.demo.view` (live table or plain lines),
:mod:`~admission.demo.summary` and :mod:`~admission.demo.report` (the figures,
their files, their printout), :mod:`~admission.demo.server` (uvicorn),
:mod:`~admission.demo.run` (all of it together).  See docs/demo.md.

Importing this package loads none of them (the CLI imports it on every call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from admission.demo.run import Demo, DemoOptions
    from admission.demo.summary import DemoSummary

__all__ = ["Demo", "DemoOptions", "DemoSummary"]


def __getattr__(name: str) -> Any:
    if name in ("Demo", "DemoOptions"):
        from admission.demo import run

        return getattr(run, name)
    if name == "DemoSummary":
        from admission.demo.summary import DemoSummary

        return DemoSummary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
