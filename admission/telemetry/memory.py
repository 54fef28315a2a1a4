"""In-process telemetry: values and callables registered per queue, with failure injection.

``MemorySource`` reads signals that live in the worker's own process (an
``asyncio.Queue``'s ``qsize``, an in-flight counter) and is the test double for
the monitor: ``fail()`` makes reads of a queue fail with a chosen kind and reason,
for a number of reads or until ``heal()``.

Every field is a static value or a zero-argument callable read at each
``read()``; ``watch(queue, sample=fn)`` registers a callable returning a whole
mapping of :class:`QueueSample` fields (or a ``QueueSample``), under which
per-field registrations take precedence.  A callable that raises is a
``source_error`` failure; a value that is negative, NaN, infinite, a boolean or
not a number is an ``impossible_value`` failure naming the queue and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Final

import anyio.lowlevel

from admission.telemetry.base import FailureKind, QueueSample, ReadFailure, Reading

__all__ = ["MemorySource"]

Getter = Callable[[], object]
#: A field's registration: a value read as is, or a callable read at every tick.
Value = int | float | Getter | None
SampleGetter = Callable[[], "Mapping[str, object] | QueueSample"]

#: Keyword names of ``set``/``watch`` and the QueueSample field each feeds.
ALIASES: Final = {
    "ready": "messages_ready",
    "unacked": "messages_unacknowledged",
    "consumers": "consumers",
    "publish_rate": "publish_rate",
    "deliver_rate": "deliver_rate",
    "ack_rate": "ack_rate",
    "oldest_message_age_seconds": "oldest_message_age_seconds",
}
_COUNTS: Final = frozenset({"messages_ready", "messages_unacknowledged", "consumers"})
_FIELDS: Final = frozenset(f.name for f in fields(QueueSample)) - {"queue", "sampled_at"}


class _Unset:
    """The default of every keyword: "leave this field as it is"."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


class _Bad(Exception):
    def __init__(self, kind: FailureKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(slots=True)
class _Injected:
    kind: FailureKind
    reason: str
    remaining: int | None  # reads left to fail; None = until healed


@dataclass(slots=True)
class _Queue:
    values: dict[str, Value] = field(default_factory=dict)
    sample: SampleGetter | None = None


class MemorySource:
    """A :class:`~admission.telemetry.PressureSource` over in-process values and callables."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}
        self._failures: dict[str, _Injected] = {}
        self._failure_all: _Injected | None = None
        #: How many times ``read()`` has been called (tests count polls with it).
        self.reads = 0

    # -- registration ------------------------------------------------------------

    def set(
        self,
        queue: str,
        ready: int | _Unset | None = UNSET,
        *,
        unacked: int | _Unset | None = UNSET,
        consumers: int | _Unset | None = UNSET,
        publish_rate: float | _Unset | None = UNSET,
        deliver_rate: float | _Unset | None = UNSET,
        ack_rate: float | _Unset | None = UNSET,
        oldest_message_age_seconds: float | _Unset | None = UNSET,
    ) -> None:
        """Set static values of ``queue`` (registering it); fields not given keep theirs.

        ``None`` makes a field unknown.  A bad value raises ``ValueError`` or
        ``TypeError`` here, at the call that made it.
        """
        given = _given(
            ready=ready,
            unacked=unacked,
            consumers=consumers,
            publish_rate=publish_rate,
            deliver_rate=deliver_rate,
            ack_rate=ack_rate,
            oldest_message_age_seconds=oldest_message_age_seconds,
        )
        for name, value in given.items():
            problem = None if value is None else _problem(name, value)
            if problem is not None:
                not_a_number, reason = problem
                raise (TypeError if not_a_number else ValueError)(f"{queue}: {reason}")
        self._queues.setdefault(queue, _Queue()).values.update(given)

    def watch(
        self,
        queue: str,
        ready: Getter | _Unset | None = UNSET,
        *,
        unacked: Getter | _Unset | None = UNSET,
        consumers: Getter | _Unset | None = UNSET,
        publish_rate: Getter | _Unset | None = UNSET,
        deliver_rate: Getter | _Unset | None = UNSET,
        ack_rate: Getter | _Unset | None = UNSET,
        oldest_message_age_seconds: Getter | _Unset | None = UNSET,
        sample: SampleGetter | _Unset | None = UNSET,
    ) -> None:
        """Read fields of ``queue`` from zero-argument callables at every ``read()``.

        ``watch("files-new_file", ready=work.qsize, unacked=lambda: in_flight)``.
        ``sample`` returns a mapping of QueueSample fields (or a QueueSample);
        fields watched or set one by one override its values.
        """
        given = _given(
            ready=ready,
            unacked=unacked,
            consumers=consumers,
            publish_rate=publish_rate,
            deliver_rate=deliver_rate,
            ack_rate=ack_rate,
            oldest_message_age_seconds=oldest_message_age_seconds,
        )
        for name, getter in (*given.items(), ("sample", sample)):
            if getter is not None and not isinstance(getter, _Unset) and not callable(getter):
                raise TypeError(f"{queue}: {name} must be a callable, got {getter!r}")
        entry = self._queues.setdefault(queue, _Queue())
        entry.values.update(given)
        if not isinstance(sample, _Unset):
            entry.sample = sample

    def remove(self, queue: str) -> None:
        """Forget ``queue``: reads of it become ``missing_queue`` failures."""
        self._queues.pop(queue, None)

    @property
    def queues(self) -> tuple[str, ...]:
        """The registered queues, in registration order."""
        return tuple(self._queues)

    # -- failure injection ---------------------------------------------------------

    def fail(
        self,
        queue: str,
        kind: FailureKind = FailureKind.TIMEOUT,
        reason: str | None = None,
        *,
        times: int | None = None,
    ) -> None:
        """Make the next ``times`` reads of ``queue`` fail (``None``: until ``heal``)."""
        self._failures[queue] = _injected(kind, reason, times)

    def heal(self, queue: str) -> None:
        """End the failure injected for ``queue`` (not one injected by ``fail_all``)."""
        self._failures.pop(queue, None)

    def fail_all(
        self,
        kind: FailureKind = FailureKind.CONNECTION,
        reason: str | None = None,
        *,
        times: int | None = None,
    ) -> None:
        """Make the next ``times`` reads fail for every queue (an outage of the source)."""
        self._failure_all = _injected(kind, reason, times)

    def heal_all(self) -> None:
        """End every injected failure."""
        self._failure_all = None
        self._failures.clear()

    # -- reading -------------------------------------------------------------------

    async def read(self, queues: Sequence[str], *, now: float) -> Mapping[str, Reading]:
        """Read every queue in ``queues`` now; never raises (bar cancellation)."""
        # A checkpoint first: a poll loop over this source stays cancellable and
        # lets other tasks run, and the values read are those after it.
        await anyio.lowlevel.checkpoint()
        self.reads += 1
        outage = _consume(self._failure_all)
        if self._failure_all is not None and self._failure_all.remaining == 0:
            self._failure_all = None
        out: dict[str, Reading] = {}
        for queue in dict.fromkeys(queues):
            if outage is not None:
                out[queue] = ReadFailure(queue, now, outage[0], outage[1])
                continue
            try:
                out[queue] = self._read_one(queue, now)
            except Exception as exc:  # the contract: a source never raises
                reason = f"{queue}: {type(exc).__name__}: {exc}"
                out[queue] = ReadFailure(queue, now, FailureKind.SOURCE_ERROR, reason)
        return out

    def _read_one(self, queue: str, now: float) -> Reading:
        injected = self._failures.get(queue)
        if injected is not None:
            kind, reason = _consume(injected) or (injected.kind, injected.reason)
            if injected.remaining == 0:
                del self._failures[queue]
            return ReadFailure(queue, now, kind, reason)
        entry = self._queues.get(queue)
        if entry is None:
            reason = f"{queue}: not registered with this MemorySource"
            return ReadFailure(queue, now, FailureKind.MISSING_QUEUE, reason)
        try:
            values = _evaluate(entry)
        except _Bad as bad:
            return ReadFailure(queue, now, bad.kind, f"{queue}: {bad.reason}")
        if values.get("messages_ready") is None:
            reason = f"{queue}: messages_ready is unknown (nothing registered gives it)"
            return ReadFailure(queue, now, FailureKind.NO_SAMPLE, reason)
        return QueueSample(queue=queue, sampled_at=now, **values)  # type: ignore[arg-type]

    async def aclose(self) -> None:
        """Nothing to release; present for the protocol."""

    def __repr__(self) -> str:
        return f"MemorySource(queues={list(self._queues)!r})"


def _given(**kwargs: object) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for alias, value in kwargs.items():
        if not isinstance(value, _Unset):
            out[ALIASES[alias]] = value  # type: ignore[assignment]
    return out


def _injected(kind: FailureKind, reason: str | None, times: int | None) -> _Injected:
    kind = FailureKind(kind)
    if times is not None and (isinstance(times, bool) or not isinstance(times, int) or times < 1):
        raise ValueError(f"times must be a whole number >= 1 or None, got {times!r}")
    return _Injected(kind, reason or f"injected failure ({kind.value})", times)


def _consume(injected: _Injected | None) -> tuple[FailureKind, str] | None:
    """Count one read against ``injected``; its kind and reason, or None when there is none."""
    if injected is None:
        return None
    if injected.remaining is not None:
        injected.remaining -= 1
    return injected.kind, injected.reason


def _evaluate(entry: _Queue) -> dict[str, object]:
    values: dict[str, object] = {}
    if entry.sample is not None:
        values.update(_whole_sample(entry.sample))
    health = values.pop("health", "ok")
    if health not in ("ok", "degraded"):
        raise _Bad(FailureKind.MALFORMED, f"health={health!r} is not 'ok' or 'degraded'")
    for name, registered in entry.values.items():
        if callable(registered):
            try:
                values[name] = registered()
            except Exception as exc:
                raise _Bad(
                    FailureKind.SOURCE_ERROR,
                    f"the {name} callable raised {type(exc).__name__}: {exc}",
                ) from None
        else:
            values[name] = registered
    checked: dict[str, object] = {
        name: None if value is None else _check(name, value) for name, value in values.items()
    }
    checked["health"] = health
    return checked


def _whole_sample(getter: SampleGetter) -> dict[str, object]:
    try:
        got = getter()
    except Exception as exc:
        raise _Bad(
            FailureKind.SOURCE_ERROR, f"the sample callable raised {type(exc).__name__}: {exc}"
        ) from None
    if isinstance(got, QueueSample):
        return {name: getattr(got, name) for name in _FIELDS}
    if not isinstance(got, Mapping):
        raise _Bad(
            FailureKind.MALFORMED,
            f"the sample callable returned {type(got).__name__}, expected a mapping of fields",
        )
    unknown = sorted(str(key) for key in got if key not in _FIELDS)
    if unknown:
        raise _Bad(
            FailureKind.MALFORMED,
            f"the sample callable returned unknown field(s) {', '.join(unknown)}",
        )
    return dict(got)


def _problem(name: str, value: object) -> tuple[bool, str] | None:
    """Why ``value`` cannot be the field ``name`` (and whether it is not even a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return True, f"{name}={repr(value)[:60]} is not a number"
    if not math.isfinite(value) or value < 0:
        return False, f"{name}={value!r} is not a finite number >= 0"
    if name in _COUNTS and isinstance(value, float) and not value.is_integer():
        return False, f"{name}={value!r} is not a whole number"
    return None


def _check(name: str, value: object) -> int | float:
    """``value`` as the field ``name`` takes it, or _Bad (impossible_value) saying why not."""
    problem = _problem(name, value)
    if problem is not None:
        raise _Bad(FailureKind.IMPOSSIBLE_VALUE, problem[1])
    assert isinstance(value, int | float)
    # A count given as 3.0 is the count 3: QueueSample's counts are ints.
    return int(value) if name in _COUNTS else value
