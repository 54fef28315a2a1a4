"""The context manager that holds one workflow's slot, and gives it back whatever happens."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from integrations.document_conversion.records import WorkflowExecutionLimit, WorkflowSlot

if TYPE_CHECKING:
    from integrations.document_conversion.workflows import WorkflowAdmission

__all__ = ["WorkflowContext"]


class WorkflowContext:
    """The context manager :meth:`WorkflowAdmission.workflow` returns (use it once)."""

    __slots__ = ("_admission", "_class", "_id", "_limit", "_slot", "_timeout")

    def __init__(
        self,
        admission: WorkflowAdmission,
        workflow_id: str,
        workload_class: str,
        timeout: float | None,
        limit: float | None,
    ) -> None:
        self._admission = admission
        self._id = workflow_id
        self._class = workload_class
        self._timeout = timeout
        self._limit = limit
        self._slot: WorkflowSlot | None = None

    async def __aenter__(self) -> WorkflowSlot:
        admission = self._admission
        admission._check_running()
        if self._slot is not None:
            raise RuntimeError(f"workflow {self._id!r}: this context was already entered")
        if self._id in admission._ids:
            raise ValueError(f"workflow {self._id!r} is already admitted or waiting")
        admission._ids.add(self._id)
        try:
            permit = await admission.limiter.acquire(
                workload_class=self._class, timeout=self._timeout
            )
        except BaseException:
            admission._ids.discard(self._id)
            raise
        if not admission.running:  # closed while this one waited
            permit.release()
            admission._ids.discard(self._id)
            admission._check_running()
        slot = WorkflowSlot(self._id, self._class, permit, admission.clock.monotonic(), self._limit)
        self._slot = slot
        admission._admitted(slot)
        slot._scope.__enter__()
        return slot

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot = self._slot
        assert slot is not None
        admission = self._admission
        outcome = "completed" if exc_type is None else "failed"
        try:
            interrupted = bool(slot._scope.__exit__(exc_type, exc, tb))
            if exc_type is not None and isinstance(exc, anyio.get_cancelled_exc_class()):
                outcome = "cancelled"
            if slot.expired and exc_type is not None:
                # Past its limit and not completed: it must not keep running downstream.
                outcome = "limited"
                hook_error = await admission._terminate(slot)
                if interrupted:
                    raise WorkflowExecutionLimit(
                        slot.id,
                        workload_class=slot.workload_class,
                        limit_seconds=slot.limit_seconds or 0.0,
                        hook_error=hook_error,
                    ) from hook_error
        finally:
            admission._finished(slot, outcome)
