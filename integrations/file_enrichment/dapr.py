"""Dapr pub/sub: a gated handler answers ``{"status": "SUCCESS" | "RETRY"}``.

Dapr redelivers a message whose handler answers ``RETRY`` (with the backoff of
the component's resiliency policy), so a :class:`RetryLater` from the gate (or
raised by the handler itself) becomes ``RETRY`` and nothing is dropped.  A
handler may answer its own status (``{"status": "DROP"}``) and it is passed on.
Any other exception propagates: the web framework answers 500, which Dapr also
retries, and the traceback is logged where your errors are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from integrations.file_enrichment.gate import FileEnrichmentGate, GateAdmission, RetryLater

__all__ = ["DAPR_STATUSES", "dapr_subscription"]

P = ParamSpec("P")
E = TypeVar("E")

#: The answers a Dapr subscriber may give.
DAPR_STATUSES = frozenset({"SUCCESS", "RETRY", "DROP"})

DaprHandler = Callable[Concatenate[E, P], Coroutine[Any, Any, dict[str, str]]]


def dapr_subscription(
    gate: FileEnrichmentGate,
) -> Callable[[Callable[Concatenate[E, P], Awaitable[object]]], DaprHandler[E, P]]:
    """Decorate ``async def handler(event)`` so that it answers Dapr's subscription status."""

    def decorate(func: Callable[Concatenate[E, P], Awaitable[object]]) -> DaprHandler[E, P]:
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"dapr_subscription can only wrap an async def, got {func!r}")

        @functools.wraps(func)
        async def answered(event: E, /, *args: P.args, **kwargs: P.kwargs) -> dict[str, str]:
            try:
                async with GateAdmission(gate, event):
                    result = await func(event, *args, **kwargs)
            except RetryLater:
                return {"status": "RETRY"}
            if isinstance(result, Mapping) and result.get("status") in DAPR_STATUSES:
                return {"status": str(result["status"])}
            return {"status": "SUCCESS"}

        return answered

    return decorate
