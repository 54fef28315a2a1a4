"""One status for every replica: each publishes its registry's status to Redis with a TTL.

:class:`FleetPublisher` writes ``{key_prefix}fleet:{replica_id}`` (the replica's
``Registry.status()`` with its id, host and the time) every ``interval``
seconds, expiring after ``ttl`` seconds, and lists the replica in the index
``{key_prefix}fleet``.  :class:`FleetReader` reads them back as a
:class:`FleetStatus`: a replica that stopped publishing is gone once its key
expired (Redis keeps the time, so the replicas' clocks do not matter).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Literal, Self

import anyio
from anyio.abc import TaskGroup, TaskStatus
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from admission import events
from admission._tasks import start_owned, stop_owned
from admission.clock import Clock
from admission.distributed._limiter import SharedLimiter
from admission.distributed.base import BackendUnavailable
from admission.distributed.redis_backend import RedisBackend
from admission.registry import Registry, default_registry
from admission.status import SharedBudget, Status

__all__ = [
    "FleetClassTotals",
    "FleetPublisher",
    "FleetReader",
    "FleetStatus",
    "FleetTotals",
    "ReplicaClass",
    "ReplicaStatus",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReplicaClass(_Frozen):
    """One workload class as one replica runs it."""

    class_name: str
    level: Literal["normal", "warning", "critical", "fail_safe"]
    active_parallelism: int
    minimum_floor: int
    rate: float
    burst: float
    fail_safe: bool
    in_flight: int
    waiting: int
    deferred_total: int
    shared_budget: SharedBudget | None = None


class ReplicaStatus(_Frozen):
    """One replica as it last published itself."""

    replica_id: str
    host: str
    last_seen: datetime = Field(description="When the replica last published (its own clock).")
    queue_pressure_level: Literal["normal", "warning", "critical"]
    fail_safe: bool
    active_preset: str
    monitor: Literal["running", "stopped", "absent"]
    admitted_total: int
    classes: tuple[ReplicaClass, ...]
    warnings: tuple[str, ...]


class FleetClassTotals(_Frozen):
    """One workload class summed over the replicas that run it."""

    class_name: str
    replicas: int
    active_parallelism: int = Field(description="The sum of the replicas' parallelism.")
    in_flight: int
    waiting: int
    deferred_total: int
    levels: dict[str, int] = Field(description="How many replicas run the class at each level.")


class FleetTotals(_Frozen):
    """The whole fleet."""

    replicas: int
    fail_safe_replicas: int
    shared_budget_unavailable_replicas: int
    in_flight: int
    waiting: int
    admitted_total: int
    deferred_total: int
    classes: tuple[FleetClassTotals, ...]


class FleetStatus(_Frozen):
    """Every replica that published within its TTL, and the totals over them."""

    replicas: tuple[ReplicaStatus, ...]
    totals: FleetTotals
    warnings: tuple[str, ...] = ()


def _fleet_key(backend: RedisBackend, replica_id: str) -> str:
    return f"{backend.key_prefix}fleet:{replica_id}"


def _index_key(backend: RedisBackend) -> str:
    return f"{backend.key_prefix}fleet"


class FleetPublisher:
    """Publishes this replica's registry status every ``interval`` seconds, kept ``ttl`` seconds.

    Also pushes pending retunes of the registry's shared limiters (one round
    trip each), so a retune reaches the fleet even when no admission follows.
    Use ``async with FleetPublisher(backend):`` or ``await tg.start(publisher.run)``.
    A Redis that does not answer is logged once and retried; it never stops the loop.
    """

    def __init__(
        self,
        backend: RedisBackend,
        *,
        registry: Registry | None = None,
        replica_id: str | None = None,
        host: str | None = None,
        interval: float = 5.0,
        ttl: float | None = None,
    ) -> None:
        if not (isinstance(interval, int | float) and 0 < interval < float("inf")):
            raise ValueError(f"interval must be a positive number of seconds, got {interval!r}")
        ttl = 3 * interval if ttl is None else ttl
        if not (isinstance(ttl, int | float) and interval < ttl < float("inf")):
            raise ValueError(
                f"ttl must be a number of seconds above interval={interval}, got {ttl!r}"
            )
        if replica_id is not None and (not isinstance(replica_id, str) or not replica_id.strip()):
            raise ValueError(f"replica_id must be a non-empty string, got {replica_id!r}")
        self.backend = backend
        self.registry = registry if registry is not None else default_registry()
        self.host = host if host is not None else socket.gethostname()
        self.replica_id = replica_id or f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.interval = float(interval)
        self.ttl = float(ttl)
        self.published = 0
        self.last_error: str | None = None
        self._task_group: TaskGroup | None = None

    @property
    def clock(self) -> Clock:
        return self.registry.clock

    async def publish(self) -> bool:
        """Publish once; ``False`` (and the reason in ``last_error``) if Redis did not answer."""
        for limiter in self.registry.limiters.values():
            if isinstance(limiter, SharedLimiter):
                await limiter.sync()
        payload = json.dumps(
            {
                "replica_id": self.replica_id,
                "host": self.host,
                "last_seen": self.clock.wall().isoformat(),
                "status": self.registry.status().model_dump(mode="json"),
            }
        )
        backend = self.backend
        try:
            client = backend.redis()
            async with client.pipeline(transaction=True) as pipe:
                pipe.set(_fleet_key(backend, self.replica_id), payload, px=round(self.ttl * 1000))
                pipe.sadd(_index_key(backend), self.replica_id)
                await backend.run(pipe.execute())
        except BackendUnavailable as exc:
            if self.last_error != exc.reason:
                events.logger().warning(
                    events.FLEET_PUBLISH_ERROR, replica=self.replica_id, reason=exc.reason
                )
            self.last_error = exc.reason
            return False
        self.last_error = None
        self.published += 1
        return True

    async def withdraw(self) -> None:
        """Remove this replica from the fleet now (a clean shutdown does not wait for the TTL)."""
        backend = self.backend
        try:
            client = backend.redis()
            await backend.run(client.delete(_fleet_key(backend, self.replica_id)))
            await backend.run(client.srem(_index_key(backend), self.replica_id))
        except BackendUnavailable:
            pass  # the TTL removes it

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Publish every ``interval`` seconds until cancelled; started after the first."""
        await self.publish()
        task_status.started()
        while True:
            await self.clock.sleep(self.interval)
            await self.publish()

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError("this FleetPublisher is already entered")
        self._task_group = await start_owned(self.run)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        await stop_owned(task_group)
        with anyio.CancelScope(shield=True):
            await self.withdraw()


class FleetReader:
    """Reads the fleet that :class:`FleetPublisher` instances keep in Redis."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend

    async def read(self) -> FleetStatus:
        """Every replica whose key has not expired (``BackendUnavailable`` if Redis is away)."""
        backend = self.backend
        client = backend.redis()
        index = _index_key(backend)
        members = sorted(
            m.decode() if isinstance(m, bytes) else str(m)
            for m in await backend.run(client.smembers(index))
        )
        payloads = (
            await backend.run(client.mget([_fleet_key(backend, m) for m in members]))
            if members
            else []
        )
        replicas: list[ReplicaStatus] = []
        gone: list[str] = []
        warnings: list[str] = []
        for member, payload in zip(members, payloads, strict=True):
            if payload is None:
                gone.append(member)
                continue
            try:
                replicas.append(_replica(json.loads(payload)))
            except (ValueError, KeyError, ValidationError) as exc:
                warnings.append(f"replica {member!r}: unreadable status ({type(exc).__name__})")
        if gone:
            await backend.run(client.srem(index, *gone))
        return FleetStatus(
            replicas=tuple(replicas), totals=_totals(replicas), warnings=tuple(warnings)
        )


def _replica(data: dict[str, object]) -> ReplicaStatus:
    status = Status.model_validate(data["status"])
    classes = tuple(
        ReplicaClass(
            class_name=c.class_name,
            level=c.level,
            active_parallelism=c.active_parallelism,
            minimum_floor=c.minimum_floor,
            rate=c.rate,
            burst=c.burst,
            fail_safe=c.fail_safe,
            in_flight=c.in_flight,
            waiting=c.waiting,
            deferred_total=c.deferred_total,
            shared_budget=c.shared_budget,
        )
        for c in status.class_states
    )
    return ReplicaStatus(
        replica_id=str(data["replica_id"]),
        host=str(data["host"]),
        last_seen=datetime.fromisoformat(str(data["last_seen"])),
        queue_pressure_level=status.queue_pressure_level,
        fail_safe=status.fail_safe,
        active_preset=status.active_preset,
        monitor=status.monitor,
        admitted_total=sum(e.admitted_total for c in status.class_states for e in c.limiters),
        classes=classes,
        warnings=status.warnings,
    )


def _totals(replicas: Sequence[ReplicaStatus]) -> FleetTotals:
    names = sorted({c.class_name for r in replicas for c in r.classes})
    per_class = []
    for name in names:
        entries = [c for r in replicas for c in r.classes if c.class_name == name]
        levels: dict[str, int] = {}
        for entry in entries:
            levels[entry.level] = levels.get(entry.level, 0) + 1
        per_class.append(
            FleetClassTotals(
                class_name=name,
                replicas=len(entries),
                active_parallelism=sum(c.active_parallelism for c in entries),
                in_flight=sum(c.in_flight for c in entries),
                waiting=sum(c.waiting for c in entries),
                deferred_total=sum(c.deferred_total for c in entries),
                levels=levels,
            )
        )
    classes = [c for r in replicas for c in r.classes]
    return FleetTotals(
        replicas=len(replicas),
        fail_safe_replicas=sum(r.fail_safe for r in replicas),
        shared_budget_unavailable_replicas=sum(
            any(c.shared_budget == "unavailable" for c in r.classes) for r in replicas
        ),
        in_flight=sum(c.in_flight for c in classes),
        waiting=sum(c.waiting for c in classes),
        admitted_total=sum(r.admitted_total for r in replicas),
        deferred_total=sum(c.deferred_total for c in classes),
        classes=tuple(per_class),
    )
