"""What a workflow admission hands out and reports: slots, snapshots, errors, classes."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath

import anyio

from admission.errors import AdmissionError
from admission.limiter import Permit

__all__ = [
    "CONVERSION_EXTENSIONS",
    "EXPENSIVE",
    "STANDARD",
    "ActiveWorkflow",
    "WorkflowExecutionLimit",
    "WorkflowSlot",
    "WorkflowStatistics",
]

STANDARD = "standard"
EXPENSIVE = "expensive"
#: DESIGN.md: the documents whose conversion is expensive.  The policy's own
#: ``classes.expensive.extensions`` default to file_enrichment's archive list,
#: so conversion keeps its list here; pass ``expensive_extensions=`` to change it.
CONVERSION_EXTENSIONS = (".pdf", ".docx", ".xls", ".xlsx")


class WorkflowExecutionLimit(AdmissionError):
    """A workflow ran past its execution limit: it was terminated and its slot released.

    ``hook_error`` is the exception ``on_execution_limit`` raised, if it did
    (the workflow may then still be running downstream).
    """

    def __init__(
        self,
        workflow_id: str,
        *,
        workload_class: str,
        limit_seconds: float,
        hook_error: BaseException | None = None,
    ) -> None:
        self.workflow_id = workflow_id
        self.workload_class = workload_class
        self.limit_seconds = limit_seconds
        self.hook_error = hook_error
        how = "terminated" if hook_error is None else "termination failed"
        super().__init__(
            f"workflow {workflow_id!r} ({workload_class}) ran past its execution limit "
            f"of {limit_seconds:g}s: {how}, slot released"
        )


@dataclass(frozen=True, slots=True)
class ActiveWorkflow:
    """A workflow holding a slot, as seen at one instant (monotonic clock times)."""

    id: str
    workload_class: str
    started_at: float
    age_seconds: float
    deadline: float | None
    waited_seconds: float


@dataclass(frozen=True, slots=True)
class WorkflowStatistics:
    """Counters of a workflow admission since it was built."""

    running: bool
    active: tuple[ActiveWorkflow, ...]
    started_total: int
    completed_total: int
    failed_total: int
    cancelled_total: int
    execution_limited_total: int


class WorkflowSlot:
    """The slot one admitted workflow holds, from admission until its block exits."""

    __slots__ = (
        "_permit",
        "_scope",
        "deadline",
        "expired",
        "id",
        "limit_seconds",
        "started_at",
        "workload_class",
    )

    def __init__(
        self,
        workflow_id: str,
        workload_class: str,
        permit: Permit,
        started_at: float,
        limit_seconds: float | None,
    ) -> None:
        self.id = workflow_id
        self.workload_class = workload_class
        self.started_at = started_at
        self.limit_seconds = limit_seconds
        #: When the execution limit passes (monotonic), ``None`` without a limit.
        self.deadline = None if limit_seconds is None else started_at + limit_seconds
        #: Set by the watcher when the deadline passed while the slot was held.
        self.expired = False
        # Cancelled by the watcher only, so catching its cancellation means "the limit".
        self._scope = anyio.CancelScope()
        self._permit = permit

    @property
    def waited_seconds(self) -> float:
        """Seconds the workflow waited for its slot."""
        return self._permit.waited_seconds

    @property
    def released(self) -> bool:
        return self._permit.released

    def _release(self) -> None:
        self._permit.release()

    def view(self, now: float) -> ActiveWorkflow:
        return ActiveWorkflow(
            self.id,
            self.workload_class,
            self.started_at,
            max(0.0, now - self.started_at),
            self.deadline,
            self.waited_seconds,
        )

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<WorkflowSlot {self.id!r} {self.workload_class} {state}>"


def normalise_extensions(extensions: Iterable[str]) -> tuple[str, ...]:
    """Lower-case extensions with their dot (``"PDF"`` and ``".pdf"`` are ``".pdf"``)."""
    if isinstance(extensions, str):
        raise TypeError(f"expensive_extensions must be a list of strings, got {extensions!r}")
    found: list[str] = []
    for ext in extensions:
        if not isinstance(ext, str) or not ext.strip(". "):
            raise ValueError(f"expensive_extensions: {ext!r} is not a file extension")
        ext = ext.strip().lower()
        found.append(ext if ext.startswith(".") else f".{ext}")
    return tuple(dict.fromkeys(found))


def file_name(path: str | os.PathLike[str]) -> str:
    return PurePath(os.fspath(path)).name.lower()


def check_limit(value: float | None, field: str) -> float | None:
    """An execution limit: ``None`` or infinity (no limit) or seconds > 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{field} must be a number of seconds or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"{field} must be > 0, got {value!r}")
    return None if math.isinf(value) else float(value)
