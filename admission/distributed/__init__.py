"""Beyond one process: a budget shared by every replica, and one status for the fleet.

``AdaptiveLimiter(name, rate=, burst=, backend=RedisBackend(url))`` shares its
rate and burst with every process that uses the same name and Redis; the rest
of the limiter (classes, caps, FIFO, retune, snapshot) works as it does alone.
:class:`FleetPublisher` puts each replica's status in Redis with a TTL and
:class:`FleetReader` reads the fleet back (the web_api router's ``GET /fleet``).

Nothing here imports redis until a backend is first used (the ``redis`` extra).
"""

from admission.distributed._limiter import SharedLimiter
from admission.distributed.base import BackendUnavailable, SharedBackend, TakeAnswer
from admission.distributed.fleet import (
    FleetClassTotals,
    FleetPublisher,
    FleetReader,
    FleetStatus,
    FleetTotals,
    ReplicaClass,
    ReplicaStatus,
)
from admission.distributed.redis_backend import RedisBackend

__all__ = [
    "BackendUnavailable",
    "FleetClassTotals",
    "FleetPublisher",
    "FleetReader",
    "FleetStatus",
    "FleetTotals",
    "RedisBackend",
    "ReplicaClass",
    "ReplicaStatus",
    "SharedBackend",
    "SharedLimiter",
    "TakeAnswer",
]
