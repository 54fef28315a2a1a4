"""Document-conversion workflows on the virtual clock, each body held until told to finish.

The policy classes' parallelism per preset and level (presets.toml):
conservative 2/1, balanced 3/1, aggressive 4/2 under normal and 4/1 under
warning and critical (standard/expensive); fail-safe takes conservative's
critical limits, 2/1.  The expensive class's floor is 1 everywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from admission.policy import QueueSample, parse_config
from admission.registry import Registry
from admission.testing import VirtualClock
from integrations.document_conversion import WorkflowAdmission

CONVERSION = "files-document_conversion_input"
#: (standard, expensive) parallelism.
CAPS = {
    ("conservative", "normal"): (2, 1),
    ("conservative", "warning"): (2, 1),
    ("conservative", "critical"): (2, 1),
    ("balanced", "normal"): (3, 1),
    ("balanced", "warning"): (3, 1),
    ("balanced", "critical"): (3, 1),
    ("aggressive", "normal"): (4, 2),
    ("aggressive", "warning"): (4, 1),
    ("aggressive", "critical"): (4, 1),
}


def registry(clock: VirtualClock, preset: str = "balanced") -> Registry:
    config = parse_config({"preset": preset, "queues": [{"name": CONVERSION}]})
    return Registry(config, clock=clock)


def caps(admission: WorkflowAdmission) -> tuple[int | None, int | None]:
    return admission.capacity("standard"), admission.capacity("expensive")


def feed(reg: Registry, ready: int, start: float, end: float, step: float = 5.0) -> None:
    """Samples of ``ready`` messages every ``step`` seconds from ``start`` to ``end``."""
    at = start
    while at <= end:
        reg.observe({CONVERSION: QueueSample(CONVERSION, at, ready)}, now=at)
        at += step


@dataclass
class Workflows:
    """Runs workflows in tasks; each body holds its slot until :meth:`finish`."""

    admission: WorkflowAdmission
    task_group: TaskGroup
    clock: VirtualClock
    running: set[str] = field(default_factory=set)
    outcome: dict[str, Any] = field(default_factory=dict)  # "completed" or the exception
    _finish: dict[str, anyio.Event] = field(default_factory=dict)
    _scopes: dict[str, anyio.CancelScope] = field(default_factory=dict)

    async def start(self, workflow_id: str, **options: Any) -> None:
        """Start one, and let it run until it holds its slot or waits in line (FIFO)."""
        self._finish[workflow_id] = anyio.Event()
        self._scopes[workflow_id] = anyio.CancelScope()
        self.task_group.start_soon(self._run, workflow_id, options)
        await self.clock.advance(0)

    async def finish(self, *workflow_ids: str) -> None:
        """Let these bodies complete, and everything that follows run."""
        for workflow_id in workflow_ids:
            self._finish[workflow_id].set()
        await self.clock.advance(0)

    def cancel(self, workflow_id: str) -> None:
        self._scopes[workflow_id].cancel()

    async def _run(self, workflow_id: str, options: dict[str, Any]) -> None:
        with self._scopes[workflow_id]:
            try:
                async with self.admission.workflow(workflow_id, **options):
                    self.running.add(workflow_id)
                    await self._finish[workflow_id].wait()
                self.outcome[workflow_id] = "completed"
            except Exception as exc:
                self.outcome[workflow_id] = exc
            finally:
                self.running.discard(workflow_id)
        if self._scopes[workflow_id].cancelled_caught:
            self.outcome[workflow_id] = "cancelled"


@asynccontextmanager
async def workflows(admission: WorkflowAdmission, clock: VirtualClock) -> AsyncIterator[Workflows]:
    """``async with workflows(admission, clock) as w:``; bodies left running are cancelled."""
    async with admission, anyio.create_task_group() as task_group:
        runner = Workflows(admission, task_group, clock)
        yield runner
        task_group.cancel_scope.cancel()
