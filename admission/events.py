"""The structlog events the running system emits, and how to render them.

Event names are stable (dashboards and alerts match on them); their fields are
key-value pairs.  Nothing on the admission hot path logs: only the monitor and
the registry do, once per change.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal, TextIO

import structlog

__all__ = [
    "FAIL_SAFE_ENTER",
    "FAIL_SAFE_EXIT",
    "FLEET_PUBLISH_ERROR",
    "MONITOR_STARTED",
    "MONITOR_STOPPED",
    "OVERRIDE_EXPIRED",
    "RETUNE_ERROR",
    "SHARED_BUDGET_RESTORED",
    "SHARED_BUDGET_UNAVAILABLE",
    "TELEMETRY_ERROR",
    "TELEMETRY_RECOVERED",
    "TICK_ERROR",
    "TRANSITION",
    "WORKFLOW_EXECUTION_LIMIT",
    "WORKFLOW_TERMINATE_ERROR",
    "configure_logging",
    "logger",
]

TRANSITION = "admission.transition"
FAIL_SAFE_ENTER = "admission.fail_safe.enter"
FAIL_SAFE_EXIT = "admission.fail_safe.exit"
TELEMETRY_ERROR = "admission.telemetry.error"
TELEMETRY_RECOVERED = "admission.telemetry.recovered"
OVERRIDE_EXPIRED = "admission.override.expired"
TICK_ERROR = "admission.monitor.tick_error"
RETUNE_ERROR = "admission.retune.error"
MONITOR_STARTED = "admission.monitor.started"
MONITOR_STOPPED = "admission.monitor.stopped"
SHARED_BUDGET_UNAVAILABLE = "admission.shared_budget.unavailable"
SHARED_BUDGET_RESTORED = "admission.shared_budget.restored"
FLEET_PUBLISH_ERROR = "admission.fleet.publish_error"
WORKFLOW_EXECUTION_LIMIT = "admission.workflow.execution_limit"
WORKFLOW_TERMINATE_ERROR = "admission.workflow.terminate_error"


def logger() -> Any:
    """The library's logger: ``structlog.get_logger("admission")``, bound lazily.

    Resolved at each call so an application's ``structlog.configure`` made after
    import still applies.
    """
    return structlog.get_logger("admission")


def configure_logging(
    renderer: Literal["json", "console"] = "console",
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for a process that runs admission on its own.

    ``json`` writes one JSON object per line (log shippers); ``console`` a
    readable line.  Applications with their own structlog setup skip this: the
    library only emits events, it never configures logging behind your back.
    """
    if renderer not in ("json", "console"):
        raise ValueError(f"renderer must be 'json' or 'console', got {renderer!r}")
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if renderer == "json":
        # JSON lines carry the traceback as a string field.
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
