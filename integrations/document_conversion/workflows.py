"""WorkflowAdmission: ``asyncio.Semaphore(max_parallel_workflows)`` that follows the policy.

A workflow holds one concurrency slot of its workload class (``standard`` or
``expensive``) from admission until its block exits, whatever the exit.  The
registry retunes each class's parallelism, rate and floor as the policy moves;
lowering them cancels nothing in flight, it only admits less until the
workflows in flight fall under the new cap.

A workflow past its execution limit is interrupted, terminated through the
``on_execution_limit`` hook, its slot released, and its caller gets
:class:`WorkflowExecutionLimit`.  The limits are timed by one watcher task
sleeping on the clock (so virtual time drives them), owned by the admission:
run it as ``async with WorkflowAdmission(...) as admission:`` or
``await task_group.start(admission.run)``.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Self, TypeVar

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup, TaskStatus

from admission import events
from admission._tasks import start_owned, stop_owned
from admission.classes import WorkloadClass
from admission.clock import Clock
from admission.limiter import AdaptiveLimiter
from admission.registry import Registry, WorkInFlight, default_registry
from integrations.document_conversion._deadlines import Deadlines
from integrations.document_conversion.context import WorkflowContext
from integrations.document_conversion.records import (
    CONVERSION_EXTENSIONS,
    EXPENSIVE,
    STANDARD,
    ActiveWorkflow,
    WorkflowSlot,
    WorkflowStatistics,
    check_limit,
    file_name,
    normalise_extensions,
)

__all__ = ["WorkflowAdmission"]

T = TypeVar("T")
#: Terminates a workflow downstream, e.g. a workflow engine's ``terminate(id)``.
TerminateHook = Callable[[str], Awaitable[object]]

KIND = "workflow"

# The limiter's own bucket never binds: the classes' rates (set by the policy) do.
_UNBOUNDED_RATE = 1e9


class WorkflowAdmission:
    """Admits workflows by class, following the registry's policy.

    - ``max_parallel_workflows``: an overall cap on top of the class caps
      (the old semaphore's size); each class's ``minimum_floor`` stays
      reserved inside it.  ``None``: only the class caps apply.
    - ``execution_limit_seconds``: the default limit of each workflow, from
      admission; ``on_execution_limit(workflow_id)`` terminates one past it.
    - ``expensive_extensions``: files put in the ``expensive`` class
      (default :data:`CONVERSION_EXTENSIONS`).
    """

    def __init__(
        self,
        name: str = "document_conversion",
        *,
        registry: Registry | None = None,
        clock: Clock | None = None,
        max_parallel_workflows: int | None = None,
        execution_limit_seconds: float | None = None,
        on_execution_limit: TerminateHook | None = None,
        expensive_extensions: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if on_execution_limit is not None and not callable(on_execution_limit):
            raise TypeError(
                f"on_execution_limit must be an async callable, got {on_execution_limit!r}"
            )
        self.name = name
        self.registry = registry if registry is not None else default_registry()
        self.clock = clock if clock is not None else self.registry.clock
        self.execution_limit_seconds = check_limit(
            execution_limit_seconds, "execution_limit_seconds"
        )
        self.expensive_extensions = normalise_extensions(
            CONVERSION_EXTENSIONS if expensive_extensions is None else expensive_extensions
        )
        self._check_cap(max_parallel_workflows)
        self._on_execution_limit = on_execution_limit
        self._limiter = AdaptiveLimiter(
            name,
            rate=_UNBOUNDED_RATE,
            burst=_UNBOUNDED_RATE,
            max_concurrency=max_parallel_workflows,
            classes=[WorkloadClass(STANDARD), WorkloadClass(EXPENSIVE)],
            clock=self.clock,
        )
        self._state = "new"  # -> running -> closed
        self._task_group: TaskGroup | None = None
        self._run_scope: anyio.CancelScope | None = None
        self._ids: set[str] = set()  # admitted or waiting: one workflow per id
        self._slots: dict[str, WorkflowSlot] = {}
        self._deadlines = Deadlines(self.clock)
        self._started = self._completed = self._failed = self._cancelled = self._limited = 0

    # -- introspection ----------------------------------------------------------

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The limiter underneath (its ``snapshot()`` shows in-flight and waiting per class)."""
        return self._limiter

    @property
    def running(self) -> bool:
        return self._state == "running"

    def capacity(self, workload_class: str) -> int | None:
        """How many workflows of ``workload_class`` may run at once now."""
        return self._limiter.snapshot().workload_class(workload_class).max_concurrency

    def classify(self, path: str | os.PathLike[str]) -> str:
        """The workload class of a document: ``expensive`` by its extension, else ``standard``."""
        name = file_name(path)
        return EXPENSIVE if name.endswith(self.expensive_extensions) else STANDARD

    def active(self) -> tuple[ActiveWorkflow, ...]:
        """The workflows holding a slot now, oldest first."""
        now = self.clock.monotonic()
        return tuple(slot.view(now) for slot in self._slots.values())

    def statistics(self) -> WorkflowStatistics:
        return WorkflowStatistics(
            self.running,
            self.active(),
            self._started,
            self._completed,
            self._failed,
            self._cancelled,
            self._limited,
        )

    # -- admission --------------------------------------------------------------

    def workflow(
        self,
        workflow_id: str,
        *,
        path: str | os.PathLike[str] | None = None,
        workload_class: str | None = None,
        timeout: float | None = None,
        execution_limit_seconds: float | None = None,
    ) -> WorkflowContext:
        """``async with admission.workflow(id, path=...) as slot:`` holds a slot for the block.

        The class is ``workload_class``, else that of ``path``, else ``standard``.
        ``timeout``: seconds to wait for a slot (``AdmissionTimeout`` past it).
        ``execution_limit_seconds`` replaces the default limit (``math.inf``: none).
        """
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError(f"workflow_id must be a non-empty string, got {workflow_id!r}")
        if path is not None and workload_class is not None:
            raise ValueError("pass path= or workload_class=, not both")
        if workload_class is None:
            workload_class = STANDARD if path is None else self.classify(path)
        elif workload_class not in self._limiter.workload_classes:
            known = ", ".join(self._limiter.workload_classes)
            raise ValueError(f"unknown workload_class {workload_class!r} (known: {known})")
        limit = (
            self.execution_limit_seconds
            if execution_limit_seconds is None
            else check_limit(execution_limit_seconds, "execution_limit_seconds")
        )
        return WorkflowContext(self, workflow_id, workload_class, timeout, limit)

    async def run_workflow(
        self,
        workflow_id: str,
        *,
        schedule: Callable[[str], Awaitable[object]],
        poll: Callable[[str], Awaitable[T | None]],
        poll_interval: float = 1.0,
        path: str | os.PathLike[str] | None = None,
        workload_class: str | None = None,
        timeout: float | None = None,
        execution_limit_seconds: float | None = None,
    ) -> T:
        """Schedule a workflow in a slot, then poll it until it answers something but ``None``.

        ``poll(workflow_id)`` is called at once and then every ``poll_interval``
        seconds; its first answer that is not ``None`` is returned.
        """
        if not (isinstance(poll_interval, int | float) and 0 < poll_interval < float("inf")):
            raise ValueError(f"poll_interval must be a positive number, got {poll_interval!r}")
        context = self.workflow(
            workflow_id,
            path=path,
            workload_class=workload_class,
            timeout=timeout,
            execution_limit_seconds=execution_limit_seconds,
        )
        async with context:
            await schedule(workflow_id)
            while True:
                answer = await poll(workflow_id)
                if answer is not None:
                    return answer
                await self.clock.sleep(poll_interval)

    # -- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._task_group is not None:
            raise RuntimeError(f"WorkflowAdmission {self.name!r} is already entered")
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
        self._close()
        # Only the watcher runs there, and it only ends by this cancellation.
        await stop_owned(task_group)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Register with the registry and time execution limits until closed or cancelled."""
        if self._state != "new":
            raise RuntimeError(f"WorkflowAdmission {self.name!r} is {self._state}, not new")
        self.registry.add_limiter(self._limiter)
        try:
            self.registry.add_activity(self.name, self._report)
        except BaseException:
            self.registry.remove_limiter(self.name)
            raise
        self._state = "running"
        try:
            with anyio.CancelScope() as self._run_scope:
                task_status.started()
                await self._deadlines.watch(lambda: len(self._slots))
        finally:
            self._close()

    async def aclose(self) -> None:
        """Stop: refuse new workflows, unregister, stop the watcher.

        Workflows in flight keep their slots until their blocks exit, but their
        execution limits are no longer timed.
        """
        self._close()
        await anyio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._state == "closed":
            return
        was_running, self._state = self._state == "running", "closed"
        if self._run_scope is not None:
            self._run_scope.cancel()
        if was_running:
            self.registry.remove_activity(self.name)
            if self.registry.limiters.get(self.name) is self._limiter:
                self.registry.remove_limiter(self.name)

    # -- internals: slots -------------------------------------------------------

    def _check_running(self) -> None:
        if self._state != "running":
            raise RuntimeError(
                f"WorkflowAdmission {self.name!r} is {self._state}: use "
                "`async with admission:` or `await task_group.start(admission.run)`"
            )

    def _check_cap(self, cap: int | None) -> None:
        if cap is None:
            return
        if isinstance(cap, bool) or not isinstance(cap, int):
            raise TypeError(f"max_parallel_workflows must be an int or None, got {cap!r}")
        # Every floor any preset may set must fit, or the policy could not retune.
        floors = 0
        for name in (STANDARD, EXPENSIVE):
            floors += max(
                (
                    limits.minimum_floor
                    for preset in self.registry.config.presets.values()
                    if (policy := preset.classes.get(name)) is not None
                    for limits in (policy.normal, policy.warning, policy.critical)
                ),
                default=0,
            )
        if cap < max(1, floors):
            raise ValueError(
                f"max_parallel_workflows={cap} is below the classes' minimum floors ({floors})"
            )

    def _admitted(self, slot: WorkflowSlot) -> None:
        self._slots[slot.id] = slot
        self._started += 1
        self._deadlines.add(slot)

    def _finished(self, slot: WorkflowSlot, outcome: str) -> None:
        self._slots.pop(slot.id, None)
        self._ids.discard(slot.id)
        slot._release()
        if outcome == "completed":
            self._completed += 1
        elif outcome == "limited":
            self._limited += 1
        elif outcome == "cancelled":
            self._cancelled += 1
        else:
            self._failed += 1

    def _report(self) -> list[WorkInFlight]:
        return [
            WorkInFlight(s.id, s.workload_class, s.started_at, kind=KIND)
            for s in self._slots.values()
        ]

    async def _terminate(self, slot: WorkflowSlot) -> BaseException | None:
        """Call the hook once for a workflow past its limit; its error is returned, not raised."""
        log = events.logger()
        log.warning(
            events.WORKFLOW_EXECUTION_LIMIT,
            limiter=self.name,
            workflow_id=slot.id,
            workload_class=slot.workload_class,
            limit_seconds=slot.limit_seconds,
        )
        if self._on_execution_limit is None:
            return None
        # Shielded: a shutdown arriving now must not leave the workflow running.
        with anyio.CancelScope(shield=True):
            try:
                await self._on_execution_limit(slot.id)
            except Exception as exc:
                log.error(
                    events.WORKFLOW_TERMINATE_ERROR,
                    limiter=self.name,
                    workflow_id=slot.id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                return exc
        return None

    def __repr__(self) -> str:
        return (
            f"<WorkflowAdmission {self.name!r} {self._state} active={len(self._slots)} "
            f"waiting={self._limiter.waiting}>"
        )
