"""WorkflowAdmission follows the policy: capacity per class and level, floors, status."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest
from conversion_helpers import CAPS, CONVERSION, caps, feed, registry, workflows

from admission.registry import Registry
from admission.testing import EPOCH, VirtualClock
from integrations.document_conversion import CONVERSION_EXTENSIONS, WorkflowAdmission

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("preset", "level"), sorted(CAPS))
async def test_capacity_is_the_presets_parallelism_at_each_level(
    admission_clock: VirtualClock, preset: str, level: str
) -> None:
    reg = registry(admission_clock, preset)
    async with WorkflowAdmission(registry=reg) as admission:
        assert caps(admission) == CAPS[(preset, "normal")]
        reg.add_override("queue", CONVERSION, level=level, ttl_seconds=60)
        assert caps(admission) == CAPS[(preset, level)]
        cls = reg.class_status("expensive")
        assert (cls.level, cls.active_parallelism, cls.minimum_floor) == (
            level,
            caps(admission)[1],
            1,
        )
        await admission_clock.advance(60)
        reg.status()  # the override expires on this read: back to the baseline
        assert caps(admission) == CAPS[(preset, "normal")]


async def test_capacity_follows_sustained_pressure_and_cooldown(
    admission_clock: VirtualClock,
) -> None:
    # aggressive, files-document_conversion_input: warning 60, critical 140,
    # sustained 90 s, cooldown 120 s.
    reg = registry(admission_clock, "aggressive")
    async with WorkflowAdmission(registry=reg) as admission:
        feed(reg, 100, 0, 85)
        assert caps(admission) == (4, 2)  # 85 s above warning: not sustained yet
        feed(reg, 100, 90, 90)
        assert caps(admission) == (4, 1)
        assert reg.class_status("expensive").level == "warning"
        feed(reg, 200, 95, 180)  # above critical from t=95: critical at t=185
        assert caps(admission) == (4, 1)
        feed(reg, 200, 185, 185)
        assert reg.class_status("expensive").level == "critical"
        assert caps(admission) == (4, 1)  # the floor: expensive never goes below 1
        feed(reg, 0, 190, 305)  # below every exit threshold from t=190
        assert reg.class_status("expensive").level == "critical"
        feed(reg, 0, 310, 310)
        assert reg.class_status("expensive").level == "normal"
        assert caps(admission) == (4, 2)


async def test_admissions_follow_a_transition_and_in_flight_work_is_never_cancelled(
    admission_clock: VirtualClock,
) -> None:
    reg = registry(admission_clock, "aggressive")
    admission = WorkflowAdmission(registry=reg)
    async with workflows(admission, admission_clock) as w:
        for n in range(3):
            await w.start(f"wf-{n}", path=f"report-{n}.pdf")
        assert w.running == {"wf-0", "wf-1"}  # expensive runs 2 under normal
        pin = reg.add_override("queue", CONVERSION, level="critical", ttl_seconds=600)
        await admission_clock.advance(30)
        assert caps(admission) == (4, 1)
        assert w.running == {"wf-0", "wf-1"}  # lowering the cap cancelled nothing
        assert admission.statistics().cancelled_total == 0
        await w.finish("wf-0")
        # Two in flight is above the new cap of 1: the waiter waits for one more to end.
        assert w.running == {"wf-1"}
        assert admission.limiter.snapshot().workload_class("expensive").waiting == 1
        await w.finish("wf-1")
        assert w.running == {"wf-2"}
        assert w.outcome == {"wf-0": "completed", "wf-1": "completed"}
        reg.remove_override(pin.id)
        await w.start("wf-3", path="sheet.xlsx")
        await admission_clock.advance(1)  # a token at normal's rate 4
        assert w.running == {"wf-2", "wf-3"}  # back to 2
        await w.finish("wf-2", "wf-3")
        assert admission.statistics().completed_total == 4


async def test_the_expensive_floor_is_kept_while_standard_saturates_the_overall_cap(
    admission_clock: VirtualClock,
) -> None:
    reg = registry(admission_clock, "balanced")
    admission = WorkflowAdmission(registry=reg, max_parallel_workflows=3)
    async with workflows(admission, admission_clock) as w:
        reg.governor_stopped("test: no monitor")  # fail-safe: conservative critical, 2/1
        assert caps(admission) == (2, 1)
        assert reg.class_status("expensive").level == "fail_safe"
        for n in range(5):
            await w.start(f"doc-{n}", path=f"notes-{n}.txt")
        assert w.running == {"doc-0", "doc-1"}
        await w.start("deck", path="big.docx")
        assert "deck" in w.running  # its floor slot was kept free for it
        snap = admission.limiter.snapshot()
        assert (snap.in_flight, snap.workload_class("standard").waiting) == (3, 3)

        reg.governor_started()  # balanced again: standard 3, but 1 of 3 is expensive's
        await admission_clock.advance(0)
        assert len(w.running) == 3
        await w.finish("deck")
        # The overall cap is 3 and expensive is idle: standard may not take its floor slot.
        assert w.running == {"doc-0", "doc-1"}
        await w.start("deck-2", workload_class="expensive")
        await admission_clock.advance(1)  # expensive's bucket refills at balanced's rate 2
        assert "deck-2" in w.running


async def test_active_workflows_show_in_the_class_status_with_their_age(
    admission_clock: VirtualClock,
) -> None:
    reg = registry(admission_clock)
    admission = WorkflowAdmission(registry=reg)
    async with workflows(admission, admission_clock) as w:
        await w.start("wf-pdf", path="a.pdf")
        await admission_clock.advance(5)
        await w.start("wf-txt", path="b.txt")
        await w.start("wf-doc", path="c.docx")  # waits: expensive runs 1 under balanced
        await admission_clock.advance(10)

        expensive = reg.status().workload_class("expensive")
        assert [(a.id, a.kind, a.workload_class) for a in expensive.active] == [
            ("wf-pdf", "workflow", "expensive")
        ]
        assert expensive.active[0].started_at == EPOCH
        assert expensive.active[0].age_seconds == 15
        assert (expensive.in_flight, expensive.waiting) == (1, 1)
        (standard,) = reg.status().workload_class("standard").active
        assert (standard.id, standard.started_at) == ("wf-txt", EPOCH + timedelta(seconds=5))
        assert standard.age_seconds == 10
        assert [(a.id, a.age_seconds) for a in admission.active()] == [
            ("wf-pdf", 15.0),
            ("wf-txt", 10.0),
        ]

        await admission_clock.advance(20)
        assert reg.class_status("expensive").active[0].age_seconds == 35
        await w.finish("wf-pdf")
        (doc,) = reg.class_status("expensive").active
        assert (doc.id, doc.age_seconds) == ("wf-doc", 0)
        assert doc.started_at == EPOCH + timedelta(seconds=35)
        assert admission.active()[-1].waited_seconds == 30  # queued at t=5
        await w.finish("wf-doc", "wf-txt")
        assert all(c.active == () for c in reg.status().class_states)
        assert admission.active() == ()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("report.pdf", "expensive"),
        ("/data/Q3/Budget.XLSX", "expensive"),
        ("old.xls", "expensive"),
        ("letter.docx", "expensive"),
        ("letter.doc", "standard"),
        ("notes.txt", "standard"),
        ("pdf", "standard"),
        ("archive.pdf.txt", "standard"),
    ],
)
def test_documents_are_classified_by_extension(path: str, expected: str) -> None:
    admission = WorkflowAdmission(registry=Registry())
    assert admission.classify(path) == expected
    assert admission.expensive_extensions == CONVERSION_EXTENSIONS


def test_the_expensive_extensions_can_be_given() -> None:
    reg = Registry()
    policy = reg.engine.preset.classes["expensive"].extensions
    admission = WorkflowAdmission(registry=reg, expensive_extensions=["PPTX", ".Pdf", *policy])
    assert admission.expensive_extensions[:2] == (".pptx", ".pdf")
    assert admission.classify("slides.pptx") == "expensive"
    assert admission.classify("disk.vhdx") == "expensive"
    assert admission.classify("sheet.xlsx") == "standard"
    with pytest.raises(ValueError, match=r"'\.' is not a file extension"):
        WorkflowAdmission(registry=reg, expensive_extensions=["."])
    with pytest.raises(TypeError, match="a list of strings"):
        WorkflowAdmission(registry=reg, expensive_extensions=".pdf")


async def test_the_class_is_explicit_or_by_path_and_checked(admission_clock: VirtualClock) -> None:
    async with WorkflowAdmission(registry=registry(admission_clock)) as admission:
        async with admission.workflow("a", workload_class="expensive") as slot:
            assert slot.workload_class == "expensive"
        async with admission.workflow("b") as slot:
            assert slot.workload_class == "standard"
        with pytest.raises(ValueError, match="not both"):
            admission.workflow("c", path="x.pdf", workload_class="standard")
        with pytest.raises(ValueError, match=r"unknown workload_class 'cheap' \(known: "):
            admission.workflow("c", workload_class="cheap")
        with pytest.raises(ValueError, match="workflow_id must be a non-empty string"):
            admission.workflow("")
        assert admission.statistics().completed_total == 2


async def test_it_registers_while_running_and_unregisters_on_close(
    admission_clock: VirtualClock,
) -> None:
    reg = registry(admission_clock)
    admission = WorkflowAdmission("converter", registry=reg)
    with pytest.raises(RuntimeError, match="'converter' is new: use `async with admission:`"):
        async with admission.workflow("early"):
            pass
    async with anyio.create_task_group() as tg:
        await tg.start(admission.run)
        assert reg.limiters["converter"] is admission.limiter
        assert admission.running
        with pytest.raises(ValueError, match="'converter' is already registered"):
            async with WorkflowAdmission("converter", registry=reg):
                pass
        async with admission.workflow("wf") as slot:
            assert [a.id for a in reg.class_status("standard").active] == ["wf"]
            assert not slot.released
        assert slot.released
        await admission.aclose()
    assert not admission.running
    assert "converter" not in reg.limiters
    assert reg.class_status("standard").limiters == ()
    with pytest.raises(RuntimeError, match="'converter' is closed"):
        async with admission.workflow("late"):
            pass
    with pytest.raises(RuntimeError, match="is closed, not new"):
        await admission.run()


async def test_an_error_in_the_block_comes_out_as_it_is_and_unregisters(
    admission_clock: VirtualClock,
) -> None:
    reg = registry(admission_clock)

    async def explode(workflow_id: str) -> None:
        raise KeyError("boom")

    async def worker() -> None:
        async with WorkflowAdmission(registry=reg) as admission:
            await admission.run_workflow("wf", schedule=explode, poll=explode)

    with pytest.raises(KeyError, match="boom"):  # not wrapped in an ExceptionGroup
        await worker()
    assert reg.limiters == {}
    with anyio.CancelScope() as scope:
        async with WorkflowAdmission(registry=reg):
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert reg.limiters == {}


async def test_one_workflow_per_id(admission_clock: VirtualClock) -> None:
    async with WorkflowAdmission(registry=registry(admission_clock)) as admission:
        async with admission.workflow("wf-1"):
            with pytest.raises(ValueError, match="'wf-1' is already admitted or waiting"):
                async with admission.workflow("wf-1"):
                    pass
        async with admission.workflow("wf-1"):  # free again once it is done
            pass
        assert admission.statistics().started_total == 2


def test_an_overall_cap_must_hold_every_floor() -> None:
    reg = Registry()
    with pytest.raises(ValueError, match=r"max_parallel_workflows=1 is below .* floors \(2\)"):
        WorkflowAdmission(registry=reg, max_parallel_workflows=1)
    with pytest.raises(TypeError, match="max_parallel_workflows must be an int"):
        WorkflowAdmission(registry=reg, max_parallel_workflows=2.5)  # type: ignore[arg-type]
    assert WorkflowAdmission(registry=reg, max_parallel_workflows=2).limiter.max_concurrency == 2
