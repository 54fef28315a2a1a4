"""What a shared budget's backend answers, and what a limiter asks of it.

A backend keeps one token bucket per limiter name somewhere every replica
reaches (Redis: :class:`~admission.distributed.RedisBackend`).  Each call is one
atomic round trip on the backend's own clock; the limiter decides everything
else (queues, classes, caps) locally.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["BackendUnavailable", "SharedBackend", "TakeAnswer"]


class BackendUnavailable(Exception):
    """The backend did not answer (timeout, refused connection, an error reply)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TakeAnswer(NamedTuple):
    """One round trip's outcome.

    ``granted``: how many of the costs asked for (in order) were taken.
    ``retry_after``: seconds until the first one not taken could be (0 if all
    were).  ``tokens``, ``rate``, ``burst``: the shared bucket after the call,
    as stored (a retune by any replica shows here).
    """

    granted: int
    retry_after: float
    tokens: float
    rate: float
    burst: float


@runtime_checkable
class SharedBackend(Protocol):
    """A store of shared token buckets, and how a limiter falls back without it."""

    #: Seconds before a limiter on its local fallback asks the backend again (doubling).
    retry_interval: float
    #: The longest wait between two such attempts.
    max_retry_interval: float
    #: Waits are stretched by up to this fraction, so replicas do not ask in step.
    jitter: float

    def bucket_key(self, name: str) -> str:
        """Where the bucket of the limiter ``name`` lives."""
        ...

    def fallback_limits(self, rate: float, burst: float) -> tuple[float, float]:
        """The local bucket (rate, burst) a replica uses while the backend is away."""
        ...

    async def take(
        self,
        key: str,
        costs: Sequence[float],
        *,
        rate: float,
        burst: float,
        initial: float,
        configure: bool,
    ) -> TakeAnswer:
        """Take each cost in turn while the tokens are there; stop at the first that is not.

        No costs only reads (and configures).

        ``rate``/``burst``/``initial`` create a missing bucket; ``configure``
        stores ``rate`` and ``burst`` over the bucket's own (a retune).
        Raises :class:`BackendUnavailable` when the backend does not answer.
        """
        ...

    async def refund(self, key: str, amount: float) -> None:
        """Give back tokens taken for an admission that did not happen."""
        ...
