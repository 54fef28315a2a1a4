"""WorkflowAdmission gives every slot back: timeouts, cancellation, errors, execution limits."""

from __future__ import annotations

import math

import anyio
import pytest
from conversion_helpers import Workflows, registry, workflows
from structlog.testing import capture_logs

from admission import AdmissionTimeout
from admission.registry import Registry
from admission.testing import VirtualClock
from integrations.document_conversion import WorkflowAdmission, WorkflowExecutionLimit

pytestmark = pytest.mark.anyio


def held(admission: WorkflowAdmission, workload_class: str = "expensive") -> tuple[int, int]:
    """(in flight, waiting) of one class of the limiter underneath."""
    snap = admission.limiter.snapshot().workload_class(workload_class)
    return snap.in_flight, snap.waiting


class Terminator:
    """An ``on_execution_limit`` hook that records each call and when it came."""

    def __init__(self, clock: VirtualClock, error: Exception | None = None) -> None:
        self.clock = clock
        self.error = error
        self.calls: list[tuple[str, float]] = []

    async def __call__(self, workflow_id: str) -> None:
        self.calls.append((workflow_id, self.clock.monotonic()))
        if self.error is not None:
            raise self.error


async def test_a_timeout_waiting_for_a_slot_holds_nothing(admission_clock: VirtualClock) -> None:
    admission = WorkflowAdmission(registry=registry(admission_clock))
    async with workflows(admission, admission_clock) as w:
        await w.start("running", path="a.pdf")
        await w.start("late", path="b.pdf", timeout=5)
        assert held(admission) == (1, 1)
        await admission_clock.advance(4.999)
        assert "late" not in w.outcome
        await admission_clock.advance(0.001)
        error = w.outcome["late"]
        assert isinstance(error, AdmissionTimeout)
        assert error.retry_after >= 0
        assert (error.limiter, error.workload_class) == ("document_conversion", "expensive")
        assert held(admission) == (1, 0)
        assert admission.limiter.snapshot().workload_class("expensive").timed_out_total == 1
        await w.finish("running")
        assert held(admission) == (0, 0)
        await w.start("late", path="b.pdf", timeout=5)  # its id is free again
        assert "late" in w.running
        assert admission.statistics().started_total == 2


async def test_a_cancelled_waiter_holds_nothing(admission_clock: VirtualClock) -> None:
    admission = WorkflowAdmission(registry=registry(admission_clock))
    async with workflows(admission, admission_clock) as w:
        await w.start("running", path="a.pdf")
        await w.start("waiting", path="b.pdf")
        await w.start("next", path="c.pdf")
        assert held(admission) == (1, 2)
        w.cancel("waiting")
        await admission_clock.advance(0)
        assert w.outcome == {"waiting": "cancelled"}
        assert held(admission) == (1, 1)
        assert admission.limiter.snapshot().workload_class("expensive").cancelled_total == 1
        await w.finish("running")
        await admission_clock.advance(1)  # a token at balanced's expensive rate 2
        assert w.running == {"next"}
        assert admission.statistics().started_total == 2


async def test_a_cancelled_caller_gives_its_slot_back(admission_clock: VirtualClock) -> None:
    terminate = Terminator(admission_clock)
    reg = registry(admission_clock)
    admission = WorkflowAdmission(
        registry=reg, execution_limit_seconds=60, on_execution_limit=terminate
    )
    async with workflows(admission, admission_clock) as w:
        await w.start("running", path="a.pdf")
        await w.start("next", path="b.pdf")
        await admission_clock.advance(10)
        assert [a.id for a in reg.class_status("expensive").active] == ["running"]
        w.cancel("running")
        await admission_clock.advance(0)
        assert w.outcome == {"running": "cancelled"}
        assert w.running == {"next"}
        assert [a.id for a in reg.class_status("expensive").active] == ["next"]
        assert held(admission) == (1, 0)
        stats = admission.statistics()
        assert (stats.cancelled_total, stats.execution_limited_total) == (1, 0)
        await admission_clock.advance(60)  # "running" is gone: only "next" hits its limit
        assert [call[0] for call in terminate.calls] == ["next"]


async def test_a_body_that_raises_gives_its_slot_back_and_its_error_as_is(
    admission_clock: VirtualClock,
) -> None:
    seen: list[tuple[int, int]] = []

    async def convert(admission: WorkflowAdmission) -> None:
        async with admission.workflow("wf", path="a.pdf"):
            seen.append(held(admission))
            raise KeyError("conversion failed")

    async with WorkflowAdmission(registry=registry(admission_clock)) as admission:
        with pytest.raises(KeyError, match="conversion failed"):
            await convert(admission)
        assert seen == [(1, 0)]
        assert held(admission) == (0, 0)
        assert admission.active() == ()
        assert admission.statistics().failed_total == 1


async def test_a_workflow_past_its_limit_is_terminated_once_and_its_slot_freed(
    admission_clock: VirtualClock,
) -> None:
    terminate = Terminator(admission_clock)
    reg = registry(admission_clock)
    admission = WorkflowAdmission(
        registry=reg, execution_limit_seconds=30, on_execution_limit=terminate
    )
    with capture_logs() as logs:
        async with workflows(admission, admission_clock) as w:
            await w.start("stuck", path="huge.pdf")
            await w.start("next", path="small.pdf", execution_limit_seconds=math.inf)
            await admission_clock.advance(29.999)
            assert (terminate.calls, w.running) == ([], {"stuck"})
            await admission_clock.advance(0.001)
            assert terminate.calls == [("stuck", 30.0)]
            error = w.outcome["stuck"]
            assert isinstance(error, WorkflowExecutionLimit)
            assert (error.workflow_id, error.workload_class) == ("stuck", "expensive")
            assert error.limit_seconds == 30
            assert error.hook_error is None
            assert "'stuck' (expensive) ran past its execution limit of 30s" in str(error)
            assert w.running == {"next"}  # the freed slot went to the next in line
            assert [a.id for a in reg.class_status("expensive").active] == ["next"]
            await admission_clock.advance(600)  # "next" has no limit
            assert terminate.calls == [("stuck", 30.0)]
            assert admission.statistics().execution_limited_total == 1
    (event,) = [e for e in logs if e["event"] == "admission.workflow.execution_limit"]
    assert (event["workflow_id"], event["limit_seconds"]) == ("stuck", 30)


async def test_a_later_workflow_with_a_shorter_limit_is_cut_first(
    admission_clock: VirtualClock,
) -> None:
    terminate = Terminator(admission_clock)
    admission = WorkflowAdmission(
        registry=registry(admission_clock),
        execution_limit_seconds=100,
        on_execution_limit=terminate,
    )
    async with workflows(admission, admission_clock) as w:
        await w.start("long")
        await admission_clock.advance(1)
        await w.start("short", execution_limit_seconds=10)
        await w.start("done-in-time", execution_limit_seconds=20)
        await admission_clock.advance(15)
        await w.finish("done-in-time")
        await admission_clock.advance(200)
        assert terminate.calls == [("short", 11.0), ("long", 100.0)]
        assert w.outcome["done-in-time"] == "completed"
        assert held(admission, "standard") == (0, 0)


async def test_a_failing_hook_still_frees_the_slot_and_is_named_in_the_error(
    admission_clock: VirtualClock,
) -> None:
    terminate = Terminator(admission_clock, error=ConnectionError("engine unreachable"))
    admission = WorkflowAdmission(
        registry=registry(admission_clock),
        execution_limit_seconds=5,
        on_execution_limit=terminate,
    )
    with capture_logs() as logs:
        async with workflows(admission, admission_clock) as w:
            await w.start("wf", path="a.pdf")
            await admission_clock.advance(5)
    error = w.outcome["wf"]
    assert isinstance(error, WorkflowExecutionLimit)
    assert error.hook_error is terminate.error
    assert error.__cause__ is terminate.error
    assert "termination failed" in str(error)
    assert held(admission) == (0, 0)
    assert [e["error"] for e in logs if e["event"] == "admission.workflow.terminate_error"] == [
        "ConnectionError: engine unreachable"
    ]


async def test_without_a_hook_the_body_is_still_interrupted_and_the_slot_freed(
    admission_clock: VirtualClock,
) -> None:
    admission = WorkflowAdmission(registry=registry(admission_clock), execution_limit_seconds=5)
    async with workflows(admission, admission_clock) as w:
        await w.start("wf")
        await admission_clock.advance(5)
        assert isinstance(w.outcome["wf"], WorkflowExecutionLimit)
        assert held(admission, "standard") == (0, 0)


async def test_run_workflow_schedules_then_polls_until_an_answer(
    admission_clock: VirtualClock,
) -> None:
    scheduled: list[tuple[str, float]] = []
    polls: list[float] = []

    async def schedule(workflow_id: str) -> None:
        scheduled.append((workflow_id, admission_clock.monotonic()))

    async def poll(workflow_id: str) -> str | None:
        polls.append(admission_clock.monotonic())
        return "COMPLETED" if len(polls) == 3 else None

    async with WorkflowAdmission(registry=registry(admission_clock)) as admission:
        async with anyio.create_task_group() as tg:

            async def convert() -> None:
                answer = await admission.run_workflow(
                    "wf-1", schedule=schedule, poll=poll, poll_interval=2, path="a.docx"
                )
                assert answer == "COMPLETED"

            tg.start_soon(convert)
            await admission_clock.advance(0)
            assert [a.id for a in admission.active()] == ["wf-1"]
            await admission_clock.advance(10)
        assert scheduled == [("wf-1", 0.0)]
        assert polls == [0.0, 2.0, 4.0]
        assert admission.active() == ()
        with pytest.raises(ValueError, match="poll_interval must be a positive number"):
            await admission.run_workflow("wf-2", schedule=schedule, poll=poll, poll_interval=0)


async def test_run_workflow_past_its_limit_raises_and_terminates(
    admission_clock: VirtualClock,
) -> None:
    terminate = Terminator(admission_clock)

    async def never_done(workflow_id: str) -> None:
        return None

    admission = WorkflowAdmission(registry=registry(admission_clock), on_execution_limit=terminate)
    async with admission, anyio.create_task_group() as tg:
        outcome: list[BaseException] = []

        async def convert() -> None:
            try:
                await admission.run_workflow(
                    "wf",
                    schedule=never_done,
                    poll=never_done,
                    execution_limit_seconds=7.5,
                )
            except WorkflowExecutionLimit as exc:
                outcome.append(exc)

        tg.start_soon(convert)
        await admission_clock.advance(10)
    assert terminate.calls == [("wf", 7.5)]
    assert [type(e) for e in outcome] == [WorkflowExecutionLimit]


@pytest.mark.parametrize("value", [0, -1, math.nan, "5"])
def test_bad_execution_limits_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="execution_limit_seconds must be"):
        WorkflowAdmission(registry=Registry(), execution_limit_seconds=value)  # type: ignore[arg-type]


async def test_the_slot_is_held_until_the_hook_has_terminated_even_through_a_shutdown(
    admission_clock: VirtualClock,
) -> None:
    finished: list[float] = []

    async def slow_terminate(workflow_id: str) -> None:
        await admission_clock.sleep(2)  # the workflow engine takes its time
        finished.append(admission_clock.monotonic())

    admission = WorkflowAdmission(
        registry=registry(admission_clock),
        execution_limit_seconds=5,
        on_execution_limit=slow_terminate,
    )
    async with workflows(admission, admission_clock) as w:
        await w.start("wf", path="a.pdf")
        await admission_clock.advance(6)
        w.cancel("wf")  # the caller is shut down while the hook runs
        await admission_clock.advance(0.999)
        assert (finished, held(admission)) == ([], (1, 0))
        await admission_clock.advance(0.001)
        assert finished == [7.0]
        assert held(admission) == (0, 0)
        assert admission.statistics().execution_limited_total == 1


async def test_a_waiter_admitted_after_close_is_refused_and_holds_nothing(
    admission_clock: VirtualClock,
) -> None:
    admission = WorkflowAdmission(registry=registry(admission_clock))
    async with anyio.create_task_group() as tg:
        await tg.start(admission.run)
        w = Workflows(admission, tg, admission_clock)
        await w.start("running", path="a.pdf")
        await w.start("waiting", path="b.pdf")
        await admission.aclose()
        assert "document_conversion" not in admission.registry.limiters
        assert w.running == {"running"}  # closing cancels nothing in flight
        await w.finish("running")
        await admission_clock.advance(1)
        error = w.outcome["waiting"]
        assert isinstance(error, RuntimeError)
        assert "is closed" in str(error)
        assert held(admission) == (0, 0)
