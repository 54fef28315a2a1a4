"""The small hierarchy of errors admission raises on purpose."""

from __future__ import annotations

__all__ = ["AdmissionError", "AdmissionTimeout"]


class AdmissionError(Exception):
    """Base class of the errors raised by admission (bad input is ``ValueError``)."""


class AdmissionTimeout(AdmissionError, TimeoutError):
    """A waiter could not be admitted within its ``timeout``.

    ``retry_after`` is the number of seconds after which the same request,
    made again, can expect to find capacity: the time the queue ahead of it
    needs to drain at the current rate.  It is a floor, not a promise: a
    concurrency slot held by running work may keep it waiting longer.
    """

    def __init__(self, retry_after: float, *, limiter: str = "", workload_class: str = "") -> None:
        self.retry_after = retry_after
        self.limiter = limiter
        self.workload_class = workload_class
        where = f"limiter {limiter!r}" if limiter else "limiter"
        if workload_class:
            where += f", class {workload_class!r}"
        super().__init__(f"not admitted in time by {where}; retry after {retry_after:.3f}s")

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (self.retry_after, self.limiter, self.workload_class))


def _rebuild_timeout(retry_after: float, limiter: str, workload_class: str) -> AdmissionTimeout:
    return AdmissionTimeout(retry_after, limiter=limiter, workload_class=workload_class)
