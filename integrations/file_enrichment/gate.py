"""The admission gate for CloudEvent-style handlers ``async def handler(event)``.

Each event is classified (``standard`` / ``expensive`` by file extension) and
admitted by the gate's limiter under that class's current limits, which the
registry retunes as the policy changes.  An event that is not admitted within
``max_wait`` raises :class:`RetryLater`; the subscription layer turns it into a
redelivery (Dapr: ``RETRY``; AMQP: nack with requeue), so nothing is dropped.

Deferred admission (the policy's ``deferred_admission``: ``expensive`` under
``warning``, ``critical`` and fail-safe): an event that cannot start at once is
handed back at once instead of holding a consumer for ``max_wait``, except that
the gate keeps up to the class's ``minimum_floor`` events waiting, so the
floor's next event starts the moment a slot frees and the class never idles
while it has work.  Every hand-back is counted with ``Registry.record_deferred``
and shows as ``deferred_total`` in the class status.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from admission import AdaptiveLimiter, AdmissionError, AdmissionTimeout, Permit, WorkloadClass
from admission.clock import Clock
from admission.policy import Level
from admission.registry import Registry, default_registry
from admission.snapshot import ClassSnapshot
from integrations.file_enrichment.classify import EXPENSIVE, STANDARD, FileClassifier

if TYPE_CHECKING:
    from integrations.file_enrichment.pool import WorkerPool

__all__ = ["FileEnrichmentGate", "RetryLater"]

P = ParamSpec("P")
E = TypeVar("E")
R = TypeVar("R")
T = TypeVar("T")

Reason = Literal["deferred", "timeout"]

#: Weight of the newest hold time in each class's moving average (retry_after hints).
_HOLD_WEIGHT = 0.2


class RetryLater(AdmissionError):
    """Not admitted: hand the message back for redelivery, ``retry_after`` seconds from now.

    ``reason`` is ``"deferred"`` (the class's admission is deferred and it has
    no room now) or ``"timeout"`` (not admitted within ``max_wait``).
    ``retry_after`` is an estimate: the wait for a token (after those of the
    events waiting ahead), or for a slot at the pace the class's work has been
    finishing.
    """

    def __init__(
        self, retry_after: float, *, workload_class: str, reason: Reason, limiter: str = ""
    ) -> None:
        self.retry_after = retry_after
        self.workload_class = workload_class
        self.reason = reason
        self.limiter = limiter
        super().__init__(
            f"{workload_class!r} work not admitted ({reason}) by limiter {limiter!r}; "
            f"retry after {retry_after:.3f}s"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.retry_after, self.workload_class, self.reason, self.limiter))


def _rebuild(retry_after: float, workload_class: str, reason: Reason, limiter: str) -> RetryLater:
    return RetryLater(retry_after, workload_class=workload_class, reason=reason, limiter=limiter)


def _ceiling(registry: Registry) -> tuple[float, float]:
    """Rate and burst for the limiter as a whole: never below what any preset lets the classes do.

    The registry governs the classes; the limiter-wide bucket must not bind first.
    """
    rate = burst = 0.0
    for cls in (STANDARD, EXPENSIVE):
        limits = [
            preset.classes[cls].limits(level)
            for preset in registry.config.presets.values()
            if cls in preset.classes
            for level in Level
        ]
        rate += max((lim.rate for lim in limits), default=1.0)
        burst += max((lim.burst for lim in limits), default=1.0)
    return rate, burst


class FileEnrichmentGate:
    """Admits file events by workload class; ``@gate`` wraps a handler.

    - ``registry``: the registry that governs the gate's limiter (default: the
      process-wide one).  The gate registers its limiter there.
    - ``limiter``: an ``AdaptiveLimiter`` of your own (default: one named
      ``name`` with classes ``standard`` and ``expensive``).
    - ``max_wait``: seconds an event may wait for admission before ``RetryLater``.
    - ``extensions``: the expensive extensions (default: the registry preset's
      ``expensive`` class, i.e. the ``[classes.expensive] extensions`` config).
    - ``classify``: your own ``event -> class name`` (instead of ``extensions``).
    """

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        limiter: AdaptiveLimiter | None = None,
        name: str = "file_enrichment",
        max_wait: float = 10.0,
        extensions: Iterable[str] | None = None,
        classify: Callable[[Any], str] | None = None,
    ) -> None:
        if isinstance(max_wait, bool) or not isinstance(max_wait, int | float):
            raise TypeError(f"max_wait must be a number of seconds, got {max_wait!r}")
        if not math.isfinite(max_wait) or max_wait < 0:
            raise ValueError(f"max_wait must be a finite number >= 0, got {max_wait!r}")
        if classify is not None and extensions is not None:
            raise ValueError("pass extensions= or classify=, not both")
        self.registry = registry if registry is not None else default_registry()
        self.max_wait = float(max_wait)
        self.classifier: FileClassifier | None = None
        if classify is None:
            self.classifier = (
                FileClassifier(extensions)
                if extensions is not None
                else FileClassifier.from_registry(self.registry)
            )
        self.classify: Callable[[Any], str] = classify if classify is not None else self.classifier  # type: ignore[assignment]
        if limiter is None:
            rate, burst = _ceiling(self.registry)
            limiter = AdaptiveLimiter(
                name,
                rate=rate,
                burst=burst,
                classes=[WorkloadClass(STANDARD), WorkloadClass(EXPENSIVE)],
                clock=self.registry.clock,
            )
        elif classify is None:
            missing = {STANDARD, EXPENSIVE} - set(limiter.workload_classes)
            if missing:
                raise ValueError(
                    f"limiter {limiter.name!r} lacks workload class(es) {sorted(missing)} "
                    f"(its classes: {limiter.workload_classes}); pass classify= to use others"
                )
        self.limiter = limiter
        registered = self.registry.limiters.get(limiter.name)
        if registered is None:
            self.registry.add_limiter(limiter)
        elif registered is not limiter:
            raise ValueError(f"another limiter named {limiter.name!r} is already registered")
        self._holds: dict[str, float] = {}

    @property
    def clock(self) -> Clock:
        return self.limiter.clock

    # -- admission -------------------------------------------------------------

    def admit(self, event: object) -> GateAdmission:
        """``async with gate.admit(event) as permit:`` admits the event, or raises RetryLater."""
        return GateAdmission(self, event)

    def __call__(
        self, func: Callable[Concatenate[E, P], Awaitable[R]]
    ) -> Callable[Concatenate[E, P], Coroutine[Any, Any, R]]:
        """``@gate`` admits every call of ``async def handler(event, ...)``."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(f"{self.limiter.name}: can only gate an async def, got {func!r}")

        @functools.wraps(func)
        async def gated(event: E, /, *args: P.args, **kwargs: P.kwargs) -> R:
            async with GateAdmission(self, event):
                return await func(event, *args, **kwargs)

        return gated

    handler = __call__

    def pool(
        self,
        handler: Callable[[T], Awaitable[object]],
        *,
        maxsize: int = 64,
        on_error: Callable[[T, Exception], object] | None = None,
    ) -> WorkerPool[T]:
        """A :class:`WorkerPool` admitting through this gate's limiter and classifier."""
        from integrations.file_enrichment.pool import WorkerPool

        return WorkerPool(
            self.limiter, handler, classify=self.classify, maxsize=maxsize, on_error=on_error
        )

    async def _enter(self, event: object) -> Permit:
        name = self.classify(event)
        limiter = self.limiter
        # The fast path: room now, nothing to decide (and no status to build).
        permit = limiter.try_acquire(workload_class=name)
        if permit is not None:
            return permit
        snap = limiter.snapshot().workload_class(name)
        if snap.waiting >= snap.minimum_floor and self._deferred(name):
            raise self._retry_later(name, "deferred", snap, 0.0)
        try:
            # The limiter's own timeout: it follows the clock (virtual time too).
            return await limiter.acquire(workload_class=name, timeout=self.max_wait)
        except AdmissionTimeout as exc:
            snap = limiter.snapshot().workload_class(name)
            raise self._retry_later(name, "timeout", snap, exc.retry_after) from exc

    def _deferred(self, name: str) -> bool:
        if name not in self.registry.state.classes:
            return False
        return self.registry.class_status(name).deferred_admission

    def _retry_later(
        self, name: str, reason: Reason, snap: ClassSnapshot, token_wait: float
    ) -> RetryLater:
        self.registry.record_deferred(name)
        rate = snap.rate if snap.rate is not None else self.limiter.rate
        retry = token_wait
        if snap.tokens is not None:
            # The waiters ahead take their tokens first: this event's comes after theirs.
            needed = snap.waiting + 1 - snap.tokens
            if needed > 0:
                retry = max(retry, needed / rate)
        cap = snap.max_concurrency
        if cap is not None and snap.in_flight >= cap:
            # Slots free at cap / hold per second; this one needs the waiters' and its own.
            hold = self._holds.get(name, 1 / rate)
            retry = max(retry, hold * (snap.waiting + 1) / cap)
        return RetryLater(retry, workload_class=name, reason=reason, limiter=self.limiter.name)

    def _held(self, name: str, seconds: float) -> None:
        previous = self._holds.get(name)
        self._holds[name] = (
            seconds if previous is None else previous + _HOLD_WEIGHT * (seconds - previous)
        )

    def __repr__(self) -> str:
        return f"<FileEnrichmentGate {self.limiter.name!r} max_wait={self.max_wait!r}>"


class GateAdmission:
    """What :meth:`FileEnrichmentGate.admit` returns: admits on entry, releases on exit."""

    __slots__ = ("_event", "_gate", "_permit", "_started")

    def __init__(self, gate: FileEnrichmentGate, event: object) -> None:
        self._gate = gate
        self._event = event
        self._permit: Permit | None = None
        self._started = 0.0

    async def __aenter__(self) -> Permit:
        self._permit = await self._gate._enter(self._event)
        self._started = self._gate.clock.monotonic()
        return self._permit

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        permit = self._permit
        if permit is not None:
            self._permit = None
            self._gate._held(permit.workload_class, self._gate.clock.monotonic() - self._started)
            permit.release()
